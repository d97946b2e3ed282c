/* Task: a Future driven by a Lua coroutine. The body runs under a pcall with
 * continuation inside the coroutine, so to-be-closed variables are closed (and
 * may await) while the coroutine is still alive when the body fails. */

/***
Tasks: a Future driving a function as a coroutine; every Future method
applies (`result`, `await`, ...; `set_result` and `set_exception` raise
RuntimeError). Cancelling a task raises CancelledError inside it at its
current await point; it may catch it with `pcall`.
Python: `asyncio.Task`.
@classmod Task
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* 128 bytes with Lua's userdata header and one uservalue (see struct
 * aio_task): each field more costs every task its size, rounded to 8 (the
 * slab's steps). */
_Static_assert(sizeof(void *) != 8 || sizeof(aio_task) <= 72, "aio_task outgrew 72 bytes");

/* The helpers of a step (pool_take and pool_give, attach_coroutine,
 * task_finish, finish) are declared inline: GCC then folds them into
 * aio_task_step, and a spawned task saves 47 instructions of prologues. */

/* ---- the anchor table ------------------------------------------------ */
/* A pending task is kept alive by its loop (in an array, so all_tasks() is a
 * scan): a running task never disappears because nobody held a reference. */

static void anchor(lua_State *L, aio_loop *lp, aio_task *t, int idx) {
  t->slot = aio_anchors_put(L, &lp->tasks, idx);
  lp->ntasks++;
}

/* aidx: where the anchor table is on the stack, or 0 */
static void unanchor(lua_State *L, aio_loop *lp, aio_task *t, int aidx) {
  if (lp->closed || t->slot == 0) return;
  if (aidx)
    aio_anchors_drop_in(L, &lp->tasks, aidx, t->slot);
  else
    aio_anchors_drop(L, &lp->tasks, t->slot);
  lp->ntasks--;
  t->slot = 0;
}

void aio_task_push(lua_State *L, aio_loop *lp, aio_task *t) {
  aio_anchors_push(L, &lp->tasks, t->slot);
}

static aio_task *check_task(lua_State *L, int idx) {
  return aio_checkudata(L, idx, AIO_T_TASK, AIO_T_TASK, "Task");
}

/* ---- nested coroutines ---------------------------------------------- */
/* A yielding API called in a coroutine that is not the task's own yields
 * (NESTED, the API function, its arguments) to whoever resumes it. The
 * asyncio.coroutine resume makes that same call one level up (so it
 * suspends the task, or climbs further) and resumes the coroutine with
 * (NESTED, ok, results... | error). */
static const char nested_key = 0;
#define NESTED ((void *)&nested_key)

static int nested_k(lua_State *L, int status, lua_KContext nargs) {
  int base = (int)nargs;
  (void)status;
  if (lua_touserdata(L, base + 1) != NESTED || lua_gettop(L) < base + 2)
    return aio_raise(L, "RuntimeError",
                     "a coroutine that awaits inside a task must be resumed by "
                     "asyncio.coroutine (resume or wrap), not the plain coroutine table");
  if (!lua_toboolean(L, base + 2)) {
    lua_settop(L, base + 3);
    return lua_error(L);
  }
  return lua_gettop(L) - base - 2;
}

/* Yields the running C function's own call up one level; see above. */
int aio_nested_yield(lua_State *L) {
  int n = lua_gettop(L), i;
  lua_Debug ar;
  luaL_checkstack(L, n + 2, "too many arguments");
  lua_pushlightuserdata(L, NESTED);
  if (!lua_getstack(L, 0, &ar) || !lua_getinfo(L, "f", &ar)) lua_pushnil(L);
  for (i = 1; i <= n; i++) lua_pushvalue(L, i);
  return lua_yieldk(L, n + 2, (lua_KContext)n, nested_k);
}

/* The task a yielding API suspends, or NULL when L is a coroutine of the
 * user's (the call then goes through nested_yield). */
aio_task *aio_current_task(lua_State *L, aio_state *S, const char *api) {
  aio_task *t = S->running ? S->running->current : NULL;
  if (t && t->co != L && lua_isyieldable(L)) return NULL;
  if (!t) {
    aio_raise(L, "RuntimeError", "%s called outside a task", api);
    return NULL;
  }
  if (!lua_isyieldable(L))
    aio_raise(L, "RuntimeError",
              "%s cannot suspend the task here: a C function without continuation (such as "
              "table.sort or string.gsub) is on the call stack",
              api);
  return t;
}

/* ---- the coroutine body ---------------------------------------------- */

/* Keeps where a plain (non-object) error was raised, for reports about the
 * task; error objects carry their own traceback. */
static int task_msgh(lua_State *co) {
  aio_state *S = aio_get_state(co);
  aio_task *t = S && S->running ? S->running->current : NULL;
  if (t && t->co == co && !lua_istable(co, 1)) {
    aio_task_push(co, t->f.loop, t);
    aio_push_extras(co, S, -1, 1);
    aio_traceback(co, co, NULL, 1);
    lua_setfield(co, -2, "traceback");
    lua_pop(co, 2);
  }
  return 1;
}

/* A body that returns leaves the handler below its results, where it reads
 * as true: only a failure pays a store. */
static int task_main_k(lua_State *co, int status, lua_KContext ctx) {
  (void)ctx;
  if (status != LUA_OK && status != LUA_YIELD) {
    lua_pushboolean(co, 0);
    lua_replace(co, 1);
  }
  return lua_gettop(co);
}

