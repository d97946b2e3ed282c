/* The event loop: a ready queue and a timer heap in C, driven by one libuv
 * check handle (plus an idle handle while work is queued), so the same loop
 * runs under our own run_forever or inside a host's uv_run or poller. */

/***
The event loop's core (C).
@classmod Loop
*/

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Ready-queue turns run per I/O poll under run_forever. Python polls once per
 * turn; like Tokio's event_interval we poll every few turns instead, which
 * keeps the order of callbacks but saves an epoll_wait per task switch. */
#define AIO_TURN_BUDGET 64

typedef struct {
  aio_loop *lp;
} loop_box;

/* ---- the virtual clock ------------------------------------------------
 *
 * opts.clock = "virtual": loop:time() starts at 0 and stands still while
 * callbacks run. Before each poll (on_prepare) the loop looks at what could
 * still happen without it:
 *
 * - Work in flight, which finishes by itself and then wakes the loop: a
 *   libuv request (connect, write, shutdown, getaddrinfo, getnameinfo), an
 *   executor job, a callback posted from another thread, a child not reaped
 *   yet. The poll is real, and the clock runs at real speed until the next
 *   poll finds nothing in flight, so a timeout on such work is a real one.
 * - Else, when a callback is queued or a timer due, the poll does not block
 *   and time stands still.
 * - Else, with events libuv has not handled yet (a readable socket, an
 *   expired libuv timer, a closing handle, a new watcher), the poll does
 *   not block and there is no jump, so data a peer in this loop wrote is
 *   read before any timer fires (past two such polls in a row the clock
 *   runs at real speed: see on_prepare).
 * - Else time jumps to the next timer's deadline, and the poll does not
 *   block (with no timer at all it blocks, the clock running, until I/O).
 *
 * An open socket, a listening server, a watched fd or a signal handler that
 * has nothing to deliver does not hold the clock: it waits for something
 * only a peer can do, and holding the clock for it would make a test that
 * sleeps an hour beside an idle server take an hour (Trio's autojump clock
 * with threshold 0 does the same). A peer inside the loop's process and seen
 * by it (a task of this loop, a thread of the executor, a child process)
 * always shows up as work in flight or as a readable socket, so it is never
 * overtaken by a jump; a peer the loop cannot see (a host's thread, another
 * program) can be, and such a test wants the real clock. */

static void vclock_sync(aio_loop *lp) {
  if (lp->vflow) {
    uint64_t now = uv_hrtime();
    lp->vnow += (double)(now - lp->vsync) / 1e9;
    lp->vsync = now;
  }
}

double aio_loop_time(aio_loop *lp) {
  if (!lp->virtual_clock) return (double)uv_hrtime() / 1e9;
  vclock_sync(lp);
  return lp->vnow;
}

/* Work that ends without the program's help, then wakes the loop. */
static int vclock_in_flight(aio_loop *lp) {
  int posted;
  if (lp->uv->active_reqs.count > 0 || lp->jobs || aio_process_running(lp)) return 1;
  uv_mutex_lock(&lp->post_mutex);
  posted = lp->posted != NULL;
  uv_mutex_unlock(&lp->post_mutex);
  return posted;
}

/* libuv has events to handle: a descriptor ready in its epoll set (level
 * triggered: the epoll fd is readable while one is), or something that
 * makes its next poll return at once (a due libuv timer, a closing handle,
 * a deferred callback, an idle handle of a host). */
static int vclock_events_pending(aio_loop *lp) {
  struct pollfd pfd;
  int n;
  if (uv_backend_timeout(lp->uv) == 0) return 1;
  pfd.fd = uv_backend_fd(lp->uv);
  pfd.events = POLLIN;
  pfd.revents = 0;
  do n = poll(&pfd, 1, 0);
  while (n < 0 && errno == EINTR);
  return n != 0; /* an error: do not jump, the poll will tell */
}

static void vclock_run_real(aio_loop *lp) {
  lp->vflow = 1;
  lp->vsync = uv_hrtime();
}

static int loop_has_work(aio_loop *lp, const aio_timer *top, double now);
static void loop_arm(aio_loop *lp);
static void noop_idle(uv_idle_t *h);

/* Before every poll of a virtual loop (libuv computes the poll's timeout
 * after the prepare phase, so a jump made here is seen by it). */
static void on_prepare(uv_prepare_t *h) {
  aio_loop *lp = h->data;
  aio_timer *top;
  int pending;
  vclock_sync(lp);
  lp->vflow = 0;
  if (lp->closed) return;
  if (vclock_in_flight(lp)) {
    lp->vpending = 0;
    vclock_run_real(lp);
    return;
  }
  top = aio_heap_top(&lp->timers);
  if (loop_has_work(lp, top, lp->vnow)) return;
  /* another loop of this state runs on this uv loop: ours does not tick */
  if (!top || (!lp->running && lp->S->running)) {
    vclock_run_real(lp);
    return;
  }
  pending = vclock_events_pending(lp);
  if (pending) {
    /* Events usually take one poll (new watchers join libuv's epoll set in
     * its next poll, a peer's data is read by it), and time stands still
     * for that poll so that a program with no I/O in progress sees exact
     * deadlines. Events in several polls in a row are I/O at work, or a
     * descriptor nobody drains: the clock runs then, so that a timer still
     * fires in the end. */
    if (lp->vpending < 2) lp->vpending++;
    if (lp->vpending >= 2) vclock_run_real(lp);
    /* libuv polls with its timers' timeout even when new watchers wait */
    if (!uv_is_active((uv_handle_t *)&lp->idle)) uv_idle_start(&lp->idle, noop_idle);
    return;
  }
  lp->vpending = 0;
  lp->vnow = aio_heap_top_when(&lp->timers);
  loop_arm(lp); /* the timer is due: the poll does not block, on_check runs it */
}

/* Seconds to whole milliseconds, rounded up and capped (at about 31 years)
 * so that huge or infinite delays never overflow the conversion. */
static uint64_t to_ms(double seconds) {
  double ms = ceil(seconds * 1e3);
  return ms <= 0 ? 0 : ms >= 1e12 ? (uint64_t)1e12 : (uint64_t)ms;
}

static void noop_idle(uv_idle_t *h) {
  (void)h;
}
static void noop_timer(uv_timer_t *h) {
  (void)h;
}
static void loop_arm_cb(uv_timer_t *h);

/* ---- queue and timers ------------------------------------------------ */

