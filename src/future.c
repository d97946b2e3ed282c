/* Future: a result that arrives later. Results and callbacks live in the
 * userdata's two uservalues (a Task's callbacks beside its anchor, see struct
 * aio_task); a single callback (the common case: one task awaiting) is
 * stored as is, without a list. */

/***
Futures: `asyncio.Future([loop])`, `loop:create_future()`. An exception
never retrieved is logged when the future is collected.
Python: `asyncio.Future`.
@classmod Future
*/

#include <string.h>

#include "internal.h"

#define AIO_UNRETRIEVED_MT "asyncio.Unretrieved"

aio_future *aio_test_future(lua_State *L, int idx) {
  return aio_testudata(L, idx, AIO_T_FUTURE, AIO_T_TASK);
}

aio_future *aio_check_future(lua_State *L, int idx) {
  return aio_checkudata(L, idx, AIO_T_FUTURE, AIO_T_TASK, "Future");
}

/* The same with S at hand (await's: it checks every future it is given) */
aio_future *aio_check_future_in(lua_State *L, aio_state *S, int idx) {
  aio_future *f = aio_testudata_in(L, S, idx, AIO_T_FUTURE, AIO_T_TASK);
  if (!f) luaL_typeerror(L, idx, "Future");
  return f;
}

aio_future *aio_future_new(lua_State *L, aio_loop *lp) {
  aio_future *f = lua_newuserdatauv(L, sizeof *f, 2);
  memset(f, 0, sizeof *f);
  f->loop = lp;
  aio_setmetatable(L, lp->S, AIO_T_FUTURE);
  if (lp->debug) aio_future_note_source(L, lp->S, -1);
  return f;
}

/* Debug mode: remember where a future or task was created, for reports
 * about it (an exception never retrieved, a task destroyed while pending). */
void aio_future_note_source(lua_State *L, aio_state *S, int idx) {
  aio_push_extras(L, S, idx, 1);
  aio_traceback(L, L, "created at:", 1);
  lua_setfield(L, -2, "source_traceback");
  lua_pop(L, 1);
}

/* Pushes the done callbacks of the future at idx: nil, one or a list. */
static int push_callbacks(lua_State *L, int idx, aio_future *f) {
  if (f->flags & AIO_F_TASK) {
    aio_anchors_push_aux(L, &f->loop->tasks, ((aio_task *)f)->slot);
    return lua_type(L, -1);
  }
  return lua_getiuservalue(L, idx, 2);
}

/* Pops the value on top into the done callbacks of the future at idx. */
static void set_callbacks(lua_State *L, int idx, aio_future *f) {
  if (f->flags & AIO_F_TASK)
    aio_anchors_set_aux(L, &f->loop->tasks, ((aio_task *)f)->slot);
  else
    lua_setiuservalue(L, idx, 2);
}

