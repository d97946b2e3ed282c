/* Transport over a libuv stream (TCP, Unix socket, pipe): reads land in the
 * loop's receive buffer and go to the protocol; writes go to the socket at
 * once and only what it refuses is queued, referencing the Lua string. */

/***
Stream transports (TCP, Unix sockets, pipes; TLS ones have the same
methods).
@module transports
*/

#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "stream.h"

/* Uservalues of a Transport. What an idle connection does not use is in its
 * aux table instead (push_aux). */
enum { UV_PROTO = AIO_UV_PROTO, UV_DATACB = AIO_UV_DATACB, UV_NUSER = UV_DATACB };

/* A TCP transport's record, 80 bytes and its uv_tcp_t (248 on Linux x86-64),
 * is a 336-byte malloc block: a field more would cost 16 bytes per
 * connection. */
_Static_assert(sizeof(void *) != 8 || offsetof(aio_tp, u) <= 80, "aio_tp outgrew 80 bytes");

/* A queued write; its string sits in the in-flight table at [slot]. */
struct aio_wreq {
  uv_write_t req;
  uv_buf_t buf;
  aio_wreq *next;
  int slot;
};

/* A transport that start_tls wrapped belongs to its TLS layer: a write
 * through it would put plaintext between TLS records. Once closed (a failed
 * upgrade) it acts as any closed transport. */
static aio_tp *check_tp(lua_State *L, int idx) {
  aio_tp_box *b = aio_check_tagged(L, idx, AIO_T_TRANSPORT, "Transport");
  if (!b->tp) luaL_argerror(L, idx, "transport is gone");
  if (b->tp->wrapped && b->tp->state == AIO_TP_OPEN)
    aio_raise(L, "RuntimeError", "transport was upgraded to TLS: use the transport start_tls gave");
  return b->tp;
}

/* The aux table, made on first need and held by registry ref tp->aux until
 * the close callback (or loop close, or the GC of a transport never
 * started): the strings of queued writes at their request's slot, the error
 * the connection was lost with at "lost", the future of _drain_waiter at
 * "flush". A ref in the record, not a uservalue of the box: an idle
 * connection pays 4 bytes of padding for it instead of 16. */
static void push_aux(lua_State *L, aio_tp *tp) {
  if (tp->aux != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, tp->aux);
    return;
  }
  lua_newtable(L);
  lua_pushvalue(L, -1);
  tp->aux = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Pushes the aux table's field `name` (nil without one); returns its type. */
static int get_aux(lua_State *L, aio_tp *tp, const char *name) {
  if (tp->aux == LUA_NOREF) {
    lua_pushnil(L);
    return LUA_TNIL;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, tp->aux);
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
  return lua_type(L, -1);
}

static void drop_aux(lua_State *L, aio_tp *tp) {
  luaL_unref(L, LUA_REGISTRYINDEX, tp->aux);
  tp->aux = LUA_NOREF;
}

/* The connections of a Server (Server._conns, network.lua): a transport
 * started with the Server names it by tp->server, this object's registry
 * ref, an int in its record instead of a uservalue of its box. The ref is
 * held while the Server has connections; the uservalue is the Server. */
typedef struct conns {
  const char *tag; /* first: aio_test_tagged */
  int n, ref;
} conns;

/* server_conns(server) -> the object for Server._conns */
static int l_server_conns(lua_State *L) {
  conns *c;
  luaL_checktype(L, 1, LUA_TTABLE);
  c = lua_newuserdatauv(L, sizeof *c, 1);
  c->tag = &aio_tags[AIO_T_CONNS];
  c->n = 0;
  c->ref = LUA_NOREF;
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  return 1;
}

/* tp joins the connections of the Server at idx. */
static void join_server(lua_State *L, aio_tp *tp, int idx) {
  conns *c;
  lua_getfield(L, idx, "_conns");
  c = aio_check_tagged(L, -1, AIO_T_CONNS, "Server._conns");
  if (c->n++ == 0)
    c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else
    lua_pop(L, 1);
  tp->server = c->ref;
}

/* Pushes tp's Server, or nil. */
static void push_server(lua_State *L, aio_tp *tp) {
  if (tp->server == LUA_NOREF) {
    lua_pushnil(L);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, tp->server);
  lua_getiuservalue(L, -1, 1);
  lua_remove(L, -2);
}

/* After its close callback, or loop close: the last one lets go of the ref. */
static void leave_server(lua_State *L, aio_tp *tp) {
  conns *c;
  if (tp->server == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, tp->server);
  c = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (--c->n == 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, c->ref);
    c->ref = LUA_NOREF;
  }
  tp->server = LUA_NOREF;
}

/* Python's defaults, which a transport without a write queue has */
#define HIGH_WATER (64 * 1024)
#define LOW_WATER (16 * 1024)

aio_tp_wq *aio_tp_wq_of(lua_State *L, aio_tp *tp) {
  if (tp->wq) return tp->wq;
  if (!(tp->wq = calloc(1, sizeof *tp->wq))) luaL_error(L, "not enough memory");
  tp->wq->high = HIGH_WATER;
  tp->wq->low = LOW_WATER;
  return tp->wq;
}

static int inflight(const aio_tp *tp) {
  return tp->wq ? tp->wq->inflight : 0;
}

static size_t low_water(const aio_tp *tp) {
  return tp->wq ? tp->wq->low : LOW_WATER;
}

static void tp_free_if_done(aio_tp *tp) {
  aio_wreq *w, *next;
  if (!tp->handle_closed || !tp->collected) return;
  if (tp->wq) {
    for (w = tp->wq->free_reqs; w; w = next) {
      next = w->next;
      free(w);
    }
    free(tp->wq);
  }
  free(tp);
}

/* Settles _drain_waiter's future: resolved, or failed when `lost`. */
static void settle_flush(lua_State *L, aio_tp *tp, int lost) {
  if (get_aux(L, tp, "flush") != LUA_TUSERDATA) {
    lua_pop(L, 1);
    return;
  }
  if (((aio_future *)lua_touserdata(L, -1))->state == AIO_PENDING) {
    if (lost) {
      lua_pushliteral(L, "Connection lost");
      aio_push_error(L, "ConnectionResetError", -1);
      aio_future_set_exc(L, -3, -1);
      lua_pop(L, 2);
    } else {
      aio_future_set_results(L, -1, -1, 0);
    }
  }
  lua_pop(L, 1);
  push_aux(L, tp);
  lua_pushnil(L);
  lua_setfield(L, -2, "flush");
  lua_pop(L, 1);
}