void aio_loop_push(aio_loop *lp, uint8_t kind, void *p, int ref, int ref2) {
  aio_ready *e;
  if (lp->closed) return; /* nothing runs any more: a cancelled task's wake-up */
  e = aio_ring_push(&lp->ready);
  if (!e) {
    luaL_error(lp->L ? lp->L : lp->mainL, "not enough memory");
    return;
  }
  e->kind = kind;
  e->p = p;
  e->ref = ref;
  if (kind == AIO_RUN_DONECB) {
    e->ref2 = ref2;
  } else {
    /* a step's wake-up, for get_stats(): the loop's last clock reading inside
     * a tick; outside one (an I/O callback), 0: the next tick's start */
    e->stamp = lp->ticking ? lp->stamp : 0;
  }
  /* queued from outside a tick (before a run, or while a host's uv_run
   * waits): make sure the next poll does not block */
  if (!lp->ticking && !uv_is_active((uv_handle_t *)&lp->idle)) uv_idle_start(&lp->idle, noop_idle);
}

void aio_loop_add_timer(aio_loop *lp, aio_timer *tm, double when) {
  if (aio_heap_push(&lp->timers, tm, when) != 0)
    luaL_error(lp->L ? lp->L : lp->mainL, "not enough memory");
}

void aio_loop_remove_timer(aio_loop *lp, aio_timer *tm) {
  if (tm->index) aio_heap_remove(&lp->timers, tm);
}

void aio_loop_add_ctimer(aio_loop *lp, aio_ctimer *ct, double delay) {
  ct->timer.kind = AIO_TIMER_CFUNC;
  aio_loop_remove_timer(lp, &ct->timer);
  aio_loop_add_timer(lp, &ct->timer, aio_loop_time(lp) + delay);
  if (!lp->ticking) loop_arm(lp);
}

/* Something to run now, or the loop to leave: the poll must not block. */
static int loop_has_work(aio_loop *lp, const aio_timer *top, double now) {
  return lp->ready.len > 0 || lp->stopping || (top && aio_heap_top_when(&lp->timers) <= now) ||
         (lp->until && lp->until->state != AIO_PENDING);
}

/* Keeps libuv's view in step with ours: never block while work is queued or
 * a timer is due, else wake up for the earliest timer. Also the uv timer's
 * callback: libuv's clock is coarse and may fire it a little early, and in
 * its timers phase, before our check handle has run. */
static void loop_arm(aio_loop *lp) {
  aio_timer *top = aio_heap_top(&lp->timers);
  double now = top ? aio_loop_time(lp) : 0;
  double when = top ? aio_heap_top_when(&lp->timers) : 0;
  double delay = when - now;
  if (loop_has_work(lp, top, now)) {
    if (!uv_is_active((uv_handle_t *)&lp->idle)) uv_idle_start(&lp->idle, noop_idle);
  } else if (uv_is_active((uv_handle_t *)&lp->idle)) {
    uv_idle_stop(&lp->idle);
  }
  if (!top || delay <= 0) {
    if (uv_is_active((uv_handle_t *)&lp->timer)) uv_timer_stop(&lp->timer);
    lp->armed_when = -1;
  } else if (when != lp->armed_when || !uv_is_active((uv_handle_t *)&lp->timer)) {
    /* whole milliseconds, rounded up, plus one for libuv's truncated clock */
    uv_update_time(lp->uv);
    uv_timer_start(&lp->timer, loop_arm_cb, to_ms(delay) + 1, 0);
    lp->armed_when = when;
  }
}

static void loop_arm_cb(uv_timer_t *h) {
  loop_arm(h->data);
}

/* ctimer_protected(ct) */
static int ctimer_protected(lua_State *L) {
  aio_ctimer *ct = lua_touserdata(L, 1);
  ct->cb(L, ct);
  return 0;
}

/* A C timer's callback runs here, at once: its owner removes it from the
 * heap before it goes, so no ready-queue entry may outlive the owner. It
 * runs under a lua_pcall of its own: an error (out of memory) is reported
 * and costs that one connection its timeout, where the tick's lua_pcall
 * would stop the loop. It is not retried: the failed callback may have
 * released the timer's owner. */
static void run_due_timers(lua_State *L, aio_loop *lp, int base) {
  aio_timer *top = aio_heap_top(&lp->timers);
  double now;
  if (!top) return;
  now = aio_loop_time(lp);
  while ((top = aio_heap_top(&lp->timers)) && aio_heap_top_when(&lp->timers) <= now) {
    aio_heap_remove(&lp->timers, top);
    if (top->kind == AIO_TIMER_HANDLE) {
      aio_handle *h = (aio_handle *)((char *)top - offsetof(aio_handle, timer));
      aio_loop_push(lp, AIO_RUN_HANDLE, h, h->slot, LUA_NOREF); /* the anchor moves on */
      h->slot = 0;
    } else if (top->kind == AIO_TIMER_CFUNC) {
      aio_loop_pcall(lp, ctimer_protected, top, "a transport's timer");
      lua_settop(L, base);
    } else {
      aio_task *t = (aio_task *)((char *)top - offsetof(aio_task, timer));
      t->wait = AIO_WAIT_SOON;
      aio_loop_push(lp, AIO_RUN_STEP, t, LUA_NOREF, LUA_NOREF);
    }
  }
}

/* anchors: the tick's stack, the tasks' anchor table once a step pushed it
 * (see tick) */
static void run_entry(lua_State *L, aio_loop *lp, aio_ready *e, int *anchors) {
  switch (e->kind) {
  case AIO_RUN_STEP:
    lp->stamp_ok = (uint8_t)aio_task_step(L, lp, e->p, e->stamp, anchors);
    return;
  case AIO_RUN_HANDLE:
    aio_handle_run(L, lp, e->p, e->ref);
    break;
  case AIO_RUN_DONECB:
    aio_future_run_donecb(L, lp, e->ref, e->ref2);
    break;
  default:
    ((asyncio_callback)e->q)(L, e->p);
    lua_settop(L, *anchors);
    break;
  }
  lp->stamp_ok = 0; /* time went by since the last step's end */
}

/* One tick: up to turn_budget turns of (due timers, then the callbacks that
 * were ready when the turn began). Runs under lua_pcall so that a memory
 * error cannot unwind through libuv's frames. */
static int tick(lua_State *L) {
  aio_loop *lp = lua_touserdata(L, 1);
  aio_future *until = lua_touserdata(L, 2);
  /* the tasks' anchor table, fetched by the tick's first task's first step
   * and kept at the bottom of the stack for the others: a first step takes
   * its task from there, and a finish drops it there */
  int budget = lp->turn_budget, anchors = 0;
  lua_settop(L, 0);
  lp->tick_ns = lp->stamp = aio_clock_ns(lp);
  lp->stamp_ok = 1;
  do {
    size_t n;
    run_due_timers(L, lp, anchors);
    for (n = lp->ready.len; n > 0 && !lp->closed; n--) {
      aio_ready e = *aio_ring_shift(&lp->ready);
      run_entry(L, lp, &e, &anchors);
    }
    aio_ring_trim(&lp->ready);
    if (lp->stopping || lp->closed || (until && until->state != AIO_PENDING)) break;
  } while (--budget > 0 && lp->ready.len > 0);
  return 0;
}