/* Queues every done callback of the future at idx, then forgets them. */
static void schedule_callbacks(lua_State *L, int idx, aio_future *f) {
  aio_loop *lp = f->loop;
  int n = 1, i;
  if (!(f->flags & AIO_F_HASCB)) return;
  if (push_callbacks(L, idx, f) == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  if (f->flags & AIO_F_CBLIST) n = (int)lua_rawlen(L, -1);
  for (i = 1; i <= n; i++) {
    if (f->flags & AIO_F_CBLIST)
      lua_rawgeti(L, -1, i);
    else
      lua_pushvalue(L, -1);
    if (lua_type(L, -1) == LUA_TBOOLEAN) { /* queued by an attempt that ran out of memory */
      lua_pop(L, 1);
      continue;
    }
    if (lp->closed) {
      lua_pop(L, 1);
    } else if (lua_type(L, -1) == LUA_TLIGHTUSERDATA) {
      aio_task *t = lua_touserdata(L, -1);
      lua_pop(L, 1);
      if (t->f.state == AIO_PENDING && t->wait == AIO_WAIT_FUTURE) {
        t->wait = AIO_WAIT_SOON;
        aio_loop_push(lp, AIO_RUN_STEP, t, LUA_NOREF, LUA_NOREF);
      }
    } else {
      int fn = luaL_ref(L, LUA_REGISTRYINDEX);
      lua_pushvalue(L, idx);
      aio_loop_push(lp, AIO_RUN_DONECB, NULL, fn, luaL_ref(L, LUA_REGISTRYINDEX));
    }
    /* a luaL_ref of a later one may fail: a second attempt (task.c's
     * finish_failed) then skips what this one queued */
    if (f->flags & AIO_F_CBLIST) {
      lua_pushboolean(L, 0);
      lua_rawseti(L, -2, i);
    }
  }
  lua_pop(L, 1);
  lua_pushnil(L);
  set_callbacks(L, idx, f);
  f->flags &= (uint8_t) ~(AIO_F_CBLIST | AIO_F_HASCB);
}

void aio_future_finish(lua_State *L, int idx, uint8_t state) {
  aio_future *f = lua_touserdata(L, idx);
  f->state = state;
  /* a job that completes later finds it done; a result replaces the hook */
  f->flags &= (uint8_t) ~(AIO_F_JOB | AIO_F_CANCELHOOK);
  schedule_callbacks(L, lua_absindex(L, idx), f);
}

/* Stores n values starting at `first` as the result. */
int aio_future_set_results(lua_State *L, int idx, int first, int n) {
  aio_future *f = lua_touserdata(L, idx);
  int i;
  idx = lua_absindex(L, idx);
  first = lua_absindex(L, first);
  if (f->state != AIO_PENDING) return -1;
  if (n == 1) {
    lua_pushvalue(L, first);
  } else if (n > 1) {
    lua_createtable(L, n, 1);
    for (i = 0; i < n; i++) {
      lua_pushvalue(L, first + i);
      lua_rawseti(L, -2, i + 1);
    }
    lua_pushinteger(L, n);
    lua_setfield(L, -2, "n");
    f->flags |= AIO_F_MULTI;
  } else {
    lua_pushnil(L);
  }
  lua_setiuservalue(L, idx, 1);
  f->nres = n > 1 ? 0 : (uint8_t)n;
  aio_future_finish(L, idx, AIO_FINISHED);
  return 0;
}

/* The exception is wrapped in a sentinel whose finalizer reports it if the
 * future is collected before anyone looked at the exception. */
void aio_future_set_exc(lua_State *L, int idx, int err_idx) {
  aio_future *f = lua_touserdata(L, idx);
  idx = lua_absindex(L, idx);
  err_idx = lua_absindex(L, err_idx);
  lua_createtable(L, 3, 0);
  lua_pushvalue(L, err_idx);
  lua_rawseti(L, -2, 1);
  aio_loop_push_self(L, f->loop);
  lua_rawseti(L, -2, 2);
  lua_pushstring(L, (f->flags & AIO_F_TASK) ? "Task" : "Future");
  lua_rawseti(L, -2, 3);
  if (f->loop->debug) {
    aio_push_extras(L, f->loop->S, idx, 0); /* nil for a future made before debug mode */
    if (lua_istable(L, -1)) {
      lua_getfield(L, -1, "source_traceback");
      lua_remove(L, -2);
    }
    lua_rawseti(L, -2, 4);
  }
  aio_setmetatable(L, f->loop->S, AIO_T_UNRETRIEVED);
  lua_setiuservalue(L, idx, 1);
  f->flags |= AIO_F_EXC | AIO_F_SENTINEL;
  aio_future_finish(L, idx, AIO_FINISHED);
}

void aio_future_settle_failed(lua_State *L, int idx, int err_idx) {
  aio_future *f = lua_touserdata(L, idx);
  if (f->state == AIO_PENDING)
    aio_future_set_exc(L, idx, err_idx);
  else
    aio_future_finish(L, idx, f->state);
}

/* Pushes the exception of a finished future (marking it retrieved). */
static void push_exception(lua_State *L, int idx, aio_future *f) {
  lua_getiuservalue(L, idx, 1);
  if (f->flags & AIO_F_SENTINEL) {
    lua_rawgeti(L, -1, 1);
    lua_pushnil(L);
    lua_setmetatable(L, -3);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, idx, 1);
    lua_remove(L, -2);
    f->flags &= (uint8_t)~AIO_F_SENTINEL;
  }
}