/* stack: msgh, fn, args... -> msgh, results... | false, error */
static int task_main(lua_State *co) {
  return task_main_k(co, lua_pcallk(co, lua_gettop(co) - 2, LUA_MULTRET, 1, 0, task_main_k), 0);
}

/* A hooked task (create_task_hooked) calls the task_failed hook (init.lua)
 * with itself and its arg in its last step when its body failed or it ends
 * cancelled, before its outcome is stored. That hook can then do what a done
 * callback would, for a per-task value, which nothing holds beside the task
 * while it runs (a done callback needs a closure or a map entry for it, and
 * a pending task's callback an anchor's second slot). A streams server
 * keeps the writer of each connection that way. The arg costs the
 * coroutine's stack one slot, and a task's stack holds nothing else of its
 * own below task_main, so a fresh 40-slot stack fits a hooked task's
 * handler as tightly as a plain one's. */
static int hooked_end(lua_State *co) {
  lua_remove(co, 2);
  return lua_gettop(co);
}

static int hooked_end_k(lua_State *co, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return hooked_end(co);
}

static int task_hooked_main_k(lua_State *co, int status, lua_KContext ctx) {
  int ok = status == LUA_OK || status == LUA_YIELD;
  aio_state *S = aio_get_state(co);
  aio_task *t = S->running->current;
  task_main_k(co, status, ctx); /* the failure's false, as a plain task's */
  if (!ok || t->must_cancel) {  /* must_cancel: cancelled as the body returned */
    t->f.hook = AIO_HOOK_RAN;
    aio_push_hook(co, S, "task_failed");
    aio_task_push(co, t->f.loop, t);
    lua_pushvalue(co, 2);
    lua_callk(co, 2, 0, 0, hooked_end_k);
  }
  return hooked_end(co);
}

/* stack: msgh, arg, fn, args... -> as task_main's */
static int task_hooked_main(lua_State *co) {
  int status = lua_pcallk(co, lua_gettop(co) - 3, LUA_MULTRET, 1, 0, task_hooked_main_k);
  return task_hooked_main_k(co, status, 0);
}

/* ---- stepping -------------------------------------------------------- */

static void push_cancel_message(lua_State *L, aio_state *S, int task_idx) {
  aio_push_extras(L, S, task_idx, 0);
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "cancel_message");
    lua_remove(L, -2);
  }
}

/* ---- coroutines -------------------------------------------------------- */
/* A task gets its coroutine at its first step, from a per-loop pool of
 * coroutines whose body returned: spawning many short tasks then reuses a few
 * threads (stack and CallInfo list included) instead of allocating one each. */

#define AIO_POOL_MAX 256

/* The last coroutine given back sits in its own registry slot (one lookup to
 * take it back, the common case of short tasks run one after the other); the
 * others in a table. A slot above the top keeps a stale reference until it is
 * overwritten: harmless, and cheaper than clearing it each time. So does the
 * spare's slot once taken, which saves the store when the same coroutine
 * comes back (it cannot be another at the same address while referenced). */
static inline void pool_give(lua_State *L, aio_loop *lp, aio_task *t, lua_State *co) {
  if (t->co_exposed || lp->npool >= AIO_POOL_MAX || lua_gethook(co) || lp->closed) return;
  if (!lp->spare) {
    lp->spare = co;
    if (lp->spare_held == co) return;
    lp->spare_held = co;
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    lua_rawseti(L, LUA_REGISTRYINDEX, lp->spare_ref);
    return;
  }
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lp->pool);
  lua_insert(L, -2);
  lua_rawseti(L, -2, lp->npool + 1); /* counted once stored: growing the table may fail */
  lp->npool++;
  lua_pop(L, 1);
}

/* Pushes a coroutine for a new task and returns it. */
static inline lua_State *pool_take(lua_State *L, aio_loop *lp) {
  if (lp->spare) {
    lua_State *co = lp->spare;
    lp->spare = NULL;
    lua_rawgeti(L, LUA_REGISTRYINDEX, lp->spare_ref);
    return co;
  }
  if (lp->npool == 0) return lua_newthread(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lp->pool);
  lua_rawgeti(L, -1, lp->npool--);
  lua_remove(L, -2);
  return lua_tothread(L, -1);
}

/* Room for n values more on both stacks; below LUA_MINSTACK / 2 both have
 * it by contract. Raised on L: co is not running. */
static void check_room(lua_State *L, lua_State *co, int n) {
  if (n <= LUA_MINSTACK / 2) return;
  if (!lua_checkstack(co, n)) luaL_error(L, "stack overflow (too many arguments)");
  luaL_checkstack(L, n, "too many arguments");
}

/* Gives the task at tidx its coroutine, loaded with task_main, its handler,
 * the function and its arguments (kept in uservalue 1 until now). Nothing
 * goes below the main function: a handler that parks a few calls deep then
 * fits the fresh coroutine's 40 slots, which one more slot can double.
 * The coroutine is left on top of L, for the caller to keep: a first step
 * holds it on the stack and stores it into uservalue 1 only if the body
 * suspends (a body that returns stores its result there instead). */
static inline lua_State *attach_coroutine(lua_State *L, aio_loop *lp, aio_task *t, int tidx) {
  lua_State *co = t->co_exposed ? lua_newthread(L) : pool_take(L, lp);
  int n = 1;
  lua_pushcfunction(L, task_main);
  lua_pushcfunction(L, task_msgh);
  lua_getiuservalue(L, tidx, 1);
  if (t->packed) {
    int i;
    lua_getfield(L, -1, "n");
    n = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    check_room(L, co, n + 4);
    for (i = 1; i <= n; i++) lua_rawgeti(L, -i, i); /* -i: the table under the copies */
    lua_remove(L, -n - 1);
  }
  lua_xmove(L, co, n + 2);
  t->co = co;
  t->packed = 0;
  return co;
}