/* A libuv callback about to call Lua. Under our run_forever or run_once the
 * loop is running already; when the host runs the uv loop itself, the loop
 * counts as running while the callback runs (a protocol's data_received may
 * call get_running_loop()), unless another loop of this state is running
 * right now. Returns 1 when aio_loop_leave has that to undo. */
/* Marks lp running on L in this thread: the thread that runs it, not the
 * one that made it (a host may make a loop in one thread and run it in
 * another). */
static void set_running(aio_loop *lp, lua_State *L) {
  lp->running = 1;
  lp->L = L;
  lp->S->running = lp;
  lp->owner = uv_thread_self();
  if (lp->debug && !lp->wd) aio_debug_start(lp);
}

int aio_loop_enter(aio_loop *lp) {
  if (lp->running || lp->S->running) return 0;
  set_running(lp, lp->mainL);
  return 1;
}

void aio_loop_leave(aio_loop *lp, int entered) {
  if (!entered) return;
  lp->running = 0;
  lp->L = NULL;
  lp->S->running = NULL;
  lp->stopping = 0;
}

static void on_check(uv_check_t *h) {
  aio_loop *lp = h->data;
  int entered, top;
  lua_State *L;
  if (lp->ticking || (!lp->running && lp->S->running)) return; /* not this loop's turn */
  entered = aio_loop_enter(lp);
  L = lp->L;
  top = lua_gettop(L);
  lp->ticking = 1;
  lua_pushcfunction(L, tick);
  lua_pushlightuserdata(L, lp);
  lua_pushlightuserdata(L, lp->until);
  /* a task the error left unsettled is ended with it, and the loop goes on
   * (the rest of the ready queue runs next turn) */
  if (lua_pcall(L, 2, 0, 0) != LUA_OK && !aio_task_settle(L, lp)) {
    lua_writestringerror("asyncio: error in the event loop: %s\n", luaL_tolstring(L, -1, NULL));
    lp->stopping = 1;
  }
  lua_settop(L, top);
  lp->ticking = 0;
  lp->stamp_ok = 0; /* a step outside a tick (an eager task) reads the clock */
  aio_loop_leave(lp, entered);
  if (!lp->closed) loop_arm(lp);
}

static void on_async(uv_async_t *h) {
  aio_loop *lp = h->data;
  aio_post *p, *next, *rev = NULL;
  uv_mutex_lock(&lp->post_mutex);
  p = lp->posted;
  lp->posted = NULL;
  uv_mutex_unlock(&lp->post_mutex);
  for (; p; p = next) { /* posts are stacked newest first: restore FIFO */
    next = p->next;
    p->next = rev;
    rev = p;
  }
  for (p = rev; p; p = next) {
    next = p->next;
    if (p->fn) {
      aio_ready *e = aio_ring_push(&lp->ready);
      if (e) {
        e->kind = AIO_RUN_CFUNC;
        e->p = p->data;
        e->q = (void *)p->fn;
        e->ref = LUA_NOREF;
      }
    } else {
      aio_loop_push(lp, AIO_RUN_HANDLE, p->data, p->slot, LUA_NOREF);
    }
    if (!p->embedded) free(p);
  }
  loop_arm(lp);
}

/* ---- life cycle ------------------------------------------------------ */

/* A loop's C record outlives close() and its Lua object: futures and tasks
 * keep a pointer to it, so it is freed only with the state (or, for a host's
 * uv loop still closing our handles then, by the last close callback). */
static void loop_free(aio_loop *lp) {
  int i;
  uv_mutex_destroy(&lp->post_mutex);
  for (i = 0; i < AIO_RBUF_SLOTS; i++) free(lp->rbuf[i]);
  free(lp->fdwatch);
  free(lp->origin);
  aio_process_loop_free(lp);
  free(lp);
}

static char *rbuf_alloc(void) {
  return aligned_alloc(AIO_READ_ALIGN, AIO_RBUF_SIZE);
}

/* The receive buffers reads of the loop land in (libuv alloc callbacks of
 * streams and datagram endpoints, and a TLS layer's plaintext and
 * ciphertext): a few kept for reuse, taken while in use, so a TLS read that
 * holds ciphertext can decrypt into a second one and encrypt a reply into a
 * third without a malloc; only past those is a buffer malloc'd and freed. */
void aio_loop_rbuf_take(aio_loop *lp, uv_buf_t *buf) {
  int i;
  for (i = 0; i < AIO_RBUF_SLOTS; i++) {
    if (lp->rbuf_busy & (1u << i)) continue;
    if (!lp->rbuf[i] && (lp->rbuf[i] = rbuf_alloc()) == NULL) break;
    lp->rbuf_busy |= (uint8_t)(1u << i);
    *buf = uv_buf_init(lp->rbuf[i], AIO_RBUF_SIZE);
    return;
  }
  buf->base = rbuf_alloc();
  buf->len = buf->base ? AIO_RBUF_SIZE : 0;
}

void aio_loop_rbuf_give(aio_loop *lp, const uv_buf_t *buf) {
  int i;
  for (i = 0; i < AIO_RBUF_SLOTS; i++) {
    if (buf->base == lp->rbuf[i]) {
      lp->rbuf_busy &= (uint8_t) ~(1u << i);
      return;
    }
  }
  free(buf->base);
}

void aio_closable_link(aio_loop *lp, aio_closable *c, const aio_closable_type *type) {
  c->type = type;
  c->origin = NULL; /* aio_debug_note_closable sets it after */
  c->next = lp->closables.next;
  c->prev = &lp->closables;
  c->next->prev = c;
  lp->closables.next = c;
}

void aio_closable_unlink(aio_closable *c) {
  c->prev->next = c->next;
  c->next->prev = c->prev;
  c->next = c->prev = c;
  free(c->origin);
  c->origin = NULL;
}

void aio_loop_handle_closed(aio_loop *lp) {
  if (--lp->nhandles_open == 0 && lp->orphan) loop_free(lp);
}

static void on_close(uv_handle_t *h) {
  aio_loop_handle_closed(h->data);
}

static void loop_close(lua_State *L, aio_loop *lp);