static void push_cancelled_error(lua_State *L, int idx) {
  lua_getiuservalue(L, idx, 1);
  aio_push_error(L, "CancelledError", -1);
  lua_remove(L, -2);
}

int aio_future_push_results(lua_State *L, int idx) {
  aio_future *f = lua_touserdata(L, idx);
  idx = lua_absindex(L, idx);
  switch (f->state) {
  case AIO_PENDING:
    return aio_raise(L, "InvalidStateError", "Result is not ready.");
  case AIO_CANCELLED:
    push_cancelled_error(L, idx);
    return lua_error(L);
  default:
    break;
  }
  if (f->flags & AIO_F_EXC) {
    push_exception(L, idx, f);
    return lua_error(L);
  }
  if (f->flags & AIO_F_MULTI) {
    int n, i;
    lua_getiuservalue(L, idx, 1);
    lua_getfield(L, -1, "n");
    n = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    luaL_checkstack(L, n, "too many results");
    for (i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
    lua_remove(L, -n - 1);
    return n;
  }
  if (f->nres == 0) return 0;
  lua_getiuservalue(L, idx, 1);
  return 1;
}

/* Appends the callback on top of the stack (popped) to the future at idx. */
static void add_callback(lua_State *L, int idx, aio_future *f) {
  idx = lua_absindex(L, idx);
  f->flags |= AIO_F_HASCB;
  if (push_callbacks(L, idx, f) == LUA_TNIL) {
    lua_pop(L, 1);
    set_callbacks(L, idx, f);
    return;
  }
  if (!(f->flags & AIO_F_CBLIST)) {
    lua_createtable(L, 4, 0);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, -1);
    set_callbacks(L, idx, f);
    f->flags |= AIO_F_CBLIST;
  }
  lua_insert(L, -2);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 1);
}

/* Drops every registration of the value on top (popped) from the future at
 * idx; returns how many there were. */
static int remove_callback(lua_State *L, int idx, aio_future *f) {
  int cb = lua_gettop(L), removed = 0;
  idx = lua_absindex(L, idx);
  push_callbacks(L, idx, f);
  if (!(f->flags & AIO_F_CBLIST)) {
    if (lua_rawequal(L, cb, -1)) {
      lua_pushnil(L);
      set_callbacks(L, idx, f);
      removed = 1;
    }
  } else {
    int n = (int)lua_rawlen(L, -1), i, j = 1;
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      if (lua_rawequal(L, cb, -1)) {
        removed++;
        lua_pop(L, 1);
      } else {
        lua_rawseti(L, -2, j++);
      }
    }
    for (; j <= n; j++) {
      lua_pushnil(L);
      lua_rawseti(L, -2, j);
    }
  }
  lua_settop(L, cb - 1);
  return removed;
}

void aio_future_add_waiter(lua_State *L, int idx, aio_task *t) {
  lua_pushlightuserdata(L, t);
  add_callback(L, idx, lua_touserdata(L, idx));
}

/* For a task that stops waiting before the future is done: a waiter left
 * behind would be woken when the future ends, by then maybe in the memory
 * of another task. */
void aio_future_remove_waiter(lua_State *L, int idx, aio_task *t) {
  lua_pushlightuserdata(L, t);
  remove_callback(L, idx, lua_touserdata(L, idx));
}

void aio_future_run_donecb(lua_State *L, aio_loop *lp, int fn_ref, int fut_ref) {
  int base = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, fut_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
  lua_pushvalue(L, base + 1);
  luaL_unref(L, LUA_REGISTRYINDEX, fn_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, fut_ref);
  aio_call_reporting(L, lp, base + 2, "done callback", "future", base + 1);
  lua_settop(L, base);
}

