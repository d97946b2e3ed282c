/* StreamReader: the bytes of a stream, read by one task at a time; also the
 * protocol of its transport (aio_reader_ops), with the flow control of
 * Python's StreamReaderProtocol. A waiting read parks its task (no Future). */

/***
StreamReader (in C): the bytes of a stream, read by one task at a time.
@module streams
*/

#include <limits.h>
#include <string.h>

#include "core/buffer.h"
#include "internal.h"

#define READER_MT "asyncio.StreamReader"
#define DEFAULT_LIMIT 65536

/* Uservalues: the transport (streams mode) and UV_AUX, a table made on
 * first need for what a connection that goes well never has: the
 * exception, the list of drain futures ("drains") and the future
 * StreamWriter.wait_closed awaits ("closed"). The parked task needs no
 * reference: a pending task is kept by its loop, and once the loop is
 * closed r->waiter is never followed. Nor does the loop: an open one is
 * held by its own registry ref, and its record, all r->loop is, lasts as
 * long as the Lua state. */
enum { UV_TRANSPORT = 1, UV_AUX, UV_N = UV_AUX };

typedef struct reader {
  const char *tag; /* first: aio_test_tagged */
  aio_buf buf;
  aio_loop *loop;
  size_t limit;
  aio_task *waiter;    /* parked on this reader, until woken */
  aio_task *failed;    /* a waiter woken by set_exception: it raises the exception */
  uint32_t room;       /* what the transport is offered to read into (op_get_buffer), <= ROOM_MAX */
  uint8_t short_reads; /* reads in a row that used a quarter of the room or less */
  uint8_t eof;
  uint8_t has_exc;
  uint8_t has_transport;
  uint8_t paused;       /* we paused the transport's reading */
  uint8_t to_eof;       /* the waiter reads everything up to EOF: pausing cannot help */
  uint8_t write_paused; /* pause_writing came, resume_writing not yet */
  uint8_t lost;         /* connection_lost came */
  uint8_t gone;         /* finalized: a late transport event must not touch the buffer */
  uint8_t server_side;  /* a Server's connection: start_tls' default (Python asks its protocol) */
} reader;

/* What a parked read resumes with (its continuation context). */
enum { OP_READ, OP_READEXACTLY, OP_READUNTIL, OP_READLINE, OP_LINES };

static reader *check_reader(lua_State *L, int idx) {
  return aio_check_tagged(L, idx, AIO_T_READER, "StreamReader");
}

/* Sets UV_AUX's field `name` to the value on top, which it pops. */
static void set_aux(lua_State *L, int ridx, const char *name) {
  aio_push_aux(L, ridx, UV_AUX);
  lua_insert(L, -2);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

/* ---- the transport ---------------------------------------------------- */

static int transport_method(lua_State *L) {
  lua_getfield(L, 1, lua_tostring(L, 2));
  lua_pushvalue(L, 1);
  lua_call(L, 1, 0);
  return 0;
}

/* transport:<name>() without raising: a failure goes to the loop's exception
 * handler. Returns 1 when the call succeeded. */
static int call_transport(lua_State *L, reader *r, int ridx, const char *name) {
  int ok;
  ridx = lua_absindex(L, ridx);
  lua_pushcfunction(L, transport_method);
  lua_getiuservalue(L, ridx, UV_TRANSPORT);
  lua_pushstring(L, name);
  ok = lua_pcall(L, 2, 0, 0) == LUA_OK;
  if (!ok) {
    lua_createtable(L, 0, 3);
    lua_pushfstring(L, "Exception in StreamReader calling transport.%s()", name);
    lua_setfield(L, -2, "message");
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "exception");
    lua_getiuservalue(L, ridx, UV_TRANSPORT);
    lua_setfield(L, -2, "transport");
    aio_loop_call_exception_handler(L, r->loop, -1);
    lua_pop(L, 2);
  }
  return ok;
}

static void forget_transport(lua_State *L, reader *r, int ridx) {
  r->has_transport = 0;
  r->paused = 0;
  lua_pushnil(L);
  lua_setiuservalue(L, ridx, UV_TRANSPORT);
}

static void resume_transport(lua_State *L, reader *r, int ridx) {
  r->paused = 0;
  call_transport(L, r, ridx, "resume_reading");
}

/* Python's _maybe_resume_transport: after a read took bytes. */
static void maybe_resume(lua_State *L, reader *r, int ridx) {
  if (r->paused && r->buf.len <= r->limit) resume_transport(L, r, ridx);
}