/* aio_future_finish for the task at tidx, without its lookups when nothing
 * waits (the task's own finish paths have t at hand) */
static void finish_as(lua_State *L, aio_task *t, int tidx, uint8_t state) {
  if (t->f.flags & AIO_F_HASCB)
    aio_future_finish(L, tidx, state);
  else
    t->f.state = state;
}

/* A hooked task that ends without its main function having called the hook
 * (cancelled before its first step, or a memory error before
 * task_hooked_main ran) calls it from L with the arg of its coroutine's
 * first frame (main, msgh, arg, fn, args...: task_new), which is then the
 * coroutine's whole stack still. A failing hook is reported. */
static void hook_from_loop(lua_State *L, aio_loop *lp, aio_task *t, int tidx) {
  if (t->f.hook != AIO_HOOK_SET) return;
  t->f.hook = AIO_HOOK_RAN;
  aio_push_hook(L, lp->S, "task_failed");
  lua_pushvalue(L, tidx);
  lua_pushvalue(t->co, 3);
  lua_xmove(t->co, L, 1);
  aio_call_reporting(L, lp, lua_gettop(L) - 2, "task_failed hook", "task", tidx);
}

/* The body ended: the coroutine's stack holds `nres` values, (msgh,
 * results...) or (false, error) when the coroutine returned (status
 * LUA_OK), else one error. aidx: see unanchor; tidx: where the task is on
 * the stack (a first step's), or 0. */
static inline void task_finish(lua_State *L, aio_loop *lp, aio_task *t, int status, int nres,
                               int aidx, int tidx) {
  lua_State *co = t->co;
  int top = lua_gettop(L), base = top + 1, ok;
  if (nres > LUA_MINSTACK / 2) luaL_checkstack(L, nres + 4, "too many results");
  if (!tidx) {
    aio_task_push(L, lp, t);
    tidx = base++;
  }
  if (status != LUA_OK) {
    hook_from_loop(L, lp, t, tidx);
    base = lua_gettop(L) + 1;
  }
  lua_xmove(co, L, status == LUA_OK ? nres : 1);
  ok = status == LUA_OK && lua_toboolean(L, base);
  if (ok && t->must_cancel) { /* cancelled right before the body returned */
    t->must_cancel = 0;
    push_cancel_message(L, lp->S, tidx);
    lua_setiuservalue(L, tidx, 1);
    finish_as(L, t, tidx, AIO_CANCELLED);
  } else if (ok && nres == 2) { /* one result: the common case, stored as is */
    lua_setiuservalue(L, tidx, 1);
    t->f.nres = 1;
    finish_as(L, t, tidx, AIO_FINISHED);
  } else if (ok) {
    aio_future_set_results(L, tidx, base + 1, nres - 1);
  } else if (aio_is_cancelled_error(L, lp->S, -1)) {
    lua_getfield(L, -1, "message");
    lua_setiuservalue(L, tidx, 1);
    finish_as(L, t, tidx, AIO_CANCELLED);
  } else {
    aio_future_set_exc(L, tidx, -1);
  }
  if (status == LUA_OK)
    pool_give(L, lp, t, co);
  else
    lua_settop(co, 0);
  t->co = NULL;
  unanchor(L, lp, t, aidx);
  lua_settop(L, top);
}

/* finish_protected(lp, t, status, nres, anchors or nil, task or nil):
 * task_finish under lua_pcall, for a step the tick does not run itself (see
 * aio_task_settle). */
static int finish_protected(lua_State *L) {
  aio_loop *lp = lua_touserdata(L, 1);
  aio_task *t = lua_touserdata(L, 2);
  task_finish(L, lp, t, (int)lua_tointeger(L, 3), (int)lua_tointeger(L, 4),
              lua_istable(L, 5) ? 5 : 0, lua_isnil(L, 6) ? 0 : 6);
  return 0;
}

/* finish_failed(lp, t, err): the task ends with the error its attach or
 * task_finish ran into, or, when its outcome was stored already, schedules
 * the callbacks that were not. */
static int finish_failed(lua_State *L) {
  aio_loop *lp = lua_touserdata(L, 1);
  aio_task *t = lua_touserdata(L, 2);
  aio_task_push(L, lp, t);
  aio_future_settle_failed(L, 4, 3);
  if (t->co) lua_settop(t->co, 0);
  t->co = NULL;
  unanchor(L, lp, t, 0);
  return 0;
}