/* A future with a cancel hook (gather's, Python's _GatheringFuture) is not
 * cancelled by cancel(): the hook gets (future, msg), passes the request on
 * and returns cancel()'s result; the hook's owner finishes the future. It
 * is called from C too, when a task awaiting the future is cancelled. */
static int call_cancel_hook(lua_State *L, int idx, int msg_idx) {
  int done;
  lua_getiuservalue(L, idx, 1);
  lua_pushvalue(L, idx);
  lua_pushvalue(L, msg_idx);
  lua_call(L, 2, 1);
  done = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return done;
}

int aio_future_cancel(lua_State *L, int idx, int msg_idx) {
  aio_future *f = lua_touserdata(L, idx);
  if (f->flags & AIO_F_TASK) return aio_task_cancel(L, idx, msg_idx);
  if (f->state != AIO_PENDING) return 0;
  idx = lua_absindex(L, idx);
  msg_idx = lua_absindex(L, msg_idx);
  if (f->flags & AIO_F_CANCELHOOK) return call_cancel_hook(L, idx, msg_idx);
  if (f->flags & AIO_F_JOB) aio_executor_cancel(L, idx); /* a job not started never runs */
  lua_pushvalue(L, msg_idx);
  lua_setiuservalue(L, idx, 1);
  aio_future_finish(L, idx, AIO_CANCELLED);
  return 1;
}

/* ---- Lua methods ----------------------------------------------------- */

/***
The values the future was resolved with.
@function Future:result
@python Future.result
@return ... the values
@raise InvalidStateError when pending; CancelledError when cancelled; the error set by
  `set_exception`
*/
static int l_result(lua_State *L) {
  return aio_future_push_done(L, aio_check_future(L, 1), 1);
}

/***
The error set by `set_exception`, or nil.
@function Future:exception
@python Future.exception
@return the error or nil
@raise InvalidStateError when pending; CancelledError when cancelled
*/
static int l_exception(lua_State *L) {
  aio_future *f = aio_check_future(L, 1);
  if (f->state == AIO_PENDING) return aio_raise(L, "InvalidStateError", "Exception is not set.");
  if (f->state == AIO_CANCELLED) {
    push_cancelled_error(L, 1);
    return lua_error(L);
  }
  if (!(f->flags & AIO_F_EXC)) return 0;
  push_exception(L, 1, f);
  return 1;
}

static aio_future *check_plain_future(lua_State *L, const char *what) {
  aio_future *f = aio_check_future(L, 1);
  if (f->flags & AIO_F_TASK) aio_raise(L, "RuntimeError", "Task does not support %s()", what);
  return f;
}

/***
Resolves the future with every value given; schedules the done callbacks.
@function Future:set_result
@python Future.set_result
@param ... the values
@raise InvalidStateError when done; RuntimeError on a Task
*/
static int l_set_result(lua_State *L) {
  aio_future *f = check_plain_future(L, "set_result");
  if (f->state != AIO_PENDING) return aio_raise(L, "InvalidStateError", "invalid state");
  aio_future_set_results(L, 1, 2, lua_gettop(L) - 1);
  return 0;
}

/***
Fails the future with `err`.
@function Future:set_exception
@python Future.set_exception
@param err an error object (or any Lua error value)
@raise InvalidStateError when done; RuntimeError on a Task
*/
static int l_set_exception(lua_State *L) {
  aio_future *f = check_plain_future(L, "set_exception");
  luaL_argcheck(L, !lua_isnoneornil(L, 2), 2, "exception expected");
  if (f->state != AIO_PENDING) return aio_raise(L, "InvalidStateError", "invalid state");
  aio_future_set_exc(L, 1, 2);
  return 0;
}

/***
Whether the future has a result, an exception or was cancelled.
@function Future:done
@python Future.done
@treturn boolean
*/
static int l_done(lua_State *L) {
  lua_pushboolean(L, aio_check_future(L, 1)->state != AIO_PENDING);
  return 1;
}