/* ---- waking the reader ------------------------------------------------- */

static void wake(reader *r, int failed) {
  aio_task *t = r->waiter;
  if (!t) return;
  if (!r->loop->closed && aio_task_wake(t, r) && failed) r->failed = t;
  r->waiter = NULL;
}

/* No more bytes will come: the room lent for a read that found none goes. */
static void release_empty(reader *r) {
  if (r->buf.len == 0) aio_buf_free(&r->buf);
}

static void feed_eof(reader *r) {
  r->eof = 1;
  release_empty(r);
  wake(r, 0);
}

/* ridx must be absolute, as in every function below taking one. */
static void set_exception(lua_State *L, reader *r, int ridx, int err_idx) {
  lua_pushvalue(L, err_idx);
  set_aux(L, ridx, "exception");
  r->has_exc = 1;
  wake(r, 1);
}

/* New bytes are in the buffer: pause a transport that outruns the reader,
 * wake the waiter. */
static void data_added(lua_State *L, reader *r, int ridx) {
  if (r->has_transport && !r->paused && !r->to_eof && r->buf.len > r->limit &&
      r->buf.len - r->limit > r->limit) {
    /* a transport that cannot pause is forgotten, as Python does */
    if (call_transport(L, r, ridx, "pause_reading"))
      r->paused = 1;
    else
      forget_transport(L, r, ridx);
  }
  wake(r, 0);
}

/* Returns 0, or -1 when the bytes could not be stored. */
static int feed_data(lua_State *L, reader *r, int ridx, const char *p, size_t n) {
  if (n == 0 || r->eof || r->gone) return 0; /* Python asserts on data after EOF */
  if (aio_buf_append(&r->buf, p, n) != 0) return -1;
  data_added(L, r, ridx);
  return 0;
}

/* ---- the protocol side --------------------------------------------------- */

static void op_connection_made(lua_State *L, int proto_idx, int tp_idx) {
  reader *r = lua_touserdata(L, proto_idx);
  proto_idx = lua_absindex(L, proto_idx);
  lua_pushvalue(L, tp_idx);
  lua_setiuservalue(L, proto_idx, UV_TRANSPORT);
  r->has_transport = 1;
}

static void op_data_received(lua_State *L, int proto_idx, int tp_idx, const char *p, size_t n) {
  reader *r = lua_touserdata(L, proto_idx);
  (void)tp_idx;
  proto_idx = lua_absindex(L, proto_idx);
  if (feed_data(L, r, proto_idx, p, n) != 0) {
    lua_pushliteral(L, "out of memory buffering stream data");
    aio_push_error(L, "RuntimeError", -1);
    set_exception(L, r, proto_idx, -1);
    lua_pop(L, 2);
  }
}

/* The transport reads straight into the buffer, which saves copying every
 * chunk out of the loop's receive buffer. The room offered follows the
 * reads: it doubles after a read that filled it and halves after
 * SHRINK_AFTER reads in a row that used a quarter of it, so a connection of
 * small messages asks for little, and a 64 KiB message fits in one read
 * instead of filling the room and costing a read that finds EAGAIN. One
 * short read is no sign: a 64 KiB write on loopback arrives as 65,483 bytes
 * and then 53, and halving on the 53 would split the next message and, as
 * the buffer is freed whenever it empties, change the size of the buffers
 * the reader takes, which the cache keeps by exact size. The ceiling keeps
 * a buffer below glibc's mmap threshold (128 KiB): one the readers' cache
 * cannot keep is a heap block for glibc to reuse, not a fresh mapping that
 * faults in page by page. */
#define ROOM_MIN 4096
#define ROOM_MAX (120 * 1024)
#define SHRINK_AFTER 4

static char *op_get_buffer(void *proto, size_t *len) {
  reader *r = proto;
  size_t want = r->room, tail = aio_buf_room(&r->buf);
  if (r->eof || r->gone) return NULL;
  /* bytes still wait for the task: the rest of a message usually fits after
   * them, and growing the buffer for a whole room would make a block of
   * another size (a 120 KiB buffer holding 65,483 bytes, grown for the 53
   * that follow, becomes a 240 KiB one, which glibc maps and unmaps) */
  if (r->buf.len && tail >= ROOM_MIN)
    want = tail;
  else if (!r->buf.len) /* an empty buffer aligns its start: r->room is what it allocates */
    want -= AIO_BUF_ALIGN - 1;
  return aio_buf_reserve(&r->buf, want, len);
}

