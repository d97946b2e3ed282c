/* asyncio.run_coroutine_threadsafe(fn, loop, ...): fn(...) as a task of
 * loop, and a future of its outcome. From a job of the executor (loop nil:
 * a worker holds no loop object) the task runs on the loop that submitted
 * the job, and the future belongs to the worker's state: its result()
 * blocks the worker until the task's outcome is back, copied by to_thread's
 * rules (Trio's from_thread.run). The request travels as one of the job's
 * calls (executor.c); the record below is what the two threads share from
 * then on. In the loop's own state it is a Future chained to the task. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "executor.h"

#define CFUTURE_MT "asyncio.ConcurrentFuture"
#define WHAT "run_coroutine_threadsafe"

enum { RF_PENDING, RF_DONE, RF_CANCELLED };

/* A job's request and its outcome, shared by the worker's future and the
 * loop, freed by whichever lets go last. mu guards state, result, started,
 * cancel_posted and refs. buf is the loop's while pending, the worker's
 * once done. The links and task_ref are the loop thread's alone. */
struct aio_rfut {
  pthread_mutex_t mu;
  pthread_cond_t cv; /* broadcast when state leaves RF_PENDING */
  aio_copybuf buf;   /* the outcome, AIO_OUT_* `result` */
  aio_post cancel;   /* the worker's cancel(), to the loop (embedded) */
  aio_loop *lp;
  aio_rfut *lnext, *lprev; /* lp->rfuts, from its arrival to settle() */
  int task_ref;
  uint8_t state, result;
  uint8_t started;       /* arrived in the loop: a cancel() must go there */
  uint8_t cancel_posted; /* and one is on its way */
  uint8_t refs;          /* the worker's future; the request, then the loop */
};

/* The worker's future; uservalue 1 keeps the outcome once decoded. */
typedef struct {
  aio_rfut *rf;
} cfut;

static void cancel_arrived(lua_State *L, void *data);