/* ---- closing ----------------------------------------------------------- */

/* on_closed's Lua part, under lua_pcall: a memory error must not unwind
 * through libuv's frames, past the bookkeeping that frees the record and
 * lets the loop's close finish. It goes in steps, *step the next: one that
 * fails is skipped and the call made again for the rest, so a
 * connection_lost that ran out of memory still leaves the Server, whose
 * wait_closed counts its connections, and still fails the drain waiter. */
#define CLOSED_STEPS 4
static int closed_protected(lua_State *L) {
  aio_tp *tp = lua_touserdata(L, 1);
  int *step = lua_touserdata(L, 2), box;
  lua_rawgeti(L, LUA_REGISTRYINDEX, tp->ref);
  box = lua_gettop(L);
  if (*step == 0) {
    (*step)++;
    lua_getiuservalue(L, box, UV_PROTO);
    get_aux(L, tp, "lost");
    tp->ops->connection_lost(L, box + 1, box, lua_isnil(L, -1) ? 0 : box + 2);
    lua_settop(L, box);
  }
  if (*step == 1) {
    (*step)++;
    push_server(L, tp);
    aio_transport_detach(L, tp->lp, box, box + 1);
    lua_settop(L, box);
  }
  if (*step == 2) {
    (*step)++;
    settle_flush(L, tp, 1);
  }
  (*step)++;
  for (int i = 1; i <= UV_NUSER; i++) {
    lua_pushnil(L);
    lua_setiuservalue(L, box, i);
  }
  return 0;
}

static void on_closed(uv_handle_t *h) {
  aio_tp *tp = h->data;
  aio_loop *lp = tp->lp;
  tp->handle_closed = 1;
  if (!lp->closed && tp->ref != LUA_NOREF) {
    int entered = aio_loop_enter(lp), step = 0;
    lua_State *L = aio_loop_thread(lp);
    int top = lua_gettop(L);
    while (step < CLOSED_STEPS) {
      lua_pushcfunction(L, closed_protected);
      lua_pushlightuserdata(L, tp);
      lua_pushlightuserdata(L, &step);
      if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        lua_writestringerror("asyncio: error closing a transport: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
      }
    }
    luaL_unref(L, LUA_REGISTRYINDEX, tp->ref);
    tp->ref = LUA_NOREF;
    lua_settop(L, top);
    aio_loop_leave(lp, entered);
  }
  if (!lp->orphan) {
    drop_aux(aio_loop_thread(lp), tp);
    leave_server(aio_loop_thread(lp), tp);
  }
  tp_free_if_done(tp);
  aio_loop_handle_closed(lp); /* may free lp: last */
}

/* Every path that shuts the handle ends here. */
static void start_uv_close(aio_tp *tp) {
  tp->state = AIO_TP_CLOSED;
  tp->reading = 0;
  aio_closable_unlink(&tp->cl);
  tp->lp->nhandles_open++;
  uv_close(&tp->u.h, on_closed);
}

/* Starts uv_close; the protocol hears connection_lost(<error at err_idx>)
 * from the close callback, never from inside the call that closed. */
static void close_now(lua_State *L, aio_tp *tp, int err_idx) {
  if (tp->state == AIO_TP_CLOSED) return;
  if (err_idx) {
    push_aux(L, tp);
    lua_pushvalue(L, err_idx);
    lua_setfield(L, -2, "lost");
    lua_pop(L, 1);
  }
  start_uv_close(tp);
}

/* Loop close: no callback will reach Lua any more. */
static void on_loop_close(aio_closable *c) {
  aio_tp *tp = (aio_tp *)((char *)c - offsetof(aio_tp, cl));
  lua_State *L = aio_loop_thread(tp->lp);
  if (tp->ref != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, tp->ref);
    tp->ref = LUA_NOREF;
  }
  drop_aux(L, tp); /* uv_close stops the queued writes at once */
  leave_server(L, tp);
  start_uv_close(tp);
}

static int push_client(lua_State *L, aio_closable *c, int server_idx) {
  aio_tp *tp = (aio_tp *)((char *)c - offsetof(aio_tp, cl));
  int yes;
  if (tp->ref == LUA_NOREF) return 0;
  push_server(L, tp);
  yes = lua_rawequal(L, -1, server_idx);
  lua_pop(L, 1);
  if (yes) lua_rawgeti(L, LUA_REGISTRYINDEX, tp->ref);
  return yes;
}

static const aio_closable_type tcp_type = {on_loop_close, "transport", "<TCP transport>",
                                           push_client};
static const aio_closable_type pipe_type = {on_loop_close, "transport", "<pipe transport>",
                                            push_client};

void aio_tp_force_close(lua_State *L, aio_tp *tp, int err_idx) {
  if (tp->state == AIO_TP_CLOSED) return;
  tp->conn_lost++;
  close_now(L, tp, err_idx); /* uv_close cancels the queued writes */
}

/* An OS error on the socket: the protocol sees connection_lost(err). As in
 * Python, OS errors are not reported to the exception handler. */
static void fatal(lua_State *L, aio_tp *tp, int uverr, const char *what) {
  aio_push_os_error(L, uverr, what);
  aio_tp_force_close(L, tp, lua_gettop(L));
  lua_pop(L, 1);
}

aio_tp *aio_tp_new(lua_State *L, aio_loop *lp, int kind) {
  aio_tp_box *b = lua_newuserdatauv(L, sizeof *b, UV_NUSER);
  aio_tp *tp;
  b->tag = &aio_tags[AIO_T_TRANSPORT];
  b->tp = NULL;
  aio_setmetatable(L, lp->S, AIO_T_TRANSPORT);
  tp = calloc(1, offsetof(aio_tp, u) + (kind == AIO_TP_TCP ? sizeof tp->u.tcp : sizeof tp->u.pipe));
  if (!tp) {
    luaL_error(L, "not enough memory");
    return NULL;
  }
  b->tp = tp;
  tp->lp = lp;
  tp->kind = (uint8_t)kind;
  tp->ref = tp->aux = tp->server = LUA_NOREF;
  tp->readable = tp->writable = 1;
  tp->u.h.data = tp;
  aio_closable_link(lp, &tp->cl, kind == AIO_TP_TCP ? &tcp_type : &pipe_type);
  aio_debug_note_closable(L, lp, &tp->cl);
  return tp;
}