/* Lua calls finalizers in the reverse order objects were marked for
 * finalization: the state record is marked before any loop object, so
 * every Loop's __gc has run (and let go of its record) before this. */
void aio_loop_free_all(aio_state *S) {
  aio_loop *lp = S->loops, *next;
  S->loops = NULL;
  for (; lp; lp = next) {
    next = lp->next;
    if (!lp->closed) {
      lua_State *L = lp->mainL;
      loop_close(L, lp);
    }
    if (lp->nhandles_open == 0)
      loop_free(lp);
    else
      lp->orphan = 1;
  }
}

static void release_queued(lua_State *L, aio_loop *lp) {
  while (lp->ready.len > 0) {
    aio_ready e = *aio_ring_shift(&lp->ready);
    if (e.kind == AIO_RUN_HANDLE) { /* its anchor goes with lp->handles */
      ((aio_handle *)e.p)->scheduled = 0;
      continue;
    }
    luaL_unref(L, LUA_REGISTRYINDEX, e.ref);
    if (e.kind == AIO_RUN_DONECB) luaL_unref(L, LUA_REGISTRYINDEX, e.ref2);
  }
  while (lp->timers.len > 0) {
    aio_timer *tm = aio_heap_top(&lp->timers);
    aio_heap_remove(&lp->timers, tm);
    if (tm->kind == AIO_TIMER_HANDLE) {
      aio_handle *h = (aio_handle *)((char *)tm - offsetof(aio_handle, timer));
      h->scheduled = 0;
      h->slot = 0;
    }
  }
  aio_ring_free(&lp->ready);
  aio_heap_free(&lp->timers);
}

/* Releases everything the loop holds. Pending tasks stay pending and become
 * garbage once nothing else refers to them (as in Python). */
static void loop_close(lua_State *L, aio_loop *lp) {
  aio_post *p, *next;
  if (lp->closed) return;
  aio_debug_stop(lp);
  uv_mutex_lock(&lp->post_mutex);
  lp->closed = 1;
  uv_mutex_unlock(&lp->post_mutex);
  release_queued(L, lp);
  uv_mutex_lock(&lp->post_mutex);
  p = lp->posted;
  lp->posted = NULL;
  uv_mutex_unlock(&lp->post_mutex);
  for (; p; p = next) { /* a Lua Handle's anchor goes with lp->handles */
    next = p->next;
    if (!p->embedded) free(p);
  }
  aio_executor_loop_close(L, lp); /* after the posts: embedded ones are jobs */
  aio_anchors_free(L, &lp->tasks);
  aio_anchors_free(L, &lp->handles);
  luaL_unref(L, LUA_REGISTRYINDEX, lp->pool);
  luaL_unref(L, LUA_REGISTRYINDEX, lp->spare_ref);
  lp->npool = 0;
  lp->spare = lp->spare_held = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, lp->exc_handler);
  luaL_unref(L, LUA_REGISTRYINDEX, lp->task_factory);
  lp->exc_handler = lp->task_factory = LUA_NOREF;
  aio_signal_close_all(lp);
  while (lp->closables.next != &lp->closables) {
    aio_closable *c = lp->closables.next;
    /* what the user never closed: Python's ResourceWarning, in debug mode */
    if (lp->debug && c->type->kind)
      aio_debug_report_unclosed(L, lp->S, c->type->kind, c->type->what, c->origin);
    aio_closable_unlink(c);
    c->type->close(c);
  }
  aio_process_close_all(lp);
  lp->nhandles_open += 7;
  uv_close((uv_handle_t *)&lp->check, on_close);
  uv_close((uv_handle_t *)&lp->prepare, on_close);
  uv_close((uv_handle_t *)&lp->watchdog, on_close);
  uv_close((uv_handle_t *)&lp->idle, on_close);
  uv_close((uv_handle_t *)&lp->timer, on_close);
  uv_close((uv_handle_t *)&lp->deadline, on_close);
  uv_close((uv_handle_t *)&lp->async, on_close);
  if (lp->owns_uv) {
    /* closes complete in the next iteration; ours are the only handles */
    while (lp->nhandles_open > 0) uv_run(lp->uv, UV_RUN_NOWAIT);
    uv_loop_close(lp->uv);
  }
  luaL_unref(L, LUA_REGISTRYINDEX, lp->self_ref);
  lp->self_ref = LUA_NOREF;
}

static void handle_init(aio_loop *lp, uv_handle_t *h) {
  h->data = lp;
}

/* Pushes a new metatable for one loop, copied from the shared template. */
static void push_loop_metatable(lua_State *L, aio_state *S) {
  aio_copy_metatable(L, S, AIO_T_LOOP);
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->mt[AIO_T_LOOP]);
  lua_createtable(L, 0, 1);
  lua_pushnumber(L, 0.1);
  lua_setfield(L, -2, "slow_callback_duration");
  lua_getfield(L, -2, "__fieldsmt");
  lua_setmetatable(L, -2);
  lua_setfield(L, -3, "__index");
  lua_pop(L, 1);
}