static aio_rfut *rf_new(void) {
  aio_rfut *rf = calloc(1, sizeof *rf);
  pthread_condattr_t ca;
  if (!rf) return NULL;
  pthread_mutex_init(&rf->mu, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* result(timeout): not moved by the date */
  pthread_cond_init(&rf->cv, &ca);
  pthread_condattr_destroy(&ca);
  rf->cancel.fn = cancel_arrived;
  rf->cancel.data = rf;
  rf->cancel.embedded = 1;
  rf->task_ref = LUA_NOREF;
  rf->refs = 1;
  return rf;
}

static void rf_release(aio_rfut *rf) {
  int last;
  pthread_mutex_lock(&rf->mu);
  last = --rf->refs == 0;
  pthread_mutex_unlock(&rf->mu);
  if (!last) return;
  pthread_mutex_destroy(&rf->mu);
  pthread_cond_destroy(&rf->cv);
  aio_copybuf_free(&rf->buf);
  free(rf);
}

/* The outcome, unless the worker cancelled first (rf->mu held) */
static void finish_locked(aio_rfut *rf, uint8_t state, uint8_t result) {
  if (rf->state != RF_PENDING) return;
  rf->state = state;
  rf->result = result;
  pthread_cond_broadcast(&rf->cv);
}

void aio_rfut_drop(aio_rfut *rf) {
  pthread_mutex_lock(&rf->mu);
  finish_locked(rf, RF_DONE, AIO_OUT_CLOSED);
  pthread_mutex_unlock(&rf->mu);
  rf_release(rf);
}

/* ---- the loop's side ---------------------------------------------------- */

/* The loop lets go of rf once the outcome is set, its task done and no
 * cancel() of the worker's on its way: the worker posts one only while the
 * outcome is not set, so none can follow. */
static void settle(aio_rfut *rf) {
  int busy;
  if (rf->task_ref != LUA_NOREF) return;
  pthread_mutex_lock(&rf->mu);
  busy = rf->cancel_posted;
  pthread_mutex_unlock(&rf->mu);
  if (busy) return;
  if (rf->lprev)
    rf->lprev->lnext = rf->lnext;
  else
    rf->lp->rfuts = rf->lnext;
  if (rf->lnext) rf->lnext->lprev = rf->lprev;
  rf_release(rf);
}

/* push_results(future) -> its results, or raises its error (which is then
 * retrieved) */
static int push_results(lua_State *L) {
  return aio_future_push_results(L, 1);
}

/* encode(rf, task, nil) or encode(rf, nil, error) under lua_pcall: the
 * task's outcome, or the error that left no task, into rf->buf; returns
 * its AIO_OUT_* */
static int encode(lua_State *L) {
  aio_rfut *rf = lua_touserdata(L, 1);
  lua_settop(L, 3);
  aio_copybuf_reset(&rf->buf);
  if (!lua_isnil(L, 2)) {
    lua_pushcfunction(L, push_results);
    lua_pushvalue(L, 2);
    if (lua_pcall(L, 1, LUA_MULTRET, 0) == LUA_OK) {
      lua_pushinteger(L, aio_outcome_encode_results(L, 4, lua_gettop(L) - 3, &rf->buf, WHAT));
      return 1;
    }
    lua_replace(L, 3);
    /* a plain error's traceback is the task's (task.c keeps it) */
    aio_push_extras(L, rf->lp->S, 2, 0);
    if (lua_istable(L, 4)) {
      lua_getfield(L, 4, "traceback");
      lua_replace(L, 4);
    }
  } else {
    lua_pushnil(L);
  }
  lua_pushinteger(L, aio_outcome_encode_error(L, 3, &rf->buf, WHAT));
  return 1;
}

/* Sets rf's outcome from the task at task, or the error at err (indices, 0
 * for none). */
static void conclude(lua_State *L, aio_rfut *rf, int task, int err) {
  uint8_t result = AIO_OUT_NOMEM;
  int top = lua_gettop(L);
  lua_pushcfunction(L, encode);
  lua_pushlightuserdata(L, rf);
  aio_push_opt(L, task);
  aio_push_opt(L, err);
  if (lua_pcall(L, 3, 1, 0) == LUA_OK)
    result = (uint8_t)lua_tointeger(L, -1);
  else
    aio_copybuf_reset(&rf->buf);
  lua_settop(L, top);
  pthread_mutex_lock(&rf->mu);
  finish_locked(rf, RF_DONE, result);
  pthread_mutex_unlock(&rf->mu);
}

/* The task's done callback; upvalue 1: rf. It runs at most once, while
 * the loop is open: until then the loop holds its reference to rf. */
static int task_done(lua_State *L) {
  aio_rfut *rf = lua_touserdata(L, lua_upvalueindex(1));
  aio_future *t = aio_check_future(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, rf->task_ref);
  rf->task_ref = LUA_NOREF;
  if (t->state == AIO_CANCELLED) {
    pthread_mutex_lock(&rf->mu);
    finish_locked(rf, RF_CANCELLED, AIO_OUT_OK);
    pthread_mutex_unlock(&rf->mu);
  } else {
    conclude(L, rf, 1, 0);
  }
  settle(rf);
  return 0;
}

/* fut:add_done_callback(the function on top, popped) */
static void add_done_callback(lua_State *L, int fut) {
  fut = lua_absindex(L, fut);
  lua_getfield(L, fut, "add_done_callback");
  lua_pushvalue(L, fut);
  lua_rotate(L, -3, -1);
  lua_call(L, 2, 0);
}

/* start(rf, buf) under lua_pcall: the request's task, through the loop's
 * task factory as create_task */
static int start(lua_State *L) {
  aio_rfut *rf = lua_touserdata(L, 1);
  const aio_copybuf *b = lua_touserdata(L, 2);
  int n = aio_copy_decode(L, b->data, b->len, 0);
  lua_remove(L, 4); /* fn, nil (the loop argument), args */
  aio_task_create(L, rf->lp, 3, n - 2);
  lua_pushvalue(L, -1);
  rf->task_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushlightuserdata(L, rf);
  lua_pushcclosure(L, task_done, 1);
  add_done_callback(L, -2);
  return 0;
}

void aio_rfut_run(lua_State *L, aio_loop *lp, aio_rfut *rf, const aio_copybuf *b) {
  int top = lua_gettop(L), cancelled;
  pthread_mutex_lock(&rf->mu);
  cancelled = rf->state != RF_PENDING;
  if (!cancelled) {
    rf->lp = lp;
    rf->started = 1;
  }
  pthread_mutex_unlock(&rf->mu);
  if (cancelled) { /* before it arrived: no task */
    rf_release(rf);
    return;
  }
  rf->lnext = lp->rfuts;
  if (lp->rfuts) lp->rfuts->lprev = rf;
  lp->rfuts = rf;
  lua_pushcfunction(L, start);
  lua_pushlightuserdata(L, rf);
  lua_pushlightuserdata(L, (void *)b);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    /* no task, or one nobody hears from: the error is the outcome, as
     * Python sets it on the future */
    luaL_unref(L, LUA_REGISTRYINDEX, rf->task_ref);
    rf->task_ref = LUA_NOREF;
    conclude(L, rf, 0, lua_gettop(L));
  }
  lua_settop(L, top);
  settle(rf);
}