void aio_tp_discard(aio_tp *tp) {
  aio_closable_unlink(&tp->cl);
  tp->state = AIO_TP_CLOSED;
  tp->handle_closed = 1;
}

static int tp_gc(lua_State *L) {
  aio_tp_box *b = lua_touserdata(L, 1);
  aio_tp *tp = b->tp;
  if (!tp) return 0;
  b->tp = NULL;
  tp->collected = 1;
  drop_aux(L, tp);
  if (tp->state != AIO_TP_CLOSED) { /* never started, so nothing to tell */
    aio_debug_collected_open(L, tp->lp, &tp->cl);
    start_uv_close(tp);
    return 0;
  }
  tp_free_if_done(tp);
  return 0;
}

/* ---- reading ----------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  aio_tp *tp = h->data;
  size_t len;
  char *p;
  (void)suggested;
  if (tp->ops->get_buffer && (p = tp->ops->get_buffer(tp->proto_ud, &len)) != NULL) {
    tp->direct = 1;
    *buf = uv_buf_init(p, (unsigned)(len > UINT_MAX ? UINT_MAX : len));
    return;
  }
  aio_loop_rbuf_take(tp->lp, buf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void start_reading(aio_tp *tp) {
  if (tp->reading || tp->paused || tp->at_eof || !tp->readable || tp->state != AIO_TP_OPEN) return;
  if (uv_read_start(&tp->u.s, on_alloc, on_read) == 0) tp->reading = 1;
}

static void stop_reading(aio_tp *tp) {
  if (!tp->reading) return;
  uv_read_stop(&tp->u.s);
  tp->reading = 0;
}

void aio_tp_close(lua_State *L, aio_tp *tp) {
  if (tp->state != AIO_TP_OPEN) return;
  tp->state = AIO_TP_CLOSING;
  tp->conn_lost++;
  stop_reading(tp);
  if (!inflight(tp)) close_now(L, tp, 0);
}

/* What on_read hands to the protocol, for read_protected. */
typedef struct {
  aio_tp *tp;
  ssize_t nread;
  const uv_buf_t *buf;
  int direct, given; /* given: the loop's buffer went back */
} read_call;

/* on_read's Lua part, under lua_pcall: a memory error in the protocol's C
 * operations must not unwind through libuv's frames, which would leave the
 * loop marked running and its uv loop mid-iteration. */
static int read_protected(lua_State *L) {
  read_call *c = lua_touserdata(L, 1);
  aio_tp *tp = c->tp;
  lua_rawgeti(L, LUA_REGISTRYINDEX, tp->ref); /* 2 */
  lua_getiuservalue(L, 2, UV_PROTO);          /* 3 */
  if (c->nread > 0) {
    tp->ops->data_received(L, 3, 2, c->buf->base, (size_t)c->nread);
    c->given = 1;
    aio_loop_rbuf_give(tp->lp, c->buf);
  } else {
    c->given = 1;
    if (!c->direct) aio_loop_rbuf_give(tp->lp, c->buf);
    if (c->nread == UV_EOF) {
      tp->at_eof = 1;
      stop_reading(tp);
      /* a read-only pipe has nothing left to do (Python's read pipe closes) */
      if (!tp->ops->eof_received(L, 3, 2) || !tp->writable) aio_tp_close(L, tp);
    } else {
      fatal(L, tp, (int)c->nread, "Fatal read error on socket transport");
    }
  }
  return 0;
}

/* Bytes for a Lua protocol outside debug mode, the hot path of a protocol
 * server: its data_received runs straight under on_read's lua_pcall, which
 * then also catches the callback's errors (one lua_pcall a read, not two;
 * 6 % of a 1 KiB echo's instructions). given tells them apart: set once
 * the string is made, so an error after it is the callback's. */
static int data_protected(lua_State *L) {
  read_call *c = lua_touserdata(L, 1);
  aio_tp *tp = c->tp;
  int has_cb;
  lua_rawgeti(L, LUA_REGISTRYINDEX, tp->ref); /* 2 */
  has_cb = lua_getiuservalue(L, 2, UV_DATACB) != LUA_TNIL;
  if (has_cb) {
    lua_getiuservalue(L, 2, UV_PROTO);
    lua_pushlstring(L, c->buf->base, (size_t)c->nread);
  }
  /* the buffer goes back either way: a protocol without data_received
   * drops the bytes */
  c->given = 1;
  aio_loop_rbuf_give(tp->lp, c->buf);
  if (has_cb) lua_call(L, 2, 0);
  return 0;
}

static void data_received_failed(lua_State *L, aio_loop *lp, int proto_idx, int tp_idx);

/* data_failed(tp, error): data_protected's callback raised; the error is
 * what aio_callback_msgh made of it */
static int data_failed(lua_State *L) {
  aio_tp *tp = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, tp->ref); /* 3 */
  lua_getiuservalue(L, 3, UV_PROTO);          /* 4 */
  lua_pushvalue(L, 2);
  data_received_failed(L, tp->lp, 4, 3);
  return 0;
}

/* lost_protected(err, tp): closes tp, its protocol told of err */
static int lost_protected(lua_State *L) {
  aio_tp_force_close(L, lua_touserdata(L, 2), 1);
  return 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  aio_tp *tp = s->data;
  aio_loop *lp = tp->lp;
  lua_State *L;
  int top, entered, fast;
  read_call c = {tp, nread, buf, tp->direct, 0}; /* direct: the protocol's own buffer */
  tp->direct = 0;
  if (nread == 0 || tp->state == AIO_TP_CLOSED || lp->closed) {
    if (!c.direct) aio_loop_rbuf_give(lp, buf);
    return;
  }
  entered = aio_loop_enter(lp);
  L = aio_loop_thread(lp);
  top = lua_gettop(L);
  if (c.direct && nread > 0) {
    /* only a StreamReader lends its buffer (get_buffer), and its
     * buffer_updated allocates nothing: no lua_pcall on the hot path */
    lua_rawgeti(L, LUA_REGISTRYINDEX, tp->ref);
    lua_getiuservalue(L, top + 1, UV_PROTO);
    tp->ops->buffer_updated(L, top + 2, top + 1, (size_t)nread);
    lua_settop(L, top);
    aio_loop_leave(lp, entered);
    return;
  }
  fast = nread > 0 && tp->ops == &aio_lua_proto_ops && !lp->debug;
  if (fast) lua_pushcfunction(L, aio_callback_msgh);
  lua_pushcfunction(L, fast ? data_protected : read_protected);
  lua_pushlightuserdata(L, &c);
  if (lua_pcall(L, 1, 0, fast ? top + 1 : 0) != LUA_OK) {
    int called = fast && c.given;
    if (!c.direct && !c.given) aio_loop_rbuf_give(lp, buf);
    /* the callback's error is reported and closes the connection with it;
     * the bytes lost to a memory error close it too */
    lua_pushcfunction(L, called ? data_failed : lost_protected);
    lua_insert(L, -2);
    lua_pushlightuserdata(L, tp);
    if (called) lua_insert(L, -2);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) aio_tp_abandon(L, tp); /* no error to tell, then */
  }
  lua_settop(L, top);
  aio_loop_leave(lp, entered);
}