/***
Whether the future was cancelled.
@function Future:cancelled
@python Future.cancelled
@treturn boolean
*/
static int l_cancelled(lua_State *L) {
  lua_pushboolean(L, aio_check_future(L, 1)->state == AIO_CANCELLED);
  return 1;
}

/***
Cancels the future; `result()` then raises CancelledError(msg).
@function Future:cancel
@python Future.cancel
@tparam[opt] string msg
@treturn boolean false when already done
*/
static int l_cancel(lua_State *L) {
  aio_check_future(L, 1);
  if (!lua_isnoneornil(L, 2)) luaL_checkstring(L, 2);
  lua_settop(L, 2);
  lua_pushboolean(L, aio_future_cancel(L, 1, 2));
  return 1;
}

/***
Calls `cb(fut)` via the loop once the future is done (at once if it is).
@function Future:add_done_callback
@python Future.add_done_callback
@tparam function cb
*/
static int l_add_done_callback(lua_State *L) {
  aio_future *f = aio_check_future(L, 1);
  if (!lua_isfunction(L, 2) && luaL_getmetafield(L, 2, "__call") == LUA_TNIL)
    luaL_typeerror(L, 2, "callable");
  lua_settop(L, 2);
  if (f->state != AIO_PENDING) {
    int fn = luaL_ref(L, LUA_REGISTRYINDEX);
    aio_loop_check_open(L, f->loop);
    lua_pushvalue(L, 1);
    aio_loop_push(f->loop, AIO_RUN_DONECB, NULL, fn, luaL_ref(L, LUA_REGISTRYINDEX));
    return 0;
  }
  add_callback(L, 1, f);
  return 0;
}

/***
Removes every registration of `cb`.
@function Future:remove_done_callback
@python Future.remove_done_callback
@tparam function cb
@treturn integer how many were removed
*/
static int l_remove_done_callback(lua_State *L) {
  aio_future *f = aio_check_future(L, 1);
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  lua_pushinteger(L, remove_callback(L, 1, f));
  return 1;
}

/***
The future's loop.
@function Future:get_loop
@python Future.get_loop
@treturn Loop
*/
static int l_get_loop(lua_State *L) {
  aio_loop_push_self(L, aio_check_future(L, 1)->loop);
  return 1;
}

static int l_tostring(lua_State *L) {
  aio_future *f = aio_check_future(L, 1);
  const char *kind = (f->flags & AIO_F_TASK) ? "Task" : "Future";
  switch (f->state) {
  case AIO_PENDING:
    lua_pushfstring(L, "<%s pending>", kind);
    break;
  case AIO_CANCELLED:
    lua_pushfstring(L, "<%s cancelled>", kind);
    break;
  default:
    if (f->flags & AIO_F_EXC) {
      lua_getiuservalue(L, 1, 1);
      if (f->flags & AIO_F_SENTINEL) lua_rawgeti(L, -1, 1);
      lua_pushfstring(L, "<%s finished exception=%s>", kind, luaL_tolstring(L, -1, NULL));
    } else {
      lua_pushfstring(L, "<%s finished>", kind);
    }
  }
  return 1;
}

/* Finalizer of the sentinel: the future went away with its exception unseen. */
static int l_unretrieved_gc(lua_State *L) {
  aio_state *S = aio_state_of(L);
  aio_push_hook(L, S, "unretrieved");
  if (!lua_isfunction(L, -1)) return 0;
  lua_pushvalue(L, 1);
  lua_call(L, 1, 0);
  return 0;
}

/* C API */
void asyncio_future_new(lua_State *L, asyncio_loop *loop) {
  aio_future_new(L, loop);
}

/* A Task's result comes from its function: both setters refuse Tasks, as
 * Future:set_result does from Lua. */
static aio_future *check_settable(lua_State *L, int idx) {
  aio_future *f = aio_check_future(L, idx);
  if (f->flags & AIO_F_TASK) luaL_argerror(L, idx, "a Task's result cannot be set");
  return f;
}