static void op_buffer_updated(lua_State *L, int proto_idx, int tp_idx, size_t n) {
  reader *r = lua_touserdata(L, proto_idx);
  (void)tp_idx;
  aio_buf_commit(&r->buf, n);
  if (n > r->room / 4 || r->room == ROOM_MIN)
    r->short_reads = 0;
  else if (++r->short_reads == SHRINK_AFTER)
    r->room /= 2, r->short_reads = 0;
  if (aio_buf_room(&r->buf) == 0 && r->room < ROOM_MAX) /* the read filled all it was offered */
    r->room = r->room * 2 < ROOM_MAX ? r->room * 2 : ROOM_MAX;
  data_added(L, r, lua_absindex(L, proto_idx));
}

static int op_eof_received(lua_State *L, int proto_idx, int tp_idx) {
  (void)tp_idx;
  feed_eof(lua_touserdata(L, proto_idx));
  return 1;
}

/* Settles every pending drain future, then empties the list: with no value
 * (err_idx 0) or the error at err_idx. */
static void settle_drains(lua_State *L, int ridx, int err_idx) {
  int n, i;
  if (aio_get_aux(L, ridx, UV_AUX, "drains") != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  n = (int)lua_rawlen(L, -1);
  for (i = 1; i <= n; i++) {
    aio_future *f;
    lua_rawgeti(L, -1, i);
    f = lua_touserdata(L, -1);
    if (f->state == AIO_PENDING) {
      if (err_idx)
        aio_future_set_exc(L, -1, err_idx);
      else
        aio_future_set_results(L, -1, -1, 0);
    }
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_rawseti(L, -2, i);
  }
  lua_pop(L, 1);
}

/* 1 when a drain waits (connection_lost fails it). */
static int has_drains(lua_State *L, int ridx) {
  int some = aio_get_aux(L, ridx, UV_AUX, "drains") == LUA_TTABLE && lua_rawlen(L, -1) > 0;
  lua_pop(L, 1);
  return some;
}

static void op_connection_lost(lua_State *L, int proto_idx, int tp_idx, int err_idx) {
  reader *r = lua_touserdata(L, proto_idx);
  (void)tp_idx;
  proto_idx = lua_absindex(L, proto_idx);
  r->lost = 1;
  if (err_idx == 0) {
    feed_eof(r);
  } else {
    release_empty(r);
    err_idx = lua_absindex(L, err_idx);
    set_exception(L, r, proto_idx, err_idx);
  }
  forget_transport(L, r, proto_idx);
  /* wait_closed's future before the drains, as Python's protocol does: a
   * drain's error is made below and can run out of memory */
  if (aio_get_aux(L, proto_idx, UV_AUX, "closed") == LUA_TUSERDATA &&
      ((aio_future *)lua_touserdata(L, -1))->state == AIO_PENDING)
    aio_future_set_results(L, -1, -1, 0);
  lua_pop(L, 1);
  /* the error of a clean close is made only for a drain to fail with: its
   * traceback cost 90% of a stream connection's instructions */
  if (has_drains(L, proto_idx)) {
    if (err_idx == 0) {
      lua_pushliteral(L, "Connection lost");
      aio_push_error(L, "ConnectionResetError", -1);
      lua_remove(L, -2);
    } else {
      lua_pushvalue(L, err_idx);
    }
    settle_drains(L, proto_idx, lua_gettop(L));
    lua_pop(L, 1);
  }
}

static void op_pause_writing(lua_State *L, int proto_idx, int tp_idx) {
  reader *r = lua_touserdata(L, proto_idx);
  (void)tp_idx;
  r->write_paused = 1;
}

static void op_resume_writing(lua_State *L, int proto_idx, int tp_idx) {
  reader *r = lua_touserdata(L, proto_idx);
  (void)tp_idx;
  r->write_paused = 0;
  settle_drains(L, lua_absindex(L, proto_idx), 0);
}

const aio_proto_ops aio_reader_ops = {op_connection_made, op_data_received, op_eof_received,
                                      op_connection_lost, op_pause_writing, op_resume_writing,
                                      op_get_buffer,      op_buffer_updated};

/* ---- reading ------------------------------------------------------------ */
/* Each read method normalizes its stack to (reader, argument, state) and
 * calls its step, which returns its results or parks the task; the
 * continuation runs the step again. Only a read that must wait needs a task. */

static int run_step(lua_State *L, reader *r, int op, aio_task *t);

/* A waiter that was cancelled or woken no longer holds the reader. */
static int busy(reader *r) {
  aio_task *w = r->waiter;
  return w && !r->loop->closed && w->f.state == AIO_PENDING && w->wait == AIO_WAIT_PARK &&
         w->parked_on == r;
}

static int read_k(lua_State *L, int status, lua_KContext op) {
  aio_state *S = aio_state_of(L);
  aio_task *t = S->running->current;
  reader *r = lua_touserdata(L, 1);
  int failed = r->failed == t;
  (void)status;
  if (r->waiter == t) r->waiter = NULL;
  if (failed) r->failed = NULL;
  if (!busy(r)) r->to_eof = 0;
  aio_task_unparked(L, t);
  if (failed) {
    aio_get_aux(L, 1, UV_AUX, "exception");
    return lua_error(L);
  }
  return run_step(L, r, (int)op, t);
}

static int raise_exception(lua_State *L) {
  aio_get_aux(L, 1, UV_AUX, "exception");
  return lua_error(L);
}

/* Python's _wait_for_data: parks the task until feed_data, feed_eof or
 * set_exception. t is NULL on the first attempt of a call. */
static int wait_data(lua_State *L, reader *r, int op, aio_task *t, int to_eof) {
  static const char *const names[] = {"read", "readexactly", "readuntil", "readuntil", "readuntil"};
  static const char *const apis[] = {"StreamReader.read", "StreamReader.readexactly",
                                     "StreamReader.readuntil", "StreamReader.readline",
                                     "StreamReader.lines"};
  /* set after the last wake-up: no set_exception is left to wake this wait */
  if (r->has_exc) return raise_exception(L);
  if (!t) {
    t = aio_current_task(L, aio_state_of(L), apis[op]);
    if (!t) {
      lua_settop(L, 2);
      return aio_nested_yield(L);
    }
  }
  if (busy(r))
    return aio_raise(L, "RuntimeError",
                     "%s() called while another coroutine is already waiting for incoming data",
                     names[op]);
  /* a paused transport would never deliver what this read waits for */
  if (r->paused) resume_transport(L, r, 1);
  r->waiter = t;
  r->to_eof = (uint8_t)to_eof;
  return aio_task_park(L, t, r, op, read_k);
}

/* Pushes the first n buffered bytes and consumes them. */
static int take(lua_State *L, reader *r, size_t n) {
  lua_pushlstring(L, aio_buf_bytes(&r->buf), n);
  aio_buf_consume(&r->buf, n);
  maybe_resume(L, r, 1);
  return 1;
}

/* IncompleteReadError with every buffered byte as `partial`; expected < 0
 * stands for Python's None. */
static int raise_incomplete(lua_State *L, reader *r, lua_Integer expected) {
  if (expected < 0)
    lua_pushfstring(L, "%I bytes read on a total of undefined expected bytes",
                    (lua_Integer)r->buf.len);
  else
    lua_pushfstring(L, "%I bytes read on a total of %I expected bytes", (lua_Integer)r->buf.len,
                    expected);
  aio_push_error(L, "IncompleteReadError", -1);
  if (lua_istable(L, -1)) {
    lua_pushlstring(L, aio_buf_bytes(&r->buf), r->buf.len);
    lua_setfield(L, -2, "partial");
    if (expected >= 0) {
      lua_pushinteger(L, expected);
      lua_setfield(L, -2, "expected");
    }
  }
  aio_buf_consume(&r->buf, r->buf.len);
  return lua_error(L);
}

static int read_step(lua_State *L, reader *r, aio_task *t) {
  lua_Integer n = lua_tointeger(L, 2);
  if (n < 0) {
    if (!r->eof) return wait_data(L, r, OP_READ, t, 1);
    return take(L, r, r->buf.len);
  }
  if (r->buf.len == 0 && !r->eof) return wait_data(L, r, OP_READ, t, 0);
  return take(L, r, (uint64_t)n < r->buf.len ? (size_t)n : r->buf.len);
}

static int readexactly_step(lua_State *L, reader *r, aio_task *t) {
  lua_Integer n = lua_tointeger(L, 2);
  if ((uint64_t)n <= r->buf.len) return take(L, r, (size_t)n);
  if (r->eof) return raise_incomplete(L, r, n);
  return wait_data(L, r, OP_READEXACTLY, t, 0);
}

/* The separators at index 2 (a string, or check_separator's private copy
 * of the list), in seps or, beyond its room, in a new userdata on the stack. */
static const aio_sep *get_seps(lua_State *L, aio_sep *seps, int room, int *nseps) {
  int n, i;
  if (lua_type(L, 2) == LUA_TSTRING) {
    seps[0].p = lua_tolstring(L, 2, &seps[0].len);
    *nseps = 1;
    return seps;
  }
  n = (int)lua_rawlen(L, 2);
  if (n > room) seps = lua_newuserdatauv(L, (size_t)n * sizeof *seps, 0);
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, 2, i + 1);
    seps[i].p = lua_tolstring(L, -1, &seps[i].len);
    lua_pop(L, 1); /* the list keeps the string alive */
  }
  *nseps = n;
  return seps;
}