/* Settles t with the error on top, which is popped. */
static void settle_failed(lua_State *L, aio_loop *lp, aio_task *t) {
  lua_pushcfunction(L, finish_failed);
  lua_insert(L, -2);
  lua_pushlightuserdata(L, lp);
  lua_insert(L, -2);
  lua_pushlightuserdata(L, t);
  lua_insert(L, -2);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
    lua_writestringerror("asyncio: a task could not finish: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

/* A memory error while a task gets its coroutine or stores its outcome must
 * not leave it pending with no step left to run. A step the tick runs itself
 * needs no lua_pcall of its own for that (two a task, a sixth of a spawn's
 * cost): it marks the task as settling, and the tick's error path calls
 * this, with the error on top. Returns 0, the error left, when no task was
 * settling. */
int aio_task_settle(lua_State *L, aio_loop *lp) {
  aio_task *t = lp->settling;
  if (!t) return 0;
  lp->settling = NULL;
  settle_failed(L, lp, t);
  return 1;
}

static inline void finish(lua_State *L, aio_loop *lp, aio_task *t, int status, int nres, int aidx,
                          int tidx, int direct) {
  if (direct) {
    lp->settling = t;
    task_finish(L, lp, t, status, nres, aidx, tidx);
    lp->settling = NULL;
    return;
  }
  lua_pushcfunction(L, finish_protected);
  lua_pushlightuserdata(L, lp);
  lua_pushlightuserdata(L, t);
  lua_pushinteger(L, status);
  lua_pushinteger(L, nres);
  aio_push_opt(L, aidx);
  aio_push_opt(L, tidx);
  if (lua_pcall(L, 6, 0, 0) != LUA_OK) settle_failed(L, lp, t);
}

/* A task cancelled before its first step never runs its body. */
static void finish_unstarted(lua_State *L, aio_loop *lp, aio_task *t) {
  int tidx;
  aio_task_push(L, lp, t);
  tidx = lua_gettop(L);
  hook_from_loop(L, lp, t, tidx);
  push_cancel_message(L, lp->S, tidx);
  lua_setiuservalue(L, tidx, 1);
  finish_as(L, t, tidx, AIO_CANCELLED);
  t->co = NULL;
  unanchor(L, lp, t, 0);
  lua_settop(L, tidx - 1);
}

/* An eager first step runs attach_coroutine under lua_pcall (see
 * aio_task_settle). */
static int attach_protected(lua_State *L) {
  attach_coroutine(L, lua_touserdata(L, 1), lua_touserdata(L, 2), 3);
  return 1;
}

/* Returns 1 when it ran the body: lp->stamp is then the step's end.
 * anchors: for a step the tick runs itself (see aio_task_settle), where the
 * tick keeps the tasks' anchor table on its stack, 0 until a first step
 * pushes it there; NULL for a step the tick does not run. */
int aio_task_step(lua_State *L, aio_loop *lp, aio_task *t, uint64_t woke, int *anchors) {
  aio_task *prev = lp->current;
  lua_State *co = t->co;
  int nargs = 0, nres, status, base = 0, tidx = 0, debug = lp->debug, direct = anchors != NULL;
  int aidx = direct ? *anchors : 0;
  uint64_t t0, t1, delay;
  aio_debug_frame fr;
  if (t->f.state != AIO_PENDING) return 0;
  t->wait = AIO_WAIT_NONE;
  if (!t->started) {
    if (t->must_cancel) {
      finish_unstarted(L, lp, t);
      return 0;
    }
    t->started = 1;
    if (!co) {
      /* the task and its coroutine stay on the stack for the finish of a
       * body that returns in its first step (most do), by the anchor table */
      if (!aidx) {
        aio_anchors_push_table(L, &lp->tasks);
        aidx = lua_gettop(L);
        if (direct) *anchors = aidx; /* the tick's first: it stays for the others */
      }
      base = direct ? lua_gettop(L) : aidx - 1; /* what the step leaves */
      lua_rawgeti(L, aidx, t->slot);
      tidx = (direct ? base : aidx) + 1;
      if (direct) {
        lp->settling = t;
        co = attach_coroutine(L, lp, t, tidx);
        lp->settling = NULL;
      } else {
        lua_pushcfunction(L, attach_protected);
        lua_pushlightuserdata(L, lp);
        lua_pushlightuserdata(L, t);
        lua_pushvalue(L, tidx);
        if (lua_pcall(L, 3, 1, 0) != LUA_OK) {
          settle_failed(L, lp, t);
          lua_settop(L, base);
          return 0;
        }
        co = lua_tothread(L, -1);
      }
    }
    nargs = lua_gettop(co) - 1; /* task_main is not an argument */
  }
  /* One clock reading per step when steps follow each other: this step
   * starts when the one before it ended (see lp->stamp_ok). */
  t0 = lp->stamp_ok ? lp->stamp : aio_clock_ns(lp);
  lp->stamp = t0;
  lp->stamp_ok = 0;
  if (!woke) woke = lp->tick_ns;
  delay = t0 > woke ? t0 - woke : 0;
  t->delay_sum_ns += delay;
  if (delay > t->delay_max_ns) t->delay_max_ns = delay > UINT32_MAX ? UINT32_MAX : (uint32_t)delay;
  lp->current = t;
  if (debug) aio_debug_enter(L, lp, co, t, 0, t0, &fr);
  status = lua_resume(co, L, nargs, &nres);
  lp->current = prev;
  t1 = aio_clock_ns(lp);
  lp->stamp = t1;
  t->steps++;
  t->run_ns += t1 > t0 ? t1 - t0 : 0;
  t->last_ns = t1;
  if (debug) aio_debug_leave(L, lp, &fr, t1, NULL, t, status != LUA_YIELD);
  if (status == LUA_YIELD) {
    lua_pop(co, nres);
    if (tidx) lua_setiuservalue(L, tidx, 1); /* pending now: the task holds its coroutine */
    if (t->wait == AIO_WAIT_SOON) {
      aio_loop_push(lp, AIO_RUN_STEP, t, LUA_NOREF, LUA_NOREF);
    } else if (t->wait == AIO_WAIT_NONE) {
      /* coroutine.yield straight from the body: nothing will wake it */
      lua_resetthread(co);
      lua_pushliteral(co, "task body yielded outside asyncio (use asyncio.coroutine for "
                          "generators inside tasks)");
      aio_push_error(co, "RuntimeError", -1);
      finish(L, lp, t, LUA_ERRRUN, 1, aidx, tidx, direct);
    }
  } else {
    finish(L, lp, t, status, nres, aidx, tidx, direct);
  }
  if (tidx) lua_settop(L, base);
  return 1;
}

/* ---- awaiting -------------------------------------------------------- */

void aio_task_push_cancelled(lua_State *L, aio_task *t) {
  t->must_cancel = 0;
  aio_task_push(L, t->f.loop, t);
  push_cancel_message(L, t->f.loop->S, -1);
  aio_push_error(L, "CancelledError", -1);
  lua_remove(L, -2);
  lua_remove(L, -2);
}

static int raise_cancelled(lua_State *L, aio_task *t) {
  aio_task_push_cancelled(L, t);
  return lua_error(L);
}

static int await_k(lua_State *L, int status, lua_KContext ctx) {
  aio_task *t = (aio_task *)ctx;
  (void)status;
  lua_settop(L, 1);
  if (t->must_cancel) return raise_cancelled(L, t);
  return aio_future_push_done(L, lua_touserdata(L, 1), 1);
}

int aio_await(lua_State *L) {
  aio_state *S = aio_state_of(L);
  aio_future *f = aio_check_future_in(L, S, 1);
  aio_task *t;
  if (f->state != AIO_PENDING) return aio_future_push_done(L, f, 1);
  t = aio_current_task(L, S, "await");
  if (!t) return aio_nested_yield(L);
  if (f->loop != t->f.loop) return aio_raise(L, "RuntimeError", "future belongs to another loop");
  if (&t->f == f) return aio_raise(L, "RuntimeError", "Task cannot await on itself");
  lua_settop(L, 1);
  if (t->must_cancel) {
    /* cancelled while running: as in Python, the awaited future is cancelled */
    aio_task_push(L, t->f.loop, t);
    push_cancel_message(L, S, -1);
    if (aio_future_cancel(L, 1, -1)) t->must_cancel = 0;
    lua_settop(L, 1);
  }
  if (f->state != AIO_PENDING) {
    t->wait = AIO_WAIT_SOON; /* done by that cancel: one turn, then raise */
  } else {
    aio_future_add_waiter(L, 1, t);
    t->wait = AIO_WAIT_FUTURE;
  }
  return lua_yieldk(L, 0, (lua_KContext)t, await_k);
}

static int sleep_k(lua_State *L, int status, lua_KContext ctx) {
  aio_task *t = (aio_task *)ctx;
  (void)status;
  if (t->must_cancel) return raise_cancelled(L, t);
  return lua_gettop(L) - 1;
}

static int l_sleep(lua_State *L) {
  aio_state *S = aio_state_of(L);
  double delay = luaL_checknumber(L, 1);
  aio_task *t;
  luaL_argcheck(L, delay == delay, 1, "delay is NaN");
  t = aio_current_task(L, S, "asyncio.sleep");
  if (!t) return aio_nested_yield(L);
  if (delay > 0 && !t->must_cancel) {
    t->timer.kind = AIO_TIMER_TASK; /* shares its bytes with parked_on */
    aio_loop_add_timer(t->f.loop, &t->timer, aio_loop_time(t->f.loop) + delay);
    t->wait = AIO_WAIT_TIMER;
  } else {
    t->wait = AIO_WAIT_SOON; /* sleep(0): one trip through the ready queue */
  }
  return lua_yieldk(L, 0, (lua_KContext)t, sleep_k);
}

/* ---- parking ----------------------------------------------------------- */
/* Suspends t without a Future until aio_task_wake(t, on) or a cancellation:
 * `on` is any address naming what the task waits for (a StreamReader, a
 * waitlist), so a stale wake-up meant for an earlier wait cannot wake it.
 * k must call aio_task_unparked first. */
int aio_task_park(lua_State *L, aio_task *t, const void *on, lua_KContext ctx, lua_KFunction k) {
  t->parked_on = on;
  t->wait = t->must_cancel ? AIO_WAIT_SOON : AIO_WAIT_PARK;
  return lua_yieldk(L, 0, ctx, k);
}

/* Raises CancelledError when the wake-up was a cancellation. */
void aio_task_unparked(lua_State *L, aio_task *t) {
  t->parked_on = NULL;
  if (t->must_cancel) raise_cancelled(L, t);
}

/* A task of a closed loop never runs again: it is parked nowhere. */
int aio_task_is_parked_on(const aio_task *t, const void *on) {
  return t && t->f.state == AIO_PENDING && t->wait == AIO_WAIT_PARK && t->parked_on == on &&
         !t->f.loop->closed;
}

int aio_task_wake(aio_task *t, const void *on) {
  if (!aio_task_is_parked_on(t, on)) return 0;
  t->parked_on = NULL; /* a cancellation leaves it set: the continuation tells them apart */
  t->wait = AIO_WAIT_SOON;
  aio_loop_push(t->f.loop, AIO_RUN_STEP, t, LUA_NOREF, LUA_NOREF);
  return 1;
}

int aio_task_cancel_pending(const aio_task *t) {
  return t->must_cancel != 0;
}

/* ---- cancellation ---------------------------------------------------- */

/* must_cancel while the cancel passes into the future the task awaits */
#define CANCEL_IN_FLIGHT 2

/* Pushes the future a suspended task awaits: the first argument of the
 * await frame on top of the coroutine's stack. */
static void push_waiting(lua_State *L, aio_task *t) {
  lua_Debug ar;
  if (lua_getstack(t->co, 0, &ar) && lua_getlocal(t->co, &ar, 1))
    lua_xmove(t->co, L, 1);
  else
    lua_pushnil(L);
}

/* task_suspension(task) -> state, id, coroutine, awaited future: for the
 * call graphs of graph.lua, read from what a step already records, so edges
 * through await cost nothing. The coroutine is lent, not exposed (the pool
 * may still recycle it once the task ends). */
static int l_task_suspension(lua_State *L) {
  static const char *const states[] = {"running", "awaiting", "sleeping", "ready", "parked"};
  aio_task *t = check_task(L, 1);
  if (t->f.state != AIO_PENDING) {
    lua_pushliteral(L, "done");
    lua_pushinteger(L, t->f.id);
    return 2;
  }
  lua_pushstring(L, t->started ? states[t->wait] : "ready");
  lua_pushinteger(L, t->f.id);
  if (t->co && t->started) {
    lua_pushthread(t->co);
    lua_xmove(t->co, L, 1);
  } else {
    lua_pushnil(L);
  }
  if (t->wait == AIO_WAIT_FUTURE)
    push_waiting(L, t);
  else
    lua_pushnil(L);
  return 4;
}

int aio_task_cancel(lua_State *L, int idx, int msg_idx) {
  aio_task *t = lua_touserdata(L, idx);
  aio_loop *lp = t->f.loop;
  idx = lua_absindex(L, idx);
  msg_idx = lua_absindex(L, msg_idx);
  if (t->f.state != AIO_PENDING) return 0;
  t->cancels++;
  if (t->wait == AIO_WAIT_FUTURE && t->must_cancel != CANCEL_IN_FLIGHT) {
    uint8_t was = t->must_cancel;
    int done;
    t->must_cancel = CANCEL_IN_FLIGHT;
    push_waiting(L, t);
    done = aio_test_future(L, -1) && aio_future_cancel(L, -1, msg_idx);
    lua_pop(L, 1);
    if (t->must_cancel == CANCEL_IN_FLIGHT) t->must_cancel = was;
    if (done) return 1;
  } else if (t->wait == AIO_WAIT_TIMER || t->wait == AIO_WAIT_PARK || t->wait == AIO_WAIT_FUTURE) {
    /* AIO_WAIT_FUTURE here: the cancel came back round a cycle of tasks
     * awaiting each other, which would otherwise recurse until the C stack
     * overflows; this task is woken with CancelledError instead */
    if (t->wait == AIO_WAIT_TIMER) {
      aio_loop_remove_timer(lp, &t->timer);
    } else if (t->wait == AIO_WAIT_FUTURE) {
      push_waiting(L, t);
      if (aio_test_future(L, -1)) aio_future_remove_waiter(L, lua_gettop(L), t);
      lua_pop(L, 1);
    }
    t->wait = AIO_WAIT_SOON;
    aio_loop_push(lp, AIO_RUN_STEP, t, LUA_NOREF, LUA_NOREF);
  }
  t->must_cancel = 1;
  if (!lua_isnil(L, msg_idx)) {
    aio_push_extras(L, lp->S, idx, 1);
    lua_pushvalue(L, msg_idx);
    lua_setfield(L, -2, "cancel_message");
    lua_pop(L, 1);
  }
  return 1;
}

/* ---- creation -------------------------------------------------------- */

/* fn_idx: the function, or a hooked task's arg (with fn, args... after it:
 * nargs counts them), an absolute index as for aio_task_create */
static void task_new(lua_State *L, aio_loop *lp, int fn_idx, int nargs, int eager, int hooked) {
  aio_task *t;
  int tidx;
  aio_loop_check_open(L, lp);
  t = lua_newuserdatauv(L, sizeof *t, 1);
  memset(t, 0, sizeof *t);
  tidx = lua_gettop(L);
  t->f.loop = lp;
  t->f.flags = AIO_F_TASK;
  t->f.id = ++lp->S->task_counter;
  t->last_ns = lp->ticking ? lp->stamp : aio_clock_ns(lp); /* since_run counts from here */
  if (lp->debug) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, lp->S->mt_debug_task);
    lua_setmetatable(L, -2);
    aio_future_note_source(L, lp->S, -1);
  } else {
    aio_setmetatable(L, lp->S, AIO_T_TASK);
  }
  if (hooked) {
    /* its coroutine now, loaded as attach_coroutine would load it: no
     * {arg, fn, args..., n=} to become garbage at the first step (a server
     * makes such a task for each connection) */
    lua_State *co = pool_take(L, lp);
    int i;
    check_room(L, co, nargs + 3);
    lua_pushcfunction(L, task_hooked_main);
    lua_pushcfunction(L, task_msgh);
    for (i = 0; i <= nargs; i++) lua_pushvalue(L, fn_idx + i);
    lua_xmove(L, co, nargs + 3);
    t->co = co;
    t->f.hook = AIO_HOOK_SET;
  } else if (nargs > 0) {
    int i;
    lua_createtable(L, nargs + 1, 1);
    for (i = 0; i <= nargs; i++) {
      lua_pushvalue(L, fn_idx + i);
      lua_rawseti(L, -2, i + 1);
    }
    lua_pushinteger(L, nargs + 1);
    lua_setfield(L, -2, "n");
    t->packed = 1;
  } else {
    lua_pushvalue(L, fn_idx);
  }
  lua_setiuservalue(L, tidx, 1);
  anchor(L, lp, t, tidx);
  if (eager && lp->running) {
    aio_task_step(L, lp, t, UINT64_MAX, NULL);
  } else {
    t->wait = AIO_WAIT_SOON;
    aio_loop_push(lp, AIO_RUN_STEP, t, LUA_NOREF, LUA_NOREF);
  }
}