/* ---- writing ----------------------------------------------------------- */

static void maybe_pause_protocol(lua_State *L, aio_tp *tp, int tp_idx) {
  if (tp->writing_paused || !tp->wq || tp->wq->wsize <= tp->wq->high) return;
  tp->writing_paused = 1;
  lua_getiuservalue(L, tp_idx, UV_PROTO);
  tp->ops->pause_writing(L, lua_gettop(L), tp_idx);
  lua_pop(L, 1);
}

static void maybe_resume_protocol(lua_State *L, aio_tp *tp, int tp_idx) {
  if (!tp->writing_paused || tp->wq->wsize > tp->wq->low) return;
  tp->writing_paused = 0;
  lua_getiuservalue(L, tp_idx, UV_PROTO);
  tp->ops->resume_writing(L, lua_gettop(L), tp_idx);
  lua_pop(L, 1);
}

static void on_written(uv_write_t *req, int status) {
  aio_wreq *w = (aio_wreq *)req;
  aio_tp *tp = req->handle->data;
  aio_tp_wq *q = tp->wq;
  lua_State *L;
  int top, entered;
  q->inflight--;
  q->wsize -= w->buf.len;
  w->next = q->free_reqs;
  q->free_reqs = w;
  if (tp->state == AIO_TP_CLOSED || tp->lp->closed) return; /* on_closed drops the strings */
  entered = aio_loop_enter(tp->lp);
  L = aio_loop_thread(tp->lp);
  top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, tp->ref);
  if (tp->aux != LUA_NOREF) { /* queue_write made it, and nothing has dropped it */
    push_aux(L, tp);
    lua_pushnil(L);
    lua_rawseti(L, -2, w->slot);
  }
  if (status < 0)
    fatal(L, tp, status, "Fatal write error on socket transport");
  else if (q->inflight == 0 && tp->state == AIO_TP_CLOSING)
    close_now(L, tp, 0);
  else
    maybe_resume_protocol(L, tp, top + 1);
  if (q->wsize <= q->low && tp->state != AIO_TP_CLOSED) settle_flush(L, tp, 0);
  lua_settop(L, top);
  aio_loop_leave(tp->lp, entered);
}

/* The request queue_write is to use. It stays on the free list until the
 * string is stored at its slot: a memory error storing it must not lose it. */
static aio_wreq *next_req(lua_State *L, aio_tp_wq *q) {
  aio_wreq *w = q->free_reqs;
  if (w) return w;
  w = malloc(sizeof *w);
  if (!w) luaL_error(L, "not enough memory");
  w->slot = ++q->nreqs;
  w->next = NULL;
  q->free_reqs = w;
  return w;
}

/* Queues p[0..n) of the string at s_idx behind what is in flight. */
static void queue_write(lua_State *L, aio_tp *tp, int s_idx, const char *p, size_t n) {
  aio_tp_wq *q = aio_tp_wq_of(L, tp);
  aio_wreq *w = next_req(L, q);
  int err;
  push_aux(L, tp);
  lua_pushvalue(L, s_idx);
  lua_rawseti(L, -2, w->slot);
  lua_pop(L, 1);
  q->free_reqs = w->next;
  w->buf = uv_buf_init((char *)p, (unsigned)n);
  err = uv_write(&w->req, &tp->u.s, &w->buf, 1, on_written);
  if (err) {
    w->next = q->free_reqs;
    q->free_reqs = w;
    fatal(L, tp, err, "Fatal write error on socket transport");
    return;
  }
  q->inflight++;
  q->wsize += n;
}

/* Writes p[0..n): to the socket at once, what it refuses queued behind what
 * is in flight, referencing the string at s_idx it lies in, or (s_idx 0) a
 * copy of it. */
static void send_bytes(lua_State *L, aio_tp *tp, int tp_idx, int s_idx, const char *p, size_t n) {
  if (tp->state != AIO_TP_OPEN) {
    if (tp->conn_lost < UINT8_MAX && tp->conn_lost++ == 5) {
      aio_push_hook(L, tp->lp->S, "log");
      lua_pushliteral(L, "warning");
      lua_pushliteral(L, "socket.send() raised exception.");
      if (lua_pcall(L, 2, 0, 0) != LUA_OK) lua_pop(L, 1);
    }
    return;
  }
  if (!inflight(tp)) {
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    int r = uv_try_write(&tp->u.s, &b, 1);
    if (r >= 0 && (size_t)r == n) return;
    if (r >= 0) {
      p += r;
      n -= (size_t)r;
    } else if (r != UV_EAGAIN && r != UV_ENOSYS) {
      fatal(L, tp, r, "Fatal write error on socket transport");
      return;
    }
  }
  if (s_idx == 0) {
    p = lua_pushlstring(L, p, n);
    queue_write(L, tp, lua_gettop(L), p, n);
    lua_pop(L, 1);
  } else {
    queue_write(L, tp, s_idx, p, n);
  }
  maybe_pause_protocol(L, tp, tp_idx);
}

void aio_tp_write_buf(lua_State *L, aio_tp *tp, int tp_idx, const char *p, size_t n) {
  if (n) send_bytes(L, tp, lua_absindex(L, tp_idx), 0, p, n);
}

static void tp_write(lua_State *L, aio_tp *tp, int tp_idx, int s_idx) {
  size_t n;
  const char *p = lua_tolstring(L, s_idx, &n);
  if (tp->eof) aio_raise(L, "RuntimeError", "Cannot call write() after write_eof()");
  if (!tp->writable) aio_raise(L, "RuntimeError", "transport is not writable");
  if (n) send_bytes(L, tp, tp_idx, s_idx, p, n);
}