enum { UNTIL_FOUND, UNTIL_OVER_FOUND, UNTIL_OVER, UNTIL_EOF, UNTIL_WAIT };

/* One attempt of readuntil. Index 3 holds the absolute position before
 * which no separator starts (aio_buf_find). Sets *n to the length to take
 * (UNTIL_FOUND) or the `consumed` of a LimitOverrunError. */
static int until_step(lua_State *L, reader *r, size_t *n) {
  aio_sep room[4];
  const aio_sep *seps;
  int nseps, found;
  uint64_t pos = (uint64_t)lua_tointeger(L, 3);
  size_t mstart, mend, offset;
  seps = get_seps(L, room, 4, &nseps);
  found = aio_buf_find(&r->buf, seps, nseps, &pos, &mstart, &mend);
  lua_settop(L, 2);
  lua_pushinteger(L, (lua_Integer)pos);
  if (found) {
    *n = mstart > r->limit ? mstart : mend;
    return mstart > r->limit ? UNTIL_OVER_FOUND : UNTIL_FOUND;
  }
  offset = aio_buf_offset(&r->buf, pos);
  if (offset > r->limit) {
    *n = offset;
    return UNTIL_OVER;
  }
  return r->eof ? UNTIL_EOF : UNTIL_WAIT;
}