/* loop:create_task / asyncio.create_task: honours the loop's task factory. */
int aio_task_create(lua_State *L, aio_loop *lp, int fn_idx, int nargs) {
  int i;
  aio_loop_check_thread(L, lp);
  if (lp->task_factory == LUA_NOREF || lp->eager) {
    task_new(L, lp, fn_idx, nargs, lp->eager, 0);
    return 1;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, lp->task_factory);
  aio_loop_push_self(L, lp);
  for (i = 0; i <= nargs; i++) lua_pushvalue(L, fn_idx + i);
  lua_call(L, nargs + 2, 1);
  if (!aio_test_future(L, -1)) aio_raise(L, "RuntimeError", "task factory did not return a Task");
  return 1;
}

int asyncio_eager_task_factory(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  task_new(L, lp, 2, lua_gettop(L) - 2, 1, 0);
  return 1;
}

/* asyncio.Task(loop, fn, ...): a task that bypasses the factory (what a
 * factory itself calls). */
static int l_task_new(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  task_new(L, lp, 2, lua_gettop(L) - 2, 0, 0);
  return 1;
}

/* create_task_hooked(loop, arg, fn, args...) -> a task running fn(args...)
 * that calls the task_failed hook with (task, arg) in its last step when fn
 * fails or the task ends cancelled (see task_hooked_main), or nil when the
 * loop has a task factory other than the eager one (the caller then makes
 * its task with create_task). */