/* cancel_task(task) under lua_pcall */
static int cancel_task(lua_State *L) {
  lua_settop(L, 1);
  lua_pushnil(L);
  aio_future_cancel(L, 1, 2);
  return 0;
}

/* The worker's cancel() arrived: the task's done callback follows. */
static void cancel_arrived(lua_State *L, void *data) {
  aio_rfut *rf = data;
  int top = lua_gettop(L);
  pthread_mutex_lock(&rf->mu);
  rf->cancel_posted = 0;
  pthread_mutex_unlock(&rf->mu);
  if (rf->task_ref != LUA_NOREF) {
    lua_pushcfunction(L, cancel_task);
    lua_rawgeti(L, LUA_REGISTRYINDEX, rf->task_ref);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK)
      aio_report_callback_error(L, rf->lp, lua_gettop(L), "Exception in callback", NULL, 0);
    lua_settop(L, top);
  }
  settle(rf);
}

void aio_rfut_loop_close(lua_State *L, aio_loop *lp) {
  aio_rfut *rf, *next;
  for (rf = lp->rfuts; rf; rf = next) {
    next = rf->lnext;
    luaL_unref(L, LUA_REGISTRYINDEX, rf->task_ref);
    pthread_mutex_lock(&rf->mu);
    finish_locked(rf, RF_DONE, AIO_OUT_CLOSED);
    rf->cancel_posted = 0; /* gone with the loop's posts */
    pthread_mutex_unlock(&rf->mu);
    rf_release(rf);
  }
  lp->rfuts = NULL;
}

/* ---- the worker's future ------------------------------------------------ */

static aio_rfut *check_rf(lua_State *L) {
  cfut *cf = aio_checkudata(L, 1, AIO_T_CFUTURE, AIO_T_CFUTURE, "ConcurrentFuture");
  if (!cf->rf) luaL_argerror(L, 1, "future is released");
  return cf->rf;
}

/* Blocks the worker until rf is done, or the timeout (seconds, the number
 * at idx; none or nil: no limit) has passed; returns rf's state. */
static uint8_t wait_done(lua_State *L, aio_rfut *rf, int idx) {
  struct timespec until = {0, 0};
  int bounded = !lua_isnoneornil(L, idx);
  uint8_t state;
  if (bounded) {
    double t = luaL_checknumber(L, idx);
    luaL_argcheck(L, t == t, idx, "timeout is NaN");
    bounded = t < 1e9; /* beyond: math.huge and the like */
    clock_gettime(CLOCK_MONOTONIC, &until);
    if (bounded && t > 0) {
      time_t s = (time_t)t;
      until.tv_sec += s;
      until.tv_nsec += (long)((t - (double)s) * 1e9);
      if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
      }
    }
  }
  pthread_mutex_lock(&rf->mu);
  while (rf->state == RF_PENDING) {
    if (!bounded)
      pthread_cond_wait(&rf->cv, &rf->mu);
    else if (pthread_cond_timedwait(&rf->cv, &rf->mu, &until) == ETIMEDOUT)
      break;
  }
  state = rf->state;
  pthread_mutex_unlock(&rf->mu);
  return state;
}

/* The future at 1 is done: pushes its outcome (decoded once, then kept in
 * its uservalue) and returns how many values, or -1 with the error on top. */