/* For callers that hold any transport (writer.c): ours directly, another
 * kind through its methods. */
void aio_transport_write(lua_State *L, int tp_idx, int s_idx) {
  aio_tp_box *b = aio_test_tagged(L, tp_idx, AIO_T_TRANSPORT);
  if (b && b->tp && !b->tp->wrapped) {
    luaL_checktype(L, s_idx, LUA_TSTRING);
    tp_write(L, b->tp, tp_idx, s_idx);
    return;
  }
  if (aio_test_tagged(L, tp_idx, AIO_T_TLS)) {
    luaL_checktype(L, s_idx, LUA_TSTRING);
    aio_tls_write(L, tp_idx, s_idx);
    return;
  }
  tp_idx = lua_absindex(L, tp_idx);
  s_idx = lua_absindex(L, s_idx);
  lua_getfield(L, tp_idx, "write");
  lua_pushvalue(L, tp_idx);
  lua_pushvalue(L, s_idx);
  lua_call(L, 2, 0);
}

int aio_transport_is_closing(lua_State *L, int tp_idx) {
  aio_tp_box *b = aio_test_tagged(L, tp_idx, AIO_T_TRANSPORT);
  int closing;
  if (b && b->tp) return b->tp->state != AIO_TP_OPEN;
  if (aio_test_tagged(L, tp_idx, AIO_T_TLS)) return aio_tls_is_closing(L, tp_idx);
  tp_idx = lua_absindex(L, tp_idx);
  lua_getfield(L, tp_idx, "is_closing");
  lua_pushvalue(L, tp_idx);
  lua_call(L, 1, 1);
  closing = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return closing;
}

/***
Buffers `s` for sending; never blocks.
@function Transport:write
@python WriteTransport.write
@tparam string s
*/
static int l_write(lua_State *L) {
  aio_tp *tp = check_tp(L, 1);
  luaL_checktype(L, 2, LUA_TSTRING);
  tp_write(L, tp, 1, 2);
  return 0;
}

/* writelines(list) is one write of the joined list, as Python does: pushes
 * the join of the list of strings at idx. */
void aio_push_joined(lua_State *L, int idx) {
  lua_Integer i, n;
  luaL_Buffer b;
  luaL_checktype(L, idx, LUA_TTABLE);
  n = luaL_len(L, idx);
  luaL_buffinit(L, &b);
  for (i = 1; i <= n; i++) {
    if (lua_geti(L, idx, i) != LUA_TSTRING) luaL_argerror(L, idx, "list of strings expected");
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
}

/***
Writes every string of `list`.
@function Transport:writelines
@python WriteTransport.writelines
@tparam {string,...} list
*/
static int l_writelines(lua_State *L) {
  aio_tp *tp = check_tp(L, 1);
  aio_push_joined(L, 2);
  tp_write(L, tp, 1, lua_gettop(L));
  return 0;
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status; /* a peer already gone shows up on the next read or write */
  free(req);
}

/***
Closes the write side after the buffered data (TLS: sends `close_notify`
and keeps reading).
@function Transport:write_eof
@python WriteTransport.write_eof
*/
static int l_write_eof(lua_State *L) {
  aio_tp *tp = check_tp(L, 1);
  uv_shutdown_t *req = NULL;
  if (tp->state != AIO_TP_OPEN || tp->eof) return 0;
  /* a request of its own: few transports ever half-close */
  if (tp->readable && !(req = malloc(sizeof *req))) return luaL_error(L, "not enough memory");
  tp->eof = 1;
  if (!req) { /* a write-only pipe has no half-close: it closes */
    aio_tp_close(L, tp);
    return 0;
  }
  if (uv_shutdown(req, &tp->u.s, on_shutdown) != 0) {
    free(req);
    if (!inflight(tp)) aio_tp_close(L, tp);
  }
  return 0;
}

/***
Whether `write_eof` is supported (not for a read pipe).
@function Transport:can_write_eof
@python WriteTransport.can_write_eof
@treturn boolean
*/
static int l_can_write_eof(lua_State *L) {
  lua_pushboolean(L, check_tp(L, 1)->writable);
  return 1;
}

/* ---- the rest of the Transport API -------------------------------------- */

void aio_tp_abandon(lua_State *L, aio_tp *tp) {
  close_now(L, tp, 0);
}

/***
Closes after the buffered data is sent; `connection_lost(nil)` follows.
@function Transport:close
@python BaseTransport.close
*/
static int l_close(lua_State *L) {
  aio_tp *tp = check_tp(L, 1);
  if (tp->ref == LUA_NOREF) /* not started */
    aio_tp_abandon(L, tp);
  else
    aio_tp_close(L, tp);
  return 0;
}

/* ---- connecting ---------------------------------------------------------- */

void aio_connect_hold(lua_State *L, aio_connect *c, int fut_idx) {
  fut_idx = lua_absindex(L, fut_idx);
  c->tp_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, fut_idx);
  c->fut_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Resolves the connect future with the Transport, or fails it; a Transport
 * nobody waits for any more (the future was cancelled) is closed. */
/* connect_protected(future, transport, status): aio_tp_on_connect's Lua
 * part, under lua_pcall: the error of a failed connect is made from a libuv
 * callback, and a memory error must not unwind through libuv's frames. */
static int connect_protected(lua_State *L) {
  aio_future *f = lua_touserdata(L, 1);
  int status = (int)lua_tointeger(L, 3);
  if (status == 0 && f->state == AIO_PENDING) {
    aio_future_set_results(L, 1, 2, 1);
  } else {
    aio_tp_abandon(L, ((aio_tp_box *)lua_touserdata(L, 2))->tp);
    if (status != 0 && f->state == AIO_PENDING) {
      aio_push_os_error(L, status, "Connect call failed");
      aio_future_set_exc(L, 1, -1);
    }
  }
  return 0;
}

/* connect_failed(err, future, transport): connect_protected ran out of
 * memory; the connecting task hears that error. */
static int connect_failed(lua_State *L) {
  aio_tp_abandon(L, ((aio_tp_box *)lua_touserdata(L, 3))->tp);
  if (((aio_future *)lua_touserdata(L, 2))->state == AIO_PENDING) aio_future_set_exc(L, 2, 1);
  return 0;
}

void aio_tp_on_connect(uv_connect_t *req, int status) {
  aio_connect *c = (aio_connect *)req;
  aio_loop *lp = c->lp;
  lua_State *L;
  int top;
  if (lp->orphan) { /* the Lua state is gone */
    free(c);
    return;
  }
  L = aio_loop_thread(lp);
  top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->fut_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->tp_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, c->fut_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, c->tp_ref);
  free(c);
  if (!lp->closed) {
    lua_pushcfunction(L, connect_protected);
    lua_pushvalue(L, top + 1);
    lua_pushvalue(L, top + 2);
    lua_pushinteger(L, status);
    if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
      lua_pushcfunction(L, connect_failed);
      lua_insert(L, -2);
      lua_pushvalue(L, top + 1);
      lua_pushvalue(L, top + 2);
      if (lua_pcall(L, 3, 0, 0) != LUA_OK)
        lua_writestringerror("asyncio: error completing a connect: %s\n", lua_tostring(L, -1));
    }
  }
  lua_settop(L, top);
}