int asyncio_future_set_result(lua_State *L, int idx, int n) {
  int first = lua_gettop(L) - n + 1, rc;
  idx = lua_absindex(L, idx);
  check_settable(L, idx);
  rc = aio_future_set_results(L, idx, first, n);
  lua_pop(L, n);
  return rc;
}

int asyncio_future_set_exception(lua_State *L, int idx) {
  aio_future *f = check_settable(L, idx);
  if (f->state != AIO_PENDING) {
    lua_pop(L, 1);
    return -1;
  }
  aio_future_set_exc(L, idx, -1);
  lua_pop(L, 1);
  return 0;
}

/***
Suspends the calling task (the C function is `aio_await` in src/task.c) until the future is done
  (Python's `await fut`).
@function Future:await
@python await fut
@return ... the values of `result()`
@raise what `result()` raises; RuntimeError outside a task, for a future of another loop or a task
  awaiting itself
*/
static const luaL_Reg future_methods[] = {{"result", l_result},
                                          {"exception", l_exception},
                                          {"set_result", l_set_result},
                                          {"set_exception", l_set_exception},
                                          {"done", l_done},
                                          {"cancelled", l_cancelled},
                                          {"cancel", l_cancel},
                                          {"add_done_callback", l_add_done_callback},
                                          {"remove_done_callback", l_remove_done_callback},
                                          {"get_loop", l_get_loop},
                                          {"await", aio_await},
                                          {NULL, NULL}};

void aio_future_methods(lua_State *L, aio_state *S) {
  aio_setfuncs(L, S, future_methods);
}

static int l_new_future(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  aio_loop_check_thread(L, lp);
  aio_future_new(L, lp);
  return 1;
}

/* Future_on_cancel(future, hook | nil): see call_cancel_hook; nil takes the
 * hook away, so that cancel() cancels the future itself again. */
static int l_on_cancel(lua_State *L) {
  aio_future *f = aio_check_future(L, 1);
  int hook = !lua_isnoneornil(L, 2);
  luaL_argcheck(L, !(f->flags & (AIO_F_TASK | AIO_F_JOB)), 1, "plain Future expected");
  luaL_argcheck(L, f->state == AIO_PENDING, 1, "pending Future expected");
  if (hook) luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  lua_setiuservalue(L, 1, 1);
  if (hook)
    f->flags |= AIO_F_CANCELHOOK;
  else
    f->flags &= (uint8_t)~AIO_F_CANCELHOOK;
  return 0;
}

static int l_isfuture(lua_State *L) {
  lua_pushboolean(L, aio_test_future(L, 1) != NULL);
  return 1;
}

/* asyncio.wrap_future(f [, loop]) -> f: a Future is one already (Python:
 * isfuture(f)); a worker's future of run_coroutine_threadsafe has no loop
 * of its state to wrap into. */
static int l_wrap_future(lua_State *L) {
  aio_check_future(L, 1);
  if (!lua_isnoneornil(L, 2)) aio_check_loop(L, 2);
  lua_settop(L, 1);
  return 1;
}

void aio_future_open(lua_State *L, aio_state *S) {
  static const luaL_Reg meta[] = {{"__tostring", l_tostring}, {NULL, NULL}};
  static const luaL_Reg ugc[] = {{"__gc", l_unretrieved_gc}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"Future_new", l_new_future},
                                   {"Future_on_cancel", l_on_cancel},
                                   {"isfuture", l_isfuture},
                                   {"wrap_future", l_wrap_future},
                                   {NULL, NULL}};
  aio_newclass(L, S, AIO_T_FUTURE, AIO_FUTURE_MT, future_methods, meta);
  lua_setfield(L, -2, "Future");
  aio_newclass(L, S, AIO_T_UNRETRIEVED, AIO_UNRETRIEVED_MT, NULL, ugc);
  lua_pop(L, 1);
  aio_setfuncs(L, S, funcs);
}