aio_loop *asyncio_loop_new(lua_State *L, uv_loop_t *uv) {
  aio_state *S = aio_get_state(L);
  loop_box *box;
  aio_loop *lp;
  int err;
  luaL_argcheck(L, S != NULL, 1, "asyncio.core is not loaded in this state");
  box = lua_newuserdatauv(L, sizeof *box, 0);
  box->lp = NULL;
  lp = calloc(1, sizeof *lp);
  if (!lp) {
    luaL_error(L, "not enough memory");
    return NULL;
  }
  lp->S = S;
  lp->closables.next = lp->closables.prev = &lp->closables;
  lp->owns_uv = uv == NULL;
  lp->uv = uv ? uv : &lp->own_uv;
  if (lp->owns_uv && (err = uv_loop_init(lp->uv)) != 0) {
    free(lp);
    luaL_error(L, "uv_loop_init: %s", uv_strerror(err));
    return NULL;
  }
  uv_check_init(lp->uv, &lp->check);
  uv_idle_init(lp->uv, &lp->idle);
  uv_timer_init(lp->uv, &lp->timer);
  uv_timer_init(lp->uv, &lp->deadline);
  uv_prepare_init(lp->uv, &lp->prepare);
  uv_timer_init(lp->uv, &lp->watchdog);
  uv_async_init(lp->uv, &lp->async, on_async);
  uv_mutex_init(&lp->post_mutex);
  handle_init(lp, (uv_handle_t *)&lp->check);
  handle_init(lp, (uv_handle_t *)&lp->idle);
  handle_init(lp, (uv_handle_t *)&lp->timer);
  handle_init(lp, (uv_handle_t *)&lp->deadline);
  handle_init(lp, (uv_handle_t *)&lp->prepare);
  handle_init(lp, (uv_handle_t *)&lp->watchdog);
  handle_init(lp, (uv_handle_t *)&lp->async);
  uv_check_start(&lp->check, on_check);
  /* only our own run loop needs these to keep uv_run alive */
  uv_unref((uv_handle_t *)&lp->check);
  uv_unref((uv_handle_t *)&lp->async);
  uv_unref((uv_handle_t *)&lp->timer);
  uv_unref((uv_handle_t *)&lp->prepare);
  uv_unref((uv_handle_t *)&lp->watchdog);
  aio_ring_init(&lp->ready);
  aio_heap_init(&lp->timers);
  lp->armed_when = -1;
  lp->slow_callback_duration = 0.1;
  lp->turn_budget = AIO_TURN_BUDGET;
  lp->exc_handler = lp->task_factory = lp->job_waiters = LUA_NOREF;
  lp->tasks.ref = lp->handles.ref = lp->pool = lp->spare_ref = lp->self_ref = LUA_NOREF;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  lp->mainL = lua_tothread(L, -1);
  lua_pop(L, 1);
  /* on the state's list before the first Lua allocation: when one fails,
   * the state's close still closes and frees the half-made loop */
  lp->next = S->loops;
  S->loops = lp;
  aio_anchors_init(L, &lp->tasks);
  aio_anchors_init(L, &lp->handles);
  lua_newtable(L);
  lp->pool = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushboolean(L, 0);
  lp->spare_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  box->lp = lp;
  push_loop_metatable(L, S);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lp->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  {
    const char *dbg = getenv("LUA_ASYNCIO_DEBUG");
    lp->debug = dbg && *dbg && strcmp(dbg, "0") != 0;
  }
  if (lp->debug) lp->origin = aio_debug_origin(L);
  return lp;
}

aio_loop *aio_check_loop(lua_State *L, int idx) {
  loop_box *box = aio_checkudata(L, idx, AIO_T_LOOP, AIO_T_LOOP, "Loop");
  if (!box->lp) luaL_argerror(L, idx, "loop is released");
  return box->lp;
}

void aio_loop_check_open(lua_State *L, aio_loop *lp) {
  if (lp->closed) aio_raise(L, "RuntimeError", "Event loop is closed");
}

void aio_loop_push_self(lua_State *L, aio_loop *lp) {
  if (lp->self_ref > 0)
    lua_rawgeti(L, LUA_REGISTRYINDEX, lp->self_ref);
  else
    lua_pushnil(L);
}

aio_loop *aio_loop_of(lua_State *L, aio_state *S) {
  if (!S->running) aio_raise(L, "RuntimeError", "no running event loop");
  return S->running;
}

int aio_loop_wrong_thread(lua_State *L) {
  return aio_raise(L, "RuntimeError",
                   "Non-thread-safe operation invoked on an event loop other than the current one");
}

/* Calls the Lua-level loop:call_exception_handler(ctx); never raises. */
void aio_loop_call_exception_handler(lua_State *L, aio_loop *lp, int ctx_idx) {
  ctx_idx = lua_absindex(L, ctx_idx);
  aio_push_hook(L, lp->S, "call_exception_handler");
  aio_loop_push_self(L, lp);
  lua_pushvalue(L, ctx_idx);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    lua_writestringerror("asyncio: exception handler failed: %s\n", luaL_tolstring(L, -1, NULL));
    lua_pop(L, 2);
  }
}

/* report_protected(lp, what, error) */
static int report_protected(lua_State *L) {
  aio_loop *lp = lua_touserdata(L, 1);
  const char *what = lua_touserdata(L, 2);
  aio_report_callback_error(L, lp, 3, lua_pushfstring(L, "Exception in %s", what), NULL, 0);
  return 0;
}

int aio_loop_pcall(aio_loop *lp, lua_CFunction f, void *ud, const char *what) {
  int entered = aio_loop_enter(lp), failed;
  lua_State *L = aio_loop_thread(lp);
  int top = lua_gettop(L);
  if (what) lua_pushcfunction(L, aio_callback_msgh);
  lua_pushcfunction(L, f);
  lua_pushlightuserdata(L, ud);
  failed = lua_pcall(L, 1, 0, what ? top + 1 : 0) != LUA_OK;
  if (failed && what) {
    /* nothing here allocates before the second lua_pcall */
    lua_pushcfunction(L, report_protected);
    lua_pushlightuserdata(L, lp);
    lua_pushlightuserdata(L, (void *)what);
    lua_pushvalue(L, -4);
    if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
      int is_string = lua_type(L, top + 2) == LUA_TSTRING; /* no conversion: it allocates */
      lua_writestringerror("asyncio: error in %s", what);
      lua_writestringerror(": %s\n", is_string ? lua_tostring(L, top + 2) : "(an error object)");
    }
  }
  lua_settop(L, top);
  aio_loop_leave(lp, entered);
  return failed;
}

/* ---- running --------------------------------------------------------- */

static void run_enter(lua_State *L, aio_loop *lp) {
  aio_loop_check_open(L, lp);
  if (lp->running) aio_raise(L, "RuntimeError", "This event loop is already running");
  if (lp->S->running)
    aio_raise(L, "RuntimeError", "Cannot run the event loop while another loop is running");
  set_running(lp, L);
}

static void run_leave(aio_loop *lp) {
  lp->running = 0;
  lp->stopping = 0;
  lp->L = NULL;
  lp->until = NULL;
  lp->S->running = NULL;
}

static void run_loop(lua_State *L, aio_loop *lp, aio_future *until) {
  run_enter(L, lp);
  lp->until = until;
  uv_ref((uv_handle_t *)&lp->async);
  uv_ref((uv_handle_t *)&lp->timer);
  /* at least one iteration, even after stop(), as Python documents */
  do {
    loop_arm(lp);
    uv_run(lp->uv, UV_RUN_ONCE);
  } while (!lp->stopping && !lp->closed && !(until && until->state != AIO_PENDING));
  if (!lp->closed) {
    uv_unref((uv_handle_t *)&lp->async);
    uv_unref((uv_handle_t *)&lp->timer);
  }
  /* what the run freed is not held past it */
  aio_blockcache_flush(lp->S->blocks);
  aio_blockcache_flush(lp->S->buffers);
  run_leave(lp);
}

static int run_until(lua_State *L, aio_loop *lp, int fut_idx) {
  aio_future *f = aio_check_future(L, fut_idx);
  if (f->loop != lp) luaL_argerror(L, fut_idx, "future belongs to another loop");
  run_loop(L, lp, f);
  if (f->state == AIO_PENDING)
    aio_raise(L, "RuntimeError", "Event loop stopped before Future completed.");
  return aio_future_push_results(L, fut_idx);
}