/***
Closes at once, dropping the buffered data.
@function Transport:abort
@python WriteTransport.abort
*/
static int l_abort(lua_State *L) {
  aio_tp_force_close(L, check_tp(L, 1), 0);
  return 0;
}

/* _force_close(err): what a failing protocol callback leads to */
static int l_force_close(lua_State *L) {
  lua_settop(L, 2);
  aio_tp_force_close(L, check_tp(L, 1), lua_isnil(L, 2) ? 0 : 2);
  return 0;
}

/***
Whether it is closed or closing.
@function Transport:is_closing
@python BaseTransport.is_closing
@treturn boolean
*/
static int l_is_closing(lua_State *L) {
  lua_pushboolean(L, check_tp(L, 1)->state != AIO_TP_OPEN);
  return 1;
}

/***
Stops calling `data_received` until `resume_reading`.
@function Transport:pause_reading
@python ReadTransport.pause_reading
*/
static int l_pause_reading(lua_State *L) {
  aio_tp_set_paused(check_tp(L, 1), 1);
  return 0;
}

/***
Resumes reading.
@function Transport:resume_reading
@python ReadTransport.resume_reading
*/
static int l_resume_reading(lua_State *L) {
  aio_tp_set_paused(check_tp(L, 1), 0);
  return 0;
}

/***
Whether it is reading.
@function Transport:is_reading
@python ReadTransport.is_reading
@treturn boolean
*/
static int l_is_reading(lua_State *L) {
  aio_tp *tp = check_tp(L, 1);
  lua_pushboolean(L, tp->state == AIO_TP_OPEN && !tp->paused && tp->readable);
  return 1;
}

/* set_write_buffer_limits([high [, low]]) at 2 and 3, Python's defaults */
void aio_check_write_limits(lua_State *L, size_t *hp, size_t *lp) {
  lua_Integer high, low;
  if (lua_isnoneornil(L, 2)) {
    low = luaL_optinteger(L, 3, -1);
    high = low < 0 ? HIGH_WATER : 4 * low;
  } else {
    high = luaL_checkinteger(L, 2);
  }
  low = lua_isnoneornil(L, 3) ? high / 4 : luaL_checkinteger(L, 3);
  if (!(high >= low && low >= 0))
    aio_raise(L, "ValueError", "high (%I) must be >= low (%I) must be >= 0", high, low);
  *hp = (size_t)high;
  *lp = (size_t)low;
}

/***
Sets the flow-control marks: `pause_writing` above `high`,
`resume_writing` at or below `low`.
@function Transport:set_write_buffer_limits
@python WriteTransport.set_write_buffer_limits
@tparam[opt] integer high default: 4 * low, or 64 KiB
@tparam[opt] integer low default: high / 4
@raise ValueError unless high >= low >= 0
*/
static int l_set_write_buffer_limits(lua_State *L) {
  aio_tp *tp = check_tp(L, 1);
  size_t high, low;
  aio_check_write_limits(L, &high, &low);
  aio_tp_wq_of(L, tp)->high = high;
  tp->wq->low = low;
  if (tp->ref != LUA_NOREF) maybe_pause_protocol(L, tp, 1);
  return 0;
}

/***
The flow-control marks.
@function Transport:get_write_buffer_limits
@python WriteTransport.get_write_buffer_limits
@treturn integer low
@treturn integer high
*/
static int l_get_write_buffer_limits(lua_State *L) {
  aio_tp *tp = check_tp(L, 1);
  lua_pushinteger(L, (lua_Integer)low_water(tp));
  lua_pushinteger(L, (lua_Integer)(tp->wq ? tp->wq->high : HIGH_WATER));
  return 2;
}

/***
Bytes buffered, not yet sent.
@function Transport:get_write_buffer_size
@python WriteTransport.get_write_buffer_size
@treturn integer
*/
static int l_get_write_buffer_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)aio_tp_wsize(check_tp(L, 1)));
  return 1;
}

/* _drain_waiter(): nil while the write buffer is at or below its low-water
 * mark, else a Future resolved once it is (sendfile's flow control, which
 * must not depend on the protocol's pause_writing). */
int aio_tp_drain_waiter(lua_State *L, aio_tp *tp) {
  if (tp->state == AIO_TP_CLOSED) return aio_raise(L, "ConnectionResetError", "Connection lost");
  if (aio_tp_wsize(tp) <= low_water(tp)) return 0;
  if (get_aux(L, tp, "flush") == LUA_TUSERDATA) return 1;
  lua_pop(L, 1);
  push_aux(L, tp);
  aio_future_new(L, tp->lp);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "flush");
  lua_remove(L, -2);
  return 1;
}

static int l_drain_waiter(lua_State *L) {
  return aio_tp_drain_waiter(L, check_tp(L, 1));
}

int aio_tp_push_extra(lua_State *L, aio_tp *tp, const char *name) {
  struct sockaddr_storage ss;
  int len = sizeof ss, err = UV_EINVAL;
  uv_os_fd_t fd;
  if (tp->state == AIO_TP_CLOSED) return 0;
  if (strcmp(name, "socket") == 0 || strcmp(name, "pipe") == 0) {
    if (uv_fileno(&tp->u.h, &fd) != 0) return 0;
    lua_pushinteger(L, fd);
    return 1;
  }
  if (strcmp(name, "peername") != 0 && strcmp(name, "sockname") != 0) return 0;
  if (tp->kind == AIO_TP_TCP) {
    err = name[0] == 'p' ? uv_tcp_getpeername(&tp->u.tcp, (struct sockaddr *)&ss, &len)
                         : uv_tcp_getsockname(&tp->u.tcp, (struct sockaddr *)&ss, &len);
    if (err == 0) aio_push_sockaddr(L, (struct sockaddr *)&ss);
  } else {
    char path[1024];
    size_t n = sizeof path;
    err = name[0] == 'p' ? uv_pipe_getpeername(&tp->u.pipe, path, &n)
                         : uv_pipe_getsockname(&tp->u.pipe, path, &n);
    if (err == 0) lua_pushlstring(L, path, n);
  }
  return err == 0;
}