static const char *overrun_message(int rc) {
  return rc == UNTIL_OVER_FOUND ? "Separator is found, but chunk is longer than limit"
                                : "Separator is not found, and chunk exceed the limit";
}

static int readuntil_step(lua_State *L, reader *r, aio_task *t) {
  size_t n;
  int rc = until_step(L, r, &n);
  switch (rc) {
  case UNTIL_FOUND:
    return take(L, r, n);
  case UNTIL_EOF:
    return raise_incomplete(L, r, -1);
  case UNTIL_WAIT:
    return wait_data(L, r, OP_READUNTIL, t, 0);
  default:
    lua_pushstring(L, overrun_message(rc));
    aio_push_error(L, "LimitOverrunError", -1);
    if (lua_istable(L, -1)) {
      lua_pushinteger(L, (lua_Integer)n);
      lua_setfield(L, -2, "consumed");
    }
    return lua_error(L);
  }
}

/* readline and the lines() iterator: readuntil("\n") that returns what is
 * left at EOF, and drops the overlong line (ValueError) past the limit. */
static int readline_step(lua_State *L, reader *r, int op, aio_task *t) {
  size_t n;
  int rc = until_step(L, r, &n);
  switch (rc) {
  case UNTIL_FOUND:
    return take(L, r, n);
  case UNTIL_EOF:
    if (op == OP_LINES && r->buf.len == 0) {
      lua_pushnil(L);
      return 1;
    }
    return take(L, r, r->buf.len);
  case UNTIL_WAIT:
    return wait_data(L, r, op, t, 0);
  default:
    if (n < r->buf.len && aio_buf_bytes(&r->buf)[n] == '\n')
      aio_buf_consume(&r->buf, n + 1);
    else
      aio_buf_consume(&r->buf, r->buf.len);
    maybe_resume(L, r, 1);
    return aio_raise(L, "ValueError", "%s", overrun_message(rc));
  }
}

static int run_step(lua_State *L, reader *r, int op, aio_task *t) {
  switch (op) {
  case OP_READ:
    return read_step(L, r, t);
  case OP_READEXACTLY:
    return readexactly_step(L, r, t);
  case OP_READUNTIL:
    return readuntil_step(L, r, t);
  default:
    return readline_step(L, r, op, t);
  }
}