static int push_outcome(lua_State *L, aio_rfut *rf) {
  int top = lua_gettop(L), n, i;
  if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) {
    lua_pop(L, 1);
    n = aio_outcome_push(L, rf->result, &rf->buf);
    lua_createtable(L, n < 0 ? 1 : n, 1);
    lua_insert(L, top + 1);
    lua_pushinteger(L, n);
    lua_setfield(L, top + 1, "n");
    for (i = lua_gettop(L) - top - 1; i >= 1; i--) lua_rawseti(L, top + 1, i);
    lua_pushvalue(L, top + 1);
    lua_setiuservalue(L, 1, 1);
    aio_copybuf_free(&rf->buf); /* done: the loop writes it no more */
  }
  lua_getfield(L, top + 1, "n");
  n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  luaL_checkstack(L, n < 0 ? 1 : n, "too many results");
  for (i = 1; i <= (n < 0 ? 1 : n); i++) lua_rawgeti(L, top + 1, i);
  lua_remove(L, top + 1);
  return n;
}

/* Raises TimeoutError or CancelledError for a future not done with a
 * value or an error. */
static void check_outcome(lua_State *L, uint8_t state) {
  if (state == RF_PENDING)
    aio_raise(L, "TimeoutError", "the task's outcome did not come within the timeout");
  if (state == RF_CANCELLED) aio_raise(L, "CancelledError", "");
}

/* future:result([timeout]) -> the task's values (blocks the worker) */
static int l_cf_result(lua_State *L) {
  aio_rfut *rf = check_rf(L);
  int n;
  check_outcome(L, wait_done(L, rf, 2));
  lua_settop(L, 1);
  if ((n = push_outcome(L, rf)) < 0) return lua_error(L);
  return n;
}

/* future:exception([timeout]) -> the task's error, or nothing */
static int l_cf_exception(lua_State *L) {
  aio_rfut *rf = check_rf(L);
  check_outcome(L, wait_done(L, rf, 2));
  lua_settop(L, 1);
  return push_outcome(L, rf) < 0 ? 1 : 0;
}

static uint8_t state_of(aio_rfut *rf, uint8_t *started) {
  uint8_t state;
  pthread_mutex_lock(&rf->mu);
  state = rf->state;
  if (started) *started = rf->started;
  pthread_mutex_unlock(&rf->mu);
  return state;
}

static int l_cf_done(lua_State *L) {
  lua_pushboolean(L, state_of(check_rf(L), NULL) != RF_PENDING);
  return 1;
}

static int l_cf_cancelled(lua_State *L) {
  lua_pushboolean(L, state_of(check_rf(L), NULL) == RF_CANCELLED);
  return 1;
}

/* future:running(): the task is in the loop, not done (it can still be
 * cancelled) */
static int l_cf_running(lua_State *L) {
  uint8_t started, state = state_of(check_rf(L), &started);
  lua_pushboolean(L, state == RF_PENDING && started);
  return 1;
}

/* future:cancel() -> true once cancelled (now or before), false once done.
 * The task, if it has arrived, is cancelled in the loop; otherwise it is
 * never made. */
static int l_cf_cancel(lua_State *L) {
  aio_rfut *rf = check_rf(L);
  int cancelled;
  pthread_mutex_lock(&rf->mu);
  if (rf->state == RF_PENDING) {
    rf->state = RF_CANCELLED;
    pthread_cond_broadcast(&rf->cv);
    /* pending and arrived: the loop is open and holds rf (see settle) */
    if (rf->started && aio_loop_post(rf->lp, &rf->cancel) != UV_ECANCELED) rf->cancel_posted = 1;
  }
  cancelled = rf->state == RF_CANCELLED;
  pthread_mutex_unlock(&rf->mu);
  lua_pushboolean(L, cancelled);
  return 1;
}

static int l_cf_gc(lua_State *L) {
  cfut *cf = lua_touserdata(L, 1);
  if (cf->rf) rf_release(cf->rf);
  cf->rf = NULL;
  return 0;
}