/***
Transport information: `"peername"`, `"sockname"`, `"socket"`, and on TLS
`"ssl_object"`, `"peercert"`, `"cipher"`, `"sslcontext"`.
@function Transport:get_extra_info
@python BaseTransport.get_extra_info
@tparam string name
@param[opt] default returned when there is none
*/
static int l_get_extra_info(lua_State *L) {
  aio_tp *tp = check_tp(L, 1);
  const char *name = luaL_checkstring(L, 2);
  lua_settop(L, 3);
  aio_tp_push_extra(L, tp, name);
  return 1;
}

void aio_transport_set_protocol(lua_State *L, int tp_idx, int idx, const aio_proto_ops *ops,
                                const aio_proto_ops **ops_slot, void **ud_slot) {
  *ops_slot = ops;
  *ud_slot = ops->get_buffer ? lua_touserdata(L, idx) : NULL;
  lua_pushvalue(L, idx);
  lua_setiuservalue(L, tp_idx, AIO_UV_PROTO);
  if (ops == &aio_lua_proto_ops)
    lua_getfield(L, idx, "data_received");
  else
    lua_pushnil(L);
  lua_setiuservalue(L, tp_idx, AIO_UV_DATACB);
}

void aio_transport_detach(lua_State *L, aio_loop *lp, int tp_idx, int server_idx) {
  int top = lua_gettop(L);
  if (lua_istable(L, server_idx) && lua_getfield(L, server_idx, "_detach")) {
    lua_pushvalue(L, server_idx);
    lua_pushvalue(L, tp_idx);
    aio_call_reporting(L, lp, top + 1, "Server._detach", "transport", tp_idx);
  }
  lua_settop(L, top);
}

int aio_transport_push_client(lua_State *L, int ref, int uv_server, int server_idx) {
  if (ref == LUA_NOREF) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_getiuservalue(L, -1, uv_server);
  if (lua_rawequal(L, -1, server_idx)) {
    lua_pop(L, 1);
    return 1;
  }
  lua_pop(L, 2);
  return 0;
}

/* server_clients(loop, server) -> list of the Server's open connections,
 * found among the loop's closables */
static int l_server_clients(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  aio_closable *c;
  int n = 0;
  lua_settop(L, 2);
  lua_newtable(L);
  for (c = lp->closables.next; c != &lp->closables; c = c->next)
    if (c->type->push_client && c->type->push_client(L, c, 2)) lua_rawseti(L, 3, ++n);
  return 1;
}

static void set_protocol(lua_State *L, aio_tp *tp, int tp_idx, const aio_proto_ops *ops, int idx) {
  aio_transport_set_protocol(L, tp_idx, idx, ops, &tp->ops, &tp->proto_ud);
}

const aio_proto_ops *aio_proto_ops_for(lua_State *L, int idx) {
  if (aio_test_tagged(L, idx, AIO_T_READER)) return &aio_reader_ops;
  if (lua_istable(L, idx)) return &aio_lua_proto_ops;
  luaL_typeerror(L, idx, "protocol table or StreamReader");
  return NULL;
}

void aio_tp_wrap(lua_State *L, aio_tp *tp, int tp_idx, const aio_proto_ops *ops, int proto_idx) {
  tp_idx = lua_absindex(L, tp_idx);
  set_protocol(L, tp, tp_idx, ops, lua_absindex(L, proto_idx));
  tp->wrapped = 1;
  if (tp->ref == LUA_NOREF) {
    lua_pushvalue(L, tp_idx);
    tp->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  tp->paused = 0;
  start_reading(tp);
}

void aio_tp_set_paused(aio_tp *tp, int paused) {
  if (tp->state != AIO_TP_OPEN || tp->paused == paused) return;
  tp->paused = (uint8_t)paused;
  if (paused)
    stop_reading(tp);
  else if (tp->ref != LUA_NOREF)
    start_reading(tp);
}

/***
The protocol.
@function Transport:get_protocol
@python BaseTransport.get_protocol
@treturn table
*/
static int l_get_protocol(lua_State *L) {
  check_tp(L, 1);
  lua_getiuservalue(L, 1, UV_PROTO);
  return 1;
}

/***
Switches the protocol.
@function Transport:set_protocol
@python BaseTransport.set_protocol
@tparam table protocol
*/
static int l_set_protocol(lua_State *L) {
  aio_tp *tp = check_tp(L, 1);
  const aio_proto_ops *ops = aio_proto_ops_for(L, 2);
  if (tp->state == AIO_TP_CLOSED) return 0;
  set_protocol(L, tp, 1, ops, 2);
  return 0;
}

/* _start(protocol [, server]): connection_made, then reading. Until then
 * the transport is only a Lua object, which the GC may close. */
static int l_start(lua_State *L) {
  aio_tp *tp = check_tp(L, 1);
  const aio_proto_ops *ops = aio_proto_ops_for(L, 2);
  lua_settop(L, 3);
  if (tp->ref != LUA_NOREF) return aio_raise(L, "RuntimeError", "transport already started");
  if (tp->state != AIO_TP_OPEN) return aio_raise(L, "RuntimeError", "transport is closed");
  set_protocol(L, tp, 1, ops, 2);
  if (!lua_isnil(L, 3)) join_server(L, tp, 3);
  lua_pushvalue(L, 1);
  tp->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  ops->connection_made(L, 2, 1);
  start_reading(tp);
  return 0;
}

static int l_tostring(lua_State *L) {
  aio_tp *tp = check_tp(L, 1);
  static const char *const states[] = {"open", "closing", "closed"};
  lua_pushfstring(L, "<%s transport %s %p>", tp->kind == AIO_TP_TCP ? "TCP" : "pipe",
                  states[tp->state], (void *)tp);
  return 1;
}

/* ---- a Lua table as protocol ---------------------------------------------- */
/* Methods are looked up inside the protected call: a protocol's __index may
 * raise, and nothing may unwind through libuv's stack. */

static int call_method(lua_State *L) { /* proto, name, args... -> first result */
  int n = lua_gettop(L);
  if (lua_getfield(L, 1, lua_tostring(L, 2)) == LUA_TNIL) return 0;
  lua_copy(L, 1, 2);
  lua_replace(L, 1);
  lua_call(L, n - 1, 1);
  return 1;
}

/* The loop of the transport at idx, ours or a TLS one above it: the ops of
 * a Lua protocol serve both. */
static aio_loop *transport_loop(lua_State *L, int idx) {
  const aio_tp_box *b = aio_test_tagged(L, idx, AIO_T_TRANSPORT);
  return b ? b->tp->lp : ((aio_transport_head *)lua_touserdata(L, idx))->lp;
}

/* Calls proto:<name>(args) with nargs values on top; 0 ok (its result on
 * top), 1 when it raised (the error on top, already reported). */
static int proto_call(lua_State *L, int tp_idx, int proto_idx, const char *name, int nargs,
                      const char *msg) {
  int base = lua_gettop(L) - nargs + 1;
  lua_pushcfunction(L, call_method);
  lua_pushvalue(L, proto_idx);
  lua_pushstring(L, name);
  lua_rotate(L, base, 3);
  return aio_pcall_reporting(L, transport_loop(L, tp_idx), base, 1, name, msg, "protocol",
                             proto_idx);
}

/* After a failed data_received or eof_received, Python's _fatal_error. */
static void fail_transport(lua_State *L, int tp_idx) {
  int err = lua_gettop(L);
  if (lua_getfield(L, tp_idx, "_force_close") == LUA_TFUNCTION) {
    lua_pushvalue(L, tp_idx);
    lua_pushvalue(L, err);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) lua_pop(L, 1);
  } else {
    lua_pop(L, 1);
  }
}