static int l_create_task_hooked(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  luaL_checkany(L, 2);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  aio_loop_check_thread(L, lp);
  if (lp->task_factory != LUA_NOREF && !lp->eager) return 0;
  task_new(L, lp, 2, lua_gettop(L) - 2, lp->eager, 1);
  return 1;
}

static int l_create_task(lua_State *L) {
  aio_state *S = aio_state_of(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  return aio_task_create(L, aio_loop_of(L, S), 1, lua_gettop(L) - 1);
}

static int l_current_task(lua_State *L) {
  aio_state *S = aio_state_of(L);
  aio_loop *lp = lua_isnoneornil(L, 1) ? aio_loop_of(L, S) : aio_check_loop(L, 1);
  if (lp->current && lp->current->slot)
    aio_task_push(L, lp, lp->current);
  else
    lua_pushnil(L);
  return 1;
}

static int l_all_tasks(lua_State *L) {
  aio_state *S = aio_state_of(L);
  aio_loop *lp = lua_isnoneornil(L, 1) ? aio_loop_of(L, S) : aio_check_loop(L, 1);
  int i, n = 0;
  lua_createtable(L, lp->ntasks, 0);
  if (lp->closed) return 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, lp->tasks.ref);
  for (i = 1; i <= lp->tasks.top; i++) {
    if (lua_rawgeti(L, -1, i) == LUA_TNIL)
      lua_pop(L, 1);
    else
      lua_rawseti(L, -3, ++n);
  }
  lua_pop(L, 1);
  return 1;
}