static int l_cf_tostring(lua_State *L) {
  static const char *const names[] = {"pending", "finished", "cancelled"};
  uint8_t started, state = state_of(check_rf(L), &started);
  lua_pushfstring(L, "<ConcurrentFuture %s>",
                  state == RF_PENDING && started ? "running" : names[state]);
  return 1;
}

/* ---- asyncio.run_coroutine_threadsafe ----------------------------------- */

/* In a job: the request goes to the job's loop as one of its calls, and the
 * future is of this (the worker's) state. Stack: fn, nil, args. */
static int job_request(lua_State *L, aio_job *j) {
  cfut *cf = lua_newuserdatauv(L, sizeof *cf, 1);
  aio_rfut *rf;
  int rc;
  cf->rf = NULL;
  aio_setmetatable(L, aio_state_of(L), AIO_T_CFUTURE);
  lua_insert(L, 1);
  if ((rf = rf_new()) == NULL) return luaL_error(L, "not enough memory");
  cf->rf = rf;
  rf->refs = 2; /* and the request's, once it goes */
  if ((rc = aio_job_post(L, j, 2, WHAT, rf)) != 0) {
    rf->refs = 1; /* it did not go: no other thread knows rf */
    if (rc == -1) return lua_error(L);
    return aio_raise(L, "RuntimeError", "Event loop is closed");
  }
  lua_settop(L, 1);
  return 1;
}

/* The task's outcome becomes the future's (Python's _chain_future);
 * upvalue 1: the future. */
static int chained_task_done(lua_State *L) {
  aio_future *t = aio_check_future(L, 1), *f;
  lua_settop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  f = lua_touserdata(L, 2);
  if (f->state != AIO_PENDING) return 0; /* cancelled first: the task was told */
  if (t->state == AIO_CANCELLED) {
    lua_pushnil(L);
    aio_future_cancel(L, 2, 3);
    return 0;
  }
  lua_pushcfunction(L, push_results);
  lua_pushvalue(L, 1);
  if (lua_pcall(L, 1, LUA_MULTRET, 0) == LUA_OK)
    aio_future_set_results(L, 2, 3, lua_gettop(L) - 2);
  else
    aio_future_set_exc(L, 2, -1);
  return 0;
}

/* Cancelling the future cancels the task; upvalue 1: the task. */
static int chained_future_done(lua_State *L) {
  if (aio_check_future(L, 1)->state != AIO_CANCELLED) return 0;
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushnil(L);
  aio_future_cancel(L, -2, -1);
  return 0;
}

/* asyncio.run_coroutine_threadsafe(fn, loop, ...) -> the future of the task
 * running fn(...) on loop: nil in a job means the job's loop, elsewhere the
 * running one. */
static int l_run_coroutine_threadsafe(lua_State *L) {
  aio_loop *lp;
  int task;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if (lua_gettop(L) < 2) lua_settop(L, 2);
  if (lua_isnil(L, 2)) {
    aio_job *j = aio_job_current(L);
    if (j) return job_request(L, j);
    lp = aio_loop_of(L, aio_state_of(L));
  } else {
    lp = aio_check_loop(L, 2);
  }
  aio_loop_check_open(L, lp);
  lua_remove(L, 2);
  aio_task_create(L, lp, 1, lua_gettop(L) - 1);
  task = lua_gettop(L);
  aio_future_new(L, lp);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, chained_task_done, 1);
  add_done_callback(L, task);
  lua_pushvalue(L, task);
  lua_pushcclosure(L, chained_future_done, 1);
  add_done_callback(L, -2);
  return 1;
}

void aio_threadsafe_open(lua_State *L, aio_state *S) {
  static const luaL_Reg methods[] = {{"result", l_cf_result},
                                     {"exception", l_cf_exception},
                                     {"done", l_cf_done},
                                     {"cancelled", l_cf_cancelled},
                                     {"running", l_cf_running},
                                     {"cancel", l_cf_cancel},
                                     {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", l_cf_gc}, {"__tostring", l_cf_tostring}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"run_coroutine_threadsafe", l_run_coroutine_threadsafe},
                                   {NULL, NULL}};
  aio_newclass(L, S, AIO_T_CFUTURE, CFUTURE_MT, methods, meta);
  lua_pop(L, 1);
  aio_setfuncs(L, S, funcs);
}