static void lua_made(lua_State *L, int proto_idx, int tp_idx) {
  lua_pushvalue(L, tp_idx);
  proto_call(L, tp_idx, proto_idx, "connection_made", 1,
             "Exception in protocol.connection_made() call");
  lua_pop(L, 1);
}

/* Python's _fatal_error for a data_received that raised: the error on top,
 * as aio_callback_msgh left it, is reported and closes the transport. */
static void data_received_failed(lua_State *L, aio_loop *lp, int proto_idx, int tp_idx) {
  aio_report_callback_error(L, lp, -1, "Fatal error: protocol.data_received() call failed.",
                            "protocol", proto_idx);
  fail_transport(L, tp_idx);
}

/* The cached data_received, no lookup, no stack shuffling: the path of
 * debug mode and of a TLS transport's application protocol. */
static void lua_data(lua_State *L, int proto_idx, int tp_idx, const char *p, size_t n) {
  int base = lua_gettop(L) + 1;
  aio_loop *lp = transport_loop(L, tp_idx);
  int debug = lp->debug, status;
  aio_debug_frame fr;
  lua_pushcfunction(L, aio_callback_msgh);
  if (lua_getiuservalue(L, tp_idx, UV_DATACB) == LUA_TNIL) {
    lua_settop(L, base - 1);
    return;
  }
  if (debug) aio_debug_enter(L, lp, L, NULL, base + 1, aio_clock_ns(lp), &fr);
  lua_pushvalue(L, proto_idx);
  lua_pushlstring(L, p, n);
  status = lua_pcall(L, 2, 0, base);
  if (debug) aio_debug_leave(L, lp, &fr, 0, "protocol.data_received()", NULL, 0);
  if (status != LUA_OK) data_received_failed(L, lp, proto_idx, tp_idx);
  lua_settop(L, base - 1);
}

static int lua_eof(lua_State *L, int proto_idx, int tp_idx) {
  int keep = 1;
  if (proto_call(L, tp_idx, proto_idx, "eof_received", 0,
                 "Fatal error: protocol.eof_received() call failed."))
    fail_transport(L, tp_idx);
  else
    keep = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return keep;
}

static void lua_lost(lua_State *L, int proto_idx, int tp_idx, int err_idx) {
  aio_push_opt(L, err_idx);
  proto_call(L, tp_idx, proto_idx, "connection_lost", 1,
             "Exception in protocol.connection_lost() call");
  lua_pop(L, 1);
}

static void lua_pause_writing(lua_State *L, int proto_idx, int tp_idx) {
  proto_call(L, tp_idx, proto_idx, "pause_writing", 0, "protocol.pause_writing() failed");
  lua_pop(L, 1);
}

static void lua_resume_writing(lua_State *L, int proto_idx, int tp_idx) {
  proto_call(L, tp_idx, proto_idx, "resume_writing", 0, "protocol.resume_writing() failed");
  lua_pop(L, 1);
}

const aio_proto_ops aio_lua_proto_ops = {lua_made,          lua_data,           lua_eof, lua_lost,
                                         lua_pause_writing, lua_resume_writing, NULL,    NULL};

void aio_stream_open(lua_State *L, aio_state *S) {
  static const luaL_Reg methods[] = {{"write", l_write},
                                     {"writelines", l_writelines},
                                     {"write_eof", l_write_eof},
                                     {"can_write_eof", l_can_write_eof},
                                     {"close", l_close},
                                     {"abort", l_abort},
                                     {"_force_close", l_force_close},
                                     {"is_closing", l_is_closing},
                                     {"pause_reading", l_pause_reading},
                                     {"resume_reading", l_resume_reading},
                                     {"is_reading", l_is_reading},
                                     {"set_write_buffer_limits", l_set_write_buffer_limits},
                                     {"get_write_buffer_limits", l_get_write_buffer_limits},
                                     {"get_write_buffer_size", l_get_write_buffer_size},
                                     {"get_extra_info", l_get_extra_info},
                                     {"get_protocol", l_get_protocol},
                                     {"set_protocol", l_set_protocol},
                                     {"_start", l_start},
                                     {"_drain_waiter", l_drain_waiter},
                                     {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", tp_gc}, {"__tostring", l_tostring}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {
      {"server_clients", l_server_clients}, {"server_conns", l_server_conns}, {NULL, NULL}};
  aio_newclass(L, S, AIO_T_TRANSPORT, "asyncio.Transport", methods, meta);
  lua_setfield(L, -2, "Transport");
  aio_setfuncs(L, S, funcs);
}