/* ---- Task methods ---------------------------------------------------- */

/***
Requests cancellation: CancelledError(msg) is raised in the task.
@function Task:cancel
@python Task.cancel
@tparam[opt] string msg
@treturn boolean false when already done
*/
static int l_cancel(lua_State *L) {
  check_task(L, 1);
  if (!lua_isnoneornil(L, 2)) luaL_checkstring(L, 2);
  lua_settop(L, 2);
  lua_pushboolean(L, aio_task_cancel(L, 1, 2));
  return 1;
}

/***
The number of pending cancellation requests.
@function Task:cancelling
@python Task.cancelling
@treturn integer
*/
static int l_cancelling(lua_State *L) {
  lua_pushinteger(L, check_task(L, 1)->cancels);
  return 1;
}

/***
Decrements the cancellation requests.
@function Task:uncancel
@python Task.uncancel
@treturn integer the count left
*/
static int l_uncancel(lua_State *L) {
  aio_task *t = check_task(L, 1);
  if (t->cancels > 0 && --t->cancels == 0) t->must_cancel = 0;
  lua_pushinteger(L, t->cancels);
  return 1;
}

/***
The task's name (`Task-N` by default).
@function Task:get_name
@python Task.get_name
@treturn string
*/
static int l_get_name(lua_State *L) {
  aio_task *t = check_task(L, 1);
  aio_push_extras(L, aio_state_of(L), 1, 0);
  if (lua_istable(L, -1) && lua_getfield(L, -1, "name") != LUA_TNIL) return 1;
  lua_pushfstring(L, "Task-%d", (int)t->f.id);
  return 1;
}

/***
Renames the task.
@function Task:set_name
@python Task.set_name
@param name converted with `tostring`
*/
static int l_set_name(lua_State *L) {
  check_task(L, 1)->named = 1;
  luaL_checkany(L, 2);
  luaL_tolstring(L, 2, NULL);
  aio_push_extras(L, aio_state_of(L), 1, 1);
  lua_insert(L, -2);
  lua_setfield(L, -2, "name");
  return 0;
}