/***
Runs the loop until `aw` is done.
@function Loop:run_until_complete
@python loop.run_until_complete
@param aw an awaitable
@return ... its values
@raise RuntimeError when the loop is running, closed or stopped first; what `aw` raised
*/
static int l_run_until_complete(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  aio_loop_check_open(L, lp);
  if (!aio_test_future(L, 2)) {
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    aio_task_create(L, lp, 2, 0);
    lua_replace(L, 2);
  }
  lua_settop(L, 2);
  return run_until(L, lp, 2);
}

/***
Runs the loop until `stop()`.
@function Loop:run_forever
@python loop.run_forever
@raise RuntimeError when the loop is running or closed
*/
static int l_run_forever(lua_State *L) {
  run_loop(L, aio_check_loop(L, 1), NULL);
  return 0;
}

int asyncio_loop_run_once(lua_State *L, aio_loop *lp, double timeout) {
  int budget = lp->turn_budget;
  run_enter(L, lp);
  lp->turn_budget = 1;
  loop_arm(lp);
  uv_ref((uv_handle_t *)&lp->async);
  uv_ref((uv_handle_t *)&lp->timer);
  if (timeout > 0) {
    uv_timer_start(&lp->deadline, noop_timer, to_ms(timeout), 0);
    uv_run(lp->uv, UV_RUN_ONCE);
    uv_timer_stop(&lp->deadline);
  } else {
    uv_run(lp->uv, UV_RUN_NOWAIT);
  }
  if (!lp->closed) {
    uv_unref((uv_handle_t *)&lp->async);
    uv_unref((uv_handle_t *)&lp->timer);
  }
  lp->turn_budget = budget;
  run_leave(lp);
  return lp->ready.len > 0 || lp->timers.len > 0;
}

/***
One iteration: runs the ready callbacks, polls I/O for at most `timeout`
seconds; for hosts that drive the loop themselves.
@function Loop:run_once
@python (none: loop._run_once)
@tparam[opt=0] number timeout seconds
@raise RuntimeError when the loop is running or closed
*/
static int l_run_once(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  double timeout = luaL_optnumber(L, 2, 0);
  luaL_argcheck(L, timeout >= 0, 2, "timeout must be >= 0");
  asyncio_loop_run_once(L, lp, timeout);
  return 0;
}

/***
Stops `run_forever` after the current iteration.
@function Loop:stop
@python loop.stop
*/
static int l_stop(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  lp->stopping = 1;
  if (!lp->closed) loop_arm(lp);
  return 0;
}

/***
Closes the loop: settles children, releases handles. Closing again does nothing.
@function Loop:close
@python loop.close
@raise RuntimeError when the loop is running
*/
static int l_close(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  if (lp->running) aio_raise(L, "RuntimeError", "Cannot close a running event loop");
  loop_close(L, lp);
  return 0;
}

static int l_tostring(lua_State *L);

static int l_gc(lua_State *L) {
  loop_box *box = aio_checkudata(L, 1, AIO_T_LOOP, AIO_T_LOOP, "Loop");
  aio_loop *lp = box->lp;
  if (!lp) return 0;
  if (!lp->closed && lp->debug) {
    l_tostring(L);
    aio_debug_report_unclosed(L, lp->S, "event loop", lua_tostring(L, -1), lp->origin);
    lua_pop(L, 1);
  }
  box->lp = NULL;
  if (lp->S->running == lp) lp->S->running = NULL;
  loop_close(L, lp);
  return 0;
}

/***
Whether the loop is running.
@function Loop:is_running
@python loop.is_running
@treturn boolean
*/
static int l_is_running(lua_State *L) {
  lua_pushboolean(L, aio_check_loop(L, 1)->running);
  return 1;
}

/***
Whether the loop is closed.
@function Loop:is_closed
@python loop.is_closed
@treturn boolean
*/
static int l_is_closed(lua_State *L) {
  lua_pushboolean(L, aio_check_loop(L, 1)->closed);
  return 1;
}

/***
The loop's clock: monotonic seconds (the virtual clock with `clock = "virtual"`).
@function Loop:time
@python loop.time
@treturn number
*/
static int l_time(lua_State *L) {
  lua_pushnumber(L, aio_loop_time(aio_check_loop(L, 1)));
  return 1;
}

/* Moves a virtual clock forward; the timers it makes due run in the loop's
 * next iteration, as any due timer. */

/***
Moves a virtual clock forward by `seconds`.
@function Loop:advance
@python (none: Trio's MockClock.jump)
@tparam number seconds 0 or more
@raise RuntimeError on a loop with the real clock
*/
static int l_advance(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  double seconds = luaL_checknumber(L, 2);
  luaL_argcheck(L, seconds >= 0 && isfinite(seconds), 2, "seconds must be a finite number >= 0");
  if (!lp->virtual_clock)
    return aio_raise(L, "RuntimeError",
                     "loop:advance() needs a loop made with clock = \"virtual\"");
  aio_loop_check_open(L, lp);
  vclock_sync(lp);
  lp->vnow += seconds;
  lp->armed_when = -1; /* the uv timer was armed for a longer wait */
  if (!lp->ticking) loop_arm(lp);
  return 0;
}

static void on_watchdog(uv_timer_t *h) {
  aio_loop *lp = h->data;
  lp->watchdog_fired = 1;
  lp->stopping = 1;
  if (!lp->closed) loop_arm(lp);
}

/* loop:_watchdog(seconds): the test helpers' bound on a test, in real time
 * whatever the loop's clock (a virtual one may stand still, or jump past any
 * timer of the loop's own): stops the loop once `seconds` have passed.
 * _watchdog(nil) disarms it. Returns whether it fired since last armed. */
static int l_watchdog(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  int fired = lp->watchdog_fired;
  if (!lua_isnoneornil(L, 2)) {
    double seconds = luaL_checknumber(L, 2);
    luaL_argcheck(L, seconds >= 0, 2, "seconds must be >= 0");
    aio_loop_check_open(L, lp);
    lp->watchdog_fired = 0;
    uv_update_time(lp->uv);
    uv_timer_start(&lp->watchdog, on_watchdog, to_ms(seconds), 0);
  } else if (!lp->closed) {
    uv_timer_stop(&lp->watchdog);
  }
  lua_pushboolean(L, fired);
  return 1;
}

/* ---- callbacks ------------------------------------------------------- */