/***
Up to `n` bytes (`n = -1`: until EOF); "" at EOF (yields).
@function StreamReader:read
@python StreamReader.read
@tparam[opt=-1] integer n
@treturn string
@raise the error set by `set_exception`; RuntimeError outside a task or while another task reads
*/
static int l_read(lua_State *L) {
  reader *r = check_reader(L, 1);
  lua_Integer n = luaL_optinteger(L, 2, -1);
  if (r->has_exc) return raise_exception(L);
  if (n == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  lua_settop(L, 1);
  lua_pushinteger(L, n);
  return read_step(L, r, NULL);
}

/***
Exactly `n` bytes (yields).
@function StreamReader:readexactly
@python StreamReader.readexactly
@tparam integer n
@treturn string
@raise IncompleteReadError (fields `partial`, `expected`) at EOF; ValueError when n < 0
*/
static int l_readexactly(lua_State *L) {
  reader *r = check_reader(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  if (n < 0) return aio_raise(L, "ValueError", "readexactly size can not be less than zero");
  if (r->has_exc) return raise_exception(L);
  if (n == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  lua_settop(L, 2);
  return readexactly_step(L, r, NULL);
}

static void check_separator(lua_State *L) {
  size_t len;
  if (lua_isnoneornil(L, 2)) {
    lua_settop(L, 1);
    lua_pushliteral(L, "\n");
  } else if (lua_type(L, 2) == LUA_TSTRING) {
    lua_tolstring(L, 2, &len);
    if (len == 0) aio_raise(L, "ValueError", "Separator should be at least one-byte string");
  } else if (lua_type(L, 2) == LUA_TTABLE) {
    /* a copy: the caller may change its list while the read waits */
    lua_Unsigned n = lua_rawlen(L, 2), i;
    if (n == 0) aio_raise(L, "ValueError", "Separator should contain at least one element");
    if (n > INT_MAX) luaL_argerror(L, 2, "too many separators");
    lua_settop(L, 2);
    lua_createtable(L, (int)n, 0);
    for (i = 1; i <= n; i++) {
      if (lua_rawgeti(L, 2, (lua_Integer)i) != LUA_TSTRING)
        luaL_argerror(L, 2, lua_pushfstring(L, "separator #%I is not a string", (lua_Integer)i));
      lua_tolstring(L, -1, &len);
      if (len == 0) aio_raise(L, "ValueError", "Separator should be at least one-byte string");
      lua_rawseti(L, 3, (lua_Integer)i);
    }
    lua_replace(L, 2);
  } else {
    luaL_typeerror(L, 2, "string or list of strings");
  }
  lua_settop(L, 2);
}

/***
The data up to and including `sep` (yields).
@function StreamReader:readuntil
@python StreamReader.readuntil
@param[opt="\n"] sep a string or a list of strings
@treturn string
@raise IncompleteReadError at EOF; LimitOverrunError (field `consumed`) past `limit`; ValueError
  for an empty separator
*/
static int l_readuntil(lua_State *L) {
  reader *r = check_reader(L, 1);
  check_separator(L);
  if (r->has_exc) return raise_exception(L);
  lua_pushinteger(L, (lua_Integer)r->buf.consumed);
  return readuntil_step(L, r, NULL);
}

static int readline(lua_State *L, int op) {
  reader *r = check_reader(L, 1);
  if (r->has_exc) return raise_exception(L);
  lua_settop(L, 1);
  lua_pushliteral(L, "\n");
  lua_pushinteger(L, (lua_Integer)r->buf.consumed);
  return readline_step(L, r, op, NULL);
}

/***
One line with its "\n" (the rest at EOF, "" after it) (yields).
@function StreamReader:readline
@python StreamReader.readline
@treturn string
@raise ValueError past `limit`
*/
static int l_readline(lua_State *L) {
  return readline(L, OP_READLINE);
}

static int l_lines_next(lua_State *L) {
  return readline(L, OP_LINES);
}

/* for line in reader:lines() do ... end */

/***
An iterator of lines: `for line in reader:lines() do ... end` (`async for`).
@function StreamReader:lines
@python async for line in reader
@treturn function
*/
static int l_lines(lua_State *L) {
  check_reader(L, 1);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushvalue(L, 1);
  return 2;
}

/* ---- the rest of the API -------------------------------------------------- */

/***
Whether EOF was fed and the buffer is empty.
@function StreamReader:at_eof
@python StreamReader.at_eof
@treturn boolean
*/
static int l_at_eof(lua_State *L) {
  reader *r = check_reader(L, 1);
  lua_pushboolean(L, r->eof && r->buf.len == 0);
  return 1;
}

/***
Appends `s` to the buffer (a reader is the protocol of its transport).
@function StreamReader:feed_data
@python StreamReader.feed_data
@tparam string s
*/
static int l_feed_data(lua_State *L) {
  reader *r = check_reader(L, 1);
  size_t n;
  const char *p;
  luaL_checktype(L, 2, LUA_TSTRING);
  p = lua_tolstring(L, 2, &n);
  if (feed_data(L, r, 1, p, n) != 0) return luaL_error(L, "not enough memory");
  return 0;
}

/***
Marks the end of the stream.
@function StreamReader:feed_eof
@python StreamReader.feed_eof
*/
static int l_feed_eof(lua_State *L) {
  feed_eof(check_reader(L, 1));
  return 0;
}

/***
The error set by `set_exception`, or nil.
@function StreamReader:exception
@python StreamReader.exception
*/
static int l_exception(lua_State *L) {
  check_reader(L, 1);
  aio_get_aux(L, 1, UV_AUX, "exception");
  return 1;
}

/***
Fails the reader: reads raise `e`.
@function StreamReader:set_exception
@python StreamReader.set_exception
@param e the error
*/
static int l_set_exception(lua_State *L) {
  reader *r = check_reader(L, 1);
  luaL_argcheck(L, !lua_isnoneornil(L, 2), 2, "exception expected");
  set_exception(L, r, 1, 2);
  return 0;
}

/* Drops the futures that are done (a drain cancelled meanwhile) from the
 * list at idx, so waiting through a long pause does not grow it. */
static void prune_drains(lua_State *L, int idx) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx), i, j = 1;
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    if (((aio_future *)lua_touserdata(L, -1))->state == AIO_PENDING)
      lua_rawseti(L, idx, j++);
    else
      lua_pop(L, 1);
  }
  for (; j <= n; j++) {
    lua_pushnil(L);
    lua_rawseti(L, idx, j);
  }
}