/***
The task's coroutine (nil once done).
@function Task:get_coro
@python Task.get_coro
@treturn ?thread
*/
static int l_get_coro(lua_State *L) {
  aio_task *t = check_task(L, 1);
  if (t->f.state == AIO_PENDING && !t->co_exposed) {
    t->co_exposed = 1; /* the user holds it now: never recycle it */
    if (!t->co) {
      attach_coroutine(L, t->f.loop, t, 1);
      lua_setiuservalue(L, 1, 1);
    }
  }
  if (t->co) {
    lua_pushthread(t->co); /* not uservalue 1: a first step keeps it on the stack */
    lua_xmove(t->co, L, 1);
  } else {
    lua_pushnil(L);
  }
  return 1;
}

static void push_stack(lua_State *L, aio_task *t) {
  if (t->co && t->started)
    aio_traceback(L, t->co, NULL, 0);
  else
    lua_pushliteral(L, "");
}

/***
A traceback of where the task is suspended.
@function Task:get_stack
@python Task.get_stack
@treturn string
*/
static int l_get_stack(lua_State *L) {
  push_stack(L, check_task(L, 1));
  return 1;
}

/***
Writes `get_stack()` to stderr.
@function Task:print_stack
@python Task.print_stack
*/
static int l_print_stack(lua_State *L) {
  aio_task *t = check_task(L, 1);
  l_get_name(L);
  push_stack(L, t);
  lua_writestringerror("Stack for task %s:\n", lua_tostring(L, -2));
  lua_writestringerror("%s\n", lua_tostring(L, -1));
  return 0;
}

/* The counters of the task's steps (see aio_task_step), in seconds. */

/***
The counters of the task's steps: `steps` and times in seconds (shown by `asyncio.ps`).
@function Task:get_stats
@python (none)
@treturn table
*/
static int l_get_stats(lua_State *L) {
  aio_task *t = check_task(L, 1);
  aio_loop *lp = t->f.loop;
  uint64_t now = aio_clock_ns(lp);
  lua_createtable(L, 0, 7);
  lua_pushinteger(L, (lua_Integer)t->steps);
  lua_setfield(L, -2, "steps");
  lua_pushnumber(L, (double)t->run_ns / 1e9);
  lua_setfield(L, -2, "run_time");
  /* the running task has not stopped running */
  lua_pushnumber(L, lp->current == t || now <= t->last_ns ? 0 : (double)(now - t->last_ns) / 1e9);
  lua_setfield(L, -2, "since_run");
  lua_pushnumber(L, t->steps ? (double)t->delay_sum_ns / t->steps / 1e9 : 0);
  lua_setfield(L, -2, "sched_delay"); /* the mean */
  lua_pushnumber(L, (double)t->delay_max_ns / 1e9);
  lua_setfield(L, -2, "sched_delay_max");
  lua_pushnumber(L, (double)t->delay_sum_ns / 1e9);
  lua_setfield(L, -2, "sched_delay_total");
  lua_pushboolean(L, lp->current == t);
  lua_setfield(L, -2, "running");
  return 1;
}

/* Debug mode only: a task can be collected while pending once its loop was
 * closed with the task still waiting. */
static int l_debug_gc(lua_State *L) {
  aio_task *t = lua_touserdata(L, 1);
  aio_state *S = aio_state_of(L);
  if (t->f.state != AIO_PENDING) return 0;
  aio_push_hook(L, S, "log");
  lua_pushliteral(L, "error");
  {
    int top = lua_gettop(L);
    l_get_name(L);
    /* Python's words: the message, then the task */
    lua_pushfstring(L, "Task was destroyed but it is pending!\ntask: <Task pending name='%s'>",
                    lua_tostring(L, -1));
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
  }
  aio_push_extras(L, S, 1, 0);
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "source_traceback");
    lua_remove(L, -2);
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  } else {
    lua_pop(L, 1);
  }
  lua_pcall(L, 2, 0, 0);
  return 0;
}

static int l_tostring(lua_State *L) {
  aio_task *t = check_task(L, 1);
  static const char *const states[] = {"pending", "finished", "cancelled"};
  l_get_name(L);
  lua_pushfstring(L, "<Task %s name='%s'>", states[t->f.state], lua_tostring(L, -1));
  return 1;
}

void aio_task_open(lua_State *L, aio_state *S) {
  static const luaL_Reg methods[] = {{"cancel", l_cancel},       {"cancelling", l_cancelling},
                                     {"uncancel", l_uncancel},   {"get_name", l_get_name},
                                     {"set_name", l_set_name},   {"get_coro", l_get_coro},
                                     {"get_stack", l_get_stack}, {"print_stack", l_print_stack},
                                     {"get_stats", l_get_stats}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__tostring", l_tostring}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"sleep", l_sleep},
                                   {"create_task", l_create_task},
                                   {"create_task_hooked", l_create_task_hooked},
                                   {"current_task", l_current_task},
                                   {"all_tasks", l_all_tasks},
                                   {"Task_new", l_task_new},
                                   {"eager_task_factory", asyncio_eager_task_factory},
                                   {"task_suspension", l_task_suspension},
                                   {NULL, NULL}};
  aio_newclass(L, S, AIO_T_TASK, AIO_TASK_MT, NULL, meta);
  aio_future_methods(L, S);
  aio_setfuncs(L, S, methods);
  aio_copy_metatable(L, S, AIO_T_TASK); /* the debug variant: plus a __gc */
  lua_pushlightuserdata(L, S);
  lua_pushcclosure(L, l_debug_gc, 1);
  lua_setfield(L, -2, "__gc");
  S->mt_debug_task = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_setfield(L, -2, "Task");
  aio_setfuncs(L, S, funcs);
  lua_pushlightuserdata(L, NESTED);
  lua_setfield(L, -2, "NESTED");
}