static void check_callable(lua_State *L, int idx) {
  if (lua_isfunction(L, idx)) return;
  if (luaL_getmetafield(L, idx, "__call") != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  luaL_typeerror(L, idx, "callable");
}

/***
Schedules `cb(...)` for the next iteration.
@function Loop:call_soon
@python loop.call_soon
@tparam function cb
@param ... its arguments
@treturn Handle
@raise RuntimeError when the loop is closed
*/
static int l_call_soon(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  aio_handle *h;
  check_callable(L, 2);
  aio_loop_check_open(L, lp);
  aio_loop_check_thread(L, lp);
  h = aio_handle_new(L, lp, 2, lua_gettop(L) - 2, 0);
  aio_handle_schedule(L, lp, h, -1);
  return 1;
}

static int call_at(lua_State *L, aio_loop *lp, double when) {
  aio_handle *h;
  check_callable(L, 3);
  aio_loop_check_open(L, lp);
  aio_loop_check_thread(L, lp);
  h = aio_handle_new(L, lp, 3, lua_gettop(L) - 3, 1);
  aio_loop_add_timer(lp, &h->timer, when);
  h->when = when;
  h->slot = aio_anchors_put(L, &lp->handles, -1);
  h->scheduled = 1;
  if (!lp->ticking) loop_arm(lp);
  return 1;
}

/***
Schedules `cb(...)` in `delay` seconds.
@function Loop:call_later
@python loop.call_later
@tparam number delay seconds
@tparam function cb
@param ... its arguments
@treturn TimerHandle
@raise RuntimeError when the loop is closed
*/
static int l_call_later(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  double delay = luaL_checknumber(L, 2);
  luaL_argcheck(L, delay == delay, 2, "delay is NaN");
  return call_at(L, lp, aio_loop_time(lp) + delay);
}

/***
Schedules `cb(...)` at loop time `when`.
@function Loop:call_at
@python loop.call_at
@tparam number when loop time
@tparam function cb
@param ... its arguments
@treturn TimerHandle
@raise RuntimeError when the loop is closed
*/
static int l_call_at(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  double when = luaL_checknumber(L, 2);
  luaL_argcheck(L, when == when, 2, "when is NaN");
  return call_at(L, lp, when);
}

int aio_loop_post(aio_loop *lp, aio_post *p) {
  int rc = UV_ECANCELED;
  uv_mutex_lock(&lp->post_mutex);
  if (!lp->closed) {
    p->next = lp->posted;
    lp->posted = p;
    /* under the mutex: loop_close cannot close the handle in between */
    rc = uv_async_send(&lp->async);
  }
  uv_mutex_unlock(&lp->post_mutex);
  return rc;
}

static int post(aio_loop *lp, asyncio_callback fn, void *data, int slot) {
  aio_post *p = malloc(sizeof *p);
  int rc;
  if (!p) return UV_ENOMEM;
  p->fn = fn;
  p->data = data;
  p->slot = slot;
  p->embedded = 0;
  rc = aio_loop_post(lp, p);
  if (rc == UV_ECANCELED) free(p);
  /* cppcheck-suppress memleak ; otherwise p belongs to lp->posted */
  return rc;
}

int asyncio_call_threadsafe(aio_loop *lp, asyncio_callback fn, void *data) {
  if (!fn) return UV_EINVAL;
  return post(lp, fn, data, LUA_NOREF);
}

/***
As `call_soon`, callable from a callback of any thread (values copied as
`to_thread`'s); wakes the loop.
@function Loop:call_soon_threadsafe
@python loop.call_soon_threadsafe
@tparam function cb
@param ... its arguments
@treturn Handle
@raise RuntimeError when the loop is closed
*/
static int l_call_soon_threadsafe(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  aio_handle *h;
  int slot;
  check_callable(L, 2);
  aio_loop_check_open(L, lp);
  h = aio_handle_new(L, lp, 2, lua_gettop(L) - 2, 0);
  slot = aio_anchors_put(L, &lp->handles, -1);
  h->scheduled = 1;
  if (post(lp, NULL, h, slot) != 0) {
    aio_anchors_drop(L, &lp->handles, slot);
    aio_raise(L, "RuntimeError", "cannot post to the event loop");
  }
  return 1;
}

/***
A new pending Future of this loop.
@function Loop:create_future
@python loop.create_future
@treturn Future
*/
static int l_create_future(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  aio_loop_check_thread(L, lp);
  aio_future_new(L, lp);
  return 1;
}

/***
Starts `fn(...)` as a task of this loop, through the task factory.
@function Loop:create_task
@python loop.create_task
@tparam function fn
@param ... its arguments
@treturn Task
@raise RuntimeError when the loop is closed or the factory returns no Task
*/
static int l_create_task(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  aio_loop_check_open(L, lp);
  return aio_task_create(L, lp, 2, lua_gettop(L) - 2);
}

/* ---- settings -------------------------------------------------------- */

static void set_ref(lua_State *L, int *ref, int idx) {
  luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
  if (!lua_isnil(L, idx)) {
    lua_pushvalue(L, idx);
    *ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
}

/***
Sets the handler of errors in callbacks (nil: the default one).
@function Loop:set_exception_handler
@python loop.set_exception_handler
@tparam ?function handler called as `handler(loop, context)`
*/
static int l_set_exception_handler(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  if (!lua_isnoneornil(L, 2)) check_callable(L, 2);
  lua_settop(L, 2);
  set_ref(L, &lp->exc_handler, 2);
  return 0;
}

/***
The handler set by `set_exception_handler`.
@function Loop:get_exception_handler
@python loop.get_exception_handler
@treturn ?function
*/
static int l_get_exception_handler(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lp->exc_handler);
  return 1;
}

/***
Sets the task factory (nil: the default).
@function Loop:set_task_factory
@python loop.set_task_factory
@tparam ?function factory called as `factory(loop, fn, ...)`, returns a Task
*/
static int l_set_task_factory(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  if (!lua_isnoneornil(L, 2)) check_callable(L, 2);
  lua_settop(L, 2);
  set_ref(L, &lp->task_factory, 2);
  lp->eager = lua_tocfunction(L, 2) == asyncio_eager_task_factory;
  return 0;
}

/***
The task factory, or nil.
@function Loop:get_task_factory
@python loop.get_task_factory
@treturn ?function
*/
static int l_get_task_factory(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lp->task_factory);
  return 1;
}

/***
Turns debug mode on or off.
@function Loop:set_debug
@python loop.set_debug
@tparam boolean enabled
*/
static int l_set_debug(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  lp->debug = (uint8_t)lua_toboolean(L, 2);
  if (!lp->debug)
    aio_debug_stop(lp);
  else if (lp->running)
    aio_debug_start(lp);
  return 0;
}