void aio_reader_take_buffered(lua_State *L, int idx) {
  reader *r = aio_test_tagged(L, idx, AIO_T_READER);
  if (!r || r->buf.len == 0) {
    lua_pushliteral(L, "");
    return;
  }
  lua_pushlstring(L, aio_buf_bytes(&r->buf), r->buf.len);
  aio_buf_consume(&r->buf, r->buf.len);
}

/* StreamWriter.drain's fast path (writer.c): 0 when drain has nothing to
 * do - no exception, connection not lost, writing not paused. */
int aio_reader_drain_pending(lua_State *L, int idx) {
  reader *r = aio_test_tagged(L, idx, AIO_T_READER);
  return !r || r->has_exc || r->lost || r->write_paused;
}

/* For StreamWriter.drain: nothing while writing flows, else a Future that
 * resume_writing resolves and connection_lost fails. */
static int l_drain_helper(lua_State *L) {
  reader *r = check_reader(L, 1);
  if (r->lost) return aio_raise(L, "ConnectionResetError", "Connection lost");
  if (!r->write_paused) return 0;
  lua_settop(L, 1);
  if (aio_get_aux(L, 1, UV_AUX, "drains") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, -1);
    set_aux(L, 1, "drains");
  }
  prune_drains(L, 2);
  aio_future_new(L, r->loop);
  lua_pushvalue(L, -1);
  lua_rawseti(L, 2, (lua_Integer)lua_rawlen(L, 2) + 1);
  return 1;
}

/* _server_side([yes]): whether the reader is a Server connection's, set
 * with true (for StreamWriter.start_tls) */
static int l_server_side(lua_State *L) {
  reader *r = check_reader(L, 1);
  if (lua_toboolean(L, 2)) r->server_side = 1;
  lua_pushboolean(L, r->server_side);
  return 1;
}

/* For StreamWriter.wait_closed: a Future resolved once the connection is
 * lost. */
static int l_closed_waiter(lua_State *L) {
  reader *r = check_reader(L, 1);
  lua_settop(L, 1);
  if (aio_get_aux(L, 1, UV_AUX, "closed") == LUA_TUSERDATA) return 1;
  lua_pop(L, 1);
  aio_future_new(L, r->loop);
  if (r->lost) aio_future_set_results(L, -1, -1, 0);
  lua_pushvalue(L, -1);
  set_aux(L, 1, "closed");
  return 1;
}

static int push_value(lua_State *L, const char *aux) {
  return aux ? aio_get_aux(L, 1, UV_AUX, aux) : lua_getiuservalue(L, 1, UV_TRANSPORT);
}

static int l_tostring(lua_State *L) {
  reader *r = check_reader(L, 1);
  luaL_Buffer b;
  int i;
  static const struct {
    const char *aux; /* a field of UV_AUX, or NULL for the transport */
    const char *label;
  } values[] = {{"exception", " exception="}, {NULL, " transport="}};
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "<StreamReader");
  if (r->buf.len) {
    lua_pushfstring(L, " %I bytes", (lua_Integer)r->buf.len);
    luaL_addvalue(&b);
  }
  if (r->eof) luaL_addstring(&b, " eof");
  if (r->limit != DEFAULT_LIMIT) {
    lua_pushfstring(L, " limit=%I", (lua_Integer)r->limit);
    luaL_addvalue(&b);
  }
  if (busy(r)) {
    luaL_addstring(&b, " waiter=");
    aio_task_push(L, r->loop, r->waiter);
    luaL_tolstring(L, -1, NULL);
    lua_remove(L, -2);
    luaL_addvalue(&b);
  }
  for (i = 0; i < 2; i++) {
    int present;
    present = push_value(L, values[i].aux) != LUA_TNIL;
    lua_pop(L, 1); /* the buffer wants its own stack level back */
    if (!present) continue;
    luaL_addstring(&b, values[i].label);
    push_value(L, values[i].aux);
    luaL_tolstring(L, -1, NULL);
    lua_remove(L, -2);
    luaL_addvalue(&b);
  }
  if (r->paused) luaL_addstring(&b, " paused");
  luaL_addchar(&b, '>');
  luaL_pushresult(&b);
  return 1;
}

static int l_gc(lua_State *L) {
  reader *r = lua_touserdata(L, 1);
  aio_buf_free(&r->buf);
  r->gone = 1;
  return 0;
}

/* StreamReader([limit [, loop]]): the loop defaults to the running one, then
 * to the one set with set_event_loop. */

/***
A new reader: the bytes of a stream, read by one task at a time.
@function StreamReader
@python asyncio.StreamReader
@tparam[opt=65536] integer limit
@tparam[opt] Loop loop default: the running loop, then the current one
@treturn StreamReader
@raise ValueError when limit <= 0
*/
static int l_new(lua_State *L) {
  aio_state *S = aio_state_of(L);
  lua_Integer limit = luaL_optinteger(L, 1, DEFAULT_LIMIT);
  aio_loop *lp;
  reader *r;
  void *ud = S->buffers;
  lua_Alloc alloc = aio_blockcache_alloc;
  if (!ud) alloc = lua_getallocf(L, &ud);
  if (limit <= 0) return aio_raise(L, "ValueError", "Limit cannot be <= 0");
  if (!lua_isnoneornil(L, 2)) {
    lp = aio_check_loop(L, 2);
  } else if (S->running) {
    lp = S->running;
  } else {
    lua_rawgeti(L, LUA_REGISTRYINDEX, S->event_loop);
    if (lua_isnil(L, -1)) return aio_raise(L, "RuntimeError", "There is no current event loop");
    lp = aio_check_loop(L, -1);
  }
  r = lua_newuserdatauv(L, sizeof *r, UV_N);
  memset(r, 0, sizeof *r);
  r->tag = &aio_tags[AIO_T_READER];
  aio_buf_init(&r->buf, alloc, ud);
  r->room = ROOM_MIN;
  r->loop = lp;
  r->limit = (uint64_t)limit > SIZE_MAX ? SIZE_MAX : (size_t)limit;
  aio_setmetatable(L, S, AIO_T_READER);
  return 1;
}

void aio_reader_open(lua_State *L, aio_state *S) {
  static const luaL_Reg methods[] = {{"read", l_read},
                                     {"readline", l_readline},
                                     {"readexactly", l_readexactly},
                                     {"readuntil", l_readuntil},
                                     {"at_eof", l_at_eof},
                                     {"feed_data", l_feed_data},
                                     {"feed_eof", l_feed_eof},
                                     {"exception", l_exception},
                                     {"set_exception", l_set_exception},
                                     {"_drain_helper", l_drain_helper},
                                     {"_server_side", l_server_side},
                                     {"_closed_waiter", l_closed_waiter},
                                     {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__tostring", l_tostring}, {"__gc", l_gc}, {NULL, NULL}};
  aio_newclass(L, S, AIO_T_READER, READER_MT, methods, meta);
  lua_pushlightuserdata(L, S);
  lua_pushlightuserdata(L, S);
  lua_pushcclosure(L, l_lines_next, 1);
  lua_pushcclosure(L, l_lines, 2);
  lua_setfield(L, -2, "lines");
  lua_pop(L, 1);
  lua_pushlightuserdata(L, S);
  lua_pushcclosure(L, l_new, 1);
  lua_setfield(L, -2, "StreamReader");
}