/***
Whether debug mode is on.
@function Loop:get_debug
@python loop.get_debug
@treturn boolean
*/
static int l_get_debug(lua_State *L) {
  lua_pushboolean(L, aio_check_loop(L, 1)->debug);
  return 1;
}

/***
The fd a host poller watches for readability to embed the loop.
@function Loop:backend_fd
@python (none)
@treturn integer
@raise RuntimeError when the loop is closed
*/
static int l_backend_fd(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  aio_loop_check_open(L, lp);
  lua_pushinteger(L, uv_backend_fd(lp->uv));
  return 1;
}

int asyncio_loop_backend_timeout(aio_loop *lp) {
  aio_timer *top;
  int ms = -1;
  if (lp->closed) return -1;
  loop_arm(lp);
  if (lp->ready.len > 0 || lp->stopping) return 0;
  top = aio_heap_top(&lp->timers);
  /* the next iteration may jump to the timer: it must come at once */
  if (top && lp->virtual_clock && !vclock_in_flight(lp)) return 0;
  if (top) {
    double delay = aio_heap_top_when(&lp->timers) - aio_loop_time(lp);
    uint64_t t = to_ms(delay);
    ms = t > INT_MAX ? INT_MAX : (int)t;
  }
  if (uv_loop_alive(lp->uv)) {
    int host = uv_backend_timeout(lp->uv);
    if (host >= 0 && (ms < 0 || host < ms)) ms = host;
  }
  return ms;
}

/***
How long a host poller may sleep, in seconds (0 while callbacks are ready;
nil: no deadline).
@function Loop:backend_timeout
@python (none)
@treturn ?number
@raise RuntimeError when the loop is closed
*/
static int l_backend_timeout(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  int ms;
  aio_loop_check_open(L, lp);
  ms = asyncio_loop_backend_timeout(lp);
  if (ms < 0)
    lua_pushnil(L);
  else
    lua_pushnumber(L, ms / 1e3);
  return 1;
}

/* Each loop has its own metatable whose __index is a small per-loop table
 * (chained to the shared methods) holding `slow_callback_duration`, so that
 * reading it is a plain field access as in Python and method lookups never
 * call into C. Writes go through __newindex to keep the C copy in step. */
static int l_newindex(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "slow_callback_duration") != 0)
    return luaL_error(L, "cannot set loop field '%s'", k);
  lp->slow_callback_duration = luaL_checknumber(L, 3);
  lua_getmetatable(L, 1);
  lua_getfield(L, -1, "__index");
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_rawset(L, -3);
  return 0;
}

static int l_tostring(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  lua_pushfstring(L, "<Loop running=%s closed=%s debug=%s%s>", lp->running ? "true" : "false",
                  lp->closed ? "true" : "false", lp->debug ? "true" : "false",
                  lp->virtual_clock ? " clock=virtual" : "");
  return 1;
}

/* new_event_loop([opts]): opts.clock is "real" (the default) or
 * "virtual" (see the virtual clock above). */
static int l_new_loop(lua_State *L) {
  int virtual_clock = 0;
  aio_loop *lp;
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_getfield(L, 1, "clock") != LUA_TNIL) {
      const char *clock = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
      if (strcmp(clock, "virtual") == 0)
        virtual_clock = 1;
      else if (strcmp(clock, "real") != 0)
        return luaL_argerror(L, 1,
                             lua_pushfstring(L,
                                             "opts.clock must be \"real\" or \"virtual\", got %s",
                                             luaL_tolstring(L, -1, NULL)));
    }
  }
  lp = asyncio_loop_new(L, NULL);
  if (virtual_clock) {
    lp->virtual_clock = 1;
    uv_prepare_start(&lp->prepare, on_prepare);
  }
  return 1;
}

static int l_get_running_loop(lua_State *L) {
  aio_state *S = aio_state_of(L);
  if (S->running)
    aio_loop_push_self(L, S->running);
  else
    lua_pushnil(L);
  return 1;
}

static int l_get_event_loop_ref(lua_State *L) {
  aio_state *S = aio_state_of(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->event_loop);
  return 1;
}

static int l_set_event_loop(lua_State *L) {
  aio_state *S = aio_state_of(L);
  if (!lua_isnoneornil(L, 1)) aio_check_loop(L, 1);
  lua_settop(L, 1);
  set_ref(L, &S->event_loop, 1);
  return 0;
}

void aio_loop_open(lua_State *L, aio_state *S) {
  static const luaL_Reg methods[] = {{"run_until_complete", l_run_until_complete},
                                     {"run_forever", l_run_forever},
                                     {"run_once", l_run_once},
                                     {"stop", l_stop},
                                     {"close", l_close},
                                     {"is_running", l_is_running},
                                     {"is_closed", l_is_closed},
                                     {"time", l_time},
                                     {"advance", l_advance},
                                     {"_watchdog", l_watchdog},
                                     {"call_soon", l_call_soon},
                                     {"call_later", l_call_later},
                                     {"call_at", l_call_at},
                                     {"call_soon_threadsafe", l_call_soon_threadsafe},
                                     {"create_future", l_create_future},
                                     {"create_task", l_create_task},
                                     {"set_exception_handler", l_set_exception_handler},
                                     {"get_exception_handler", l_get_exception_handler},
                                     {"set_task_factory", l_set_task_factory},
                                     {"get_task_factory", l_get_task_factory},
                                     {"set_debug", l_set_debug},
                                     {"get_debug", l_get_debug},
                                     {"backend_fd", l_backend_fd},
                                     {"backend_timeout", l_backend_timeout},
                                     {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"new_event_loop", l_new_loop},
                                   {"get_running_loop", l_get_running_loop},
                                   {"_get_event_loop", l_get_event_loop_ref},
                                   {"set_event_loop", l_set_event_loop},
                                   {NULL, NULL}};
  luaL_newmetatable(L, AIO_LOOP_MT);
  lua_pushlightuserdata(L, (void *)&aio_tags[AIO_T_LOOP]);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, -1);
  S->mt[AIO_T_LOOP] = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  aio_setfuncs(L, S, methods);
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "__index");
  lua_setfield(L, -3, "__fieldsmt");
  lua_setfield(L, -3, "Loop");
  {
    static const luaL_Reg meta[] = {
        {"__newindex", l_newindex}, {"__gc", l_gc}, {"__tostring", l_tostring}, {NULL, NULL}};
    aio_setfuncs(L, S, meta);
  }
  lua_pop(L, 1);
  aio_setfuncs(L, S, funcs);
}
