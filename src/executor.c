/* ThreadPoolExecutor: OS threads of our own, each running jobs in a Lua state
 * it keeps for its life; functions, arguments and results cross between the
 * states as copies (copy.h). Completions come back through the loop's one
 * uv_async_t, in a node embedded in the job.
 *
 * pthreads, not libuv's pool: its four threads also serve getaddrinfo and the
 * file system, so four long jobs would stall DNS (libuv#660). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lualib.h>

#include "executor.h"

#define EXECUTOR_MT "asyncio.ThreadPoolExecutor"
#define BROKEN_MSG "A thread initializer failed, the thread pool is not usable anymore"

enum { JOB_QUEUED, JOB_RUNNING, JOB_DONE };

/* The names a job's copy errors give: the API it came through, and where
 * its function is among that API's arguments. */
static const char *const kinds[] = {"submit", "to_thread", "run_in_executor", NULL};
static const int kind_argbase[] = {1, 1, 2};

typedef struct pool pool;
typedef struct tcall tcall;

struct aio_job {
  aio_post post; /* the completion, linked into the loop's posted list */
  pool *pl;
  aio_loop *lp;           /* NULL once the loop closed while the job ran */
  aio_job *next, *prev;   /* the pool's queue, under pl->mu */
  aio_job *lnext, *lprev; /* lp->jobs: the loop's thread only */
  aio_copybuf buf;        /* the function and arguments, then the outcome */
  const char *what;       /* kinds[]: names the API in copy errors */
  tcall *calls;           /* posted by the job and not run yet, under pl->mu */
  int fut_ref;
  uint8_t state;  /* JOB_*, under pl->mu */
  uint8_t result; /* AIO_OUT_* */
  double started; /* under pl->mu: for the shutdown warning */
  int line;
  char src[LUA_IDSIZE];
};

/* Shared by the Lua object, the workers and the jobs, each holding a
 * reference: freed by whichever lets go last, in any thread. */
struct pool {
  pthread_mutex_t mu;
  pthread_cond_t work; /* idle workers wait here for jobs */
  pthread_cond_t gone; /* _join waits here for the workers to exit */
  aio_job *head, *tail;
  int nqueue, nthreads, idle, max_workers, named;
  int refs;
  uint8_t shutdown, broken;
  char *broken_msg, *broken_tb; /* once broken, never changed */
  aio_copybuf init;             /* initializer and its arguments; len 0: none */
  char *path, *cpath;           /* the creating state's package.path, .cpath */
  char prefix[16];
};

/* The Lua object. `spare` is the job a submit is building: a memory error
 * while copying leaves it here, to be reused or freed by __gc. */
typedef struct {
  pool *pl;
  aio_job *spare;
} box;

static void pool_free(pool *pl) {
  pthread_mutex_destroy(&pl->mu);
  pthread_cond_destroy(&pl->work);
  pthread_cond_destroy(&pl->gone);
  aio_copybuf_free(&pl->init);
  free(pl->broken_msg);
  free(pl->broken_tb);
  free(pl->path);
  free(pl->cpath);
  free(pl);
}

/* Drops one reference of the pool's; pl->mu not held. */
static void pool_release(pool *pl) {
  int last;
  pthread_mutex_lock(&pl->mu);
  last = --pl->refs == 0;
  pthread_mutex_unlock(&pl->mu);
  if (last) pool_free(pl);
}

/* A call a running job posts to its loop (asyncio.call_soon_threadsafe in a
 * worker): a function and its arguments, copied; or the same as a request of
 * run_coroutine_threadsafe's. It belongs to the job until it has run; what
 * a closing loop never runs is dropped with it (drop_calls). Posts keep
 * their order, so each runs before its job's completion. */
struct tcall {
  aio_post post; /* embedded: the loop does not free it */
  aio_job *job;
  tcall *next, *prev; /* job->calls */
  aio_copybuf buf;
  aio_rfut *rf; /* run_coroutine_threadsafe's request, or NULL */
};

static void tcall_free(tcall *c) {
  aio_copybuf_free(&c->buf);
  free(c);
}

/* pl->mu held, or the job is out of every other thread's reach */
static void tcall_unlink(tcall *c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    c->job->calls = c->next;
  if (c->next) c->next->prev = c->prev;
}

static void tcall_run(lua_State *L, void *data);

/* Frees a list of calls that will never run: a request's worker wakes. */
static void drop_calls(tcall *c) {
  while (c) {
    tcall *next = c->next;
    if (c->rf) aio_rfut_drop(c->rf);
    tcall_free(c);
    c = next;
  }
}

/* No thread can reach j any more: its worker is done with it. */
static void job_free(aio_job *j) {
  drop_calls(j->calls);
  aio_copybuf_free(&j->buf);
  free(j);
}

static void dequeue(pool *pl, aio_job *j) {
  if (j->prev)
    j->prev->next = j->next;
  else
    pl->head = j->next;
  if (j->next)
    j->next->prev = j->prev;
  else
    pl->tail = j->prev;
  j->next = j->prev = NULL;
  pl->nqueue--;
}

static void loop_unlink(aio_job *j) {
  if (j->lprev)
    j->lprev->lnext = j->lnext;
  else
    j->lp->jobs = j->lnext;
  if (j->lnext) j->lnext->lprev = j->lprev;
}

static void job_done(lua_State *L, void *data);

/* Hands a job over to its loop (pl->mu held). A closed loop refuses it: the
 * loop's close (aio_executor_loop_close) frees it then, or has already
 * orphaned it (lp NULL), and then it is ours to free. */
static void complete_locked(pool *pl, aio_job *j) {
  j->state = JOB_DONE;
  if (!j->lp) {
    pl->refs--; /* never the last: the caller holds one */
    job_free(j);
    return;
  }
  j->post.fn = job_done;
  j->post.data = j;
  j->post.embedded = 1;
  aio_loop_post(j->lp, &j->post);
}

/* Every queued job gets `result` instead of running (pl->mu held). */
static void flush_queue_locked(pool *pl, uint8_t result) {
  while (pl->head) {
    aio_job *j = pl->head;
    dequeue(pl, j);
    aio_copybuf_reset(&j->buf);
    j->result = result;
    complete_locked(pl, j);
  }
}

/* ---- the worker thread ------------------------------------------------ */

/* The worker's stack between jobs: the function cache, then the two
 * closures (over the cache) that run a job and the initializer. */
#define W_CACHE 1
#define W_RUN_JOB 2
#define W_RUN_INIT 3

/* Where the message handler leaves the traceback of the last error: a
 * handler runs in a frame of its own, so it cannot write the caller's. */
static const char tb_key = 0;

/* The worker's registry holds the job it runs at this key while it runs. */
static const char job_key = 0;

static int worker_msgh(lua_State *L) {
  aio_traceback(L, L, NULL, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &tb_key);
  return 1;
}

/* Calls the function below its n arguments on top; on an error leaves the
 * error and the worker's traceback on top and returns 0. */
static int call_traced(lua_State *L, int n, int nres) {
  int fn = lua_gettop(L) - n;
  lua_pushcfunction(L, worker_msgh);
  lua_insert(L, fn);
  if (lua_pcall(L, n, nres, fn) == LUA_OK) {
    lua_remove(L, fn);
    return 1;
  }
  lua_remove(L, fn);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &tb_key);
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &tb_key);
  return 0;
}

/* ---- outcomes: values and errors between states (executor.h) --------- */

/* Pushes the fields of the error object at err but its message, only its
 * scalar ones if asked, with `traceback` the one at tb (the worker's, or
 * nil) if it has no string one. */
static void push_fields(lua_State *L, int err, int tb, int scalars_only) {
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, err)) {
    int t = lua_type(L, -1);
    if ((lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), "message") == 0) ||
        (scalars_only && t != LUA_TBOOLEAN && t != LUA_TNUMBER && t != LUA_TSTRING)) {
      lua_pop(L, 1);
      continue;
    }
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  if (lua_getfield(L, -1, "traceback") != LUA_TSTRING) {
    lua_pushvalue(L, tb);
    lua_setfield(L, -3, "traceback");
  }
  lua_pop(L, 1);
}

/* An error object of asyncio's own classes (errors.is_error in this
 * state): the loop's state rebuilds it by its class name. */
static int is_asyncio_error(lua_State *L, int err) {
  int yes;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "asyncio.errors");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_istable(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  lua_getfield(L, -1, "is_error");
  lua_pushvalue(L, err);
  yes = lua_pcall(L, 1, 1, 0) == LUA_OK && lua_toboolean(L, -1);
  lua_pop(L, 2);
  return yes;
}

uint8_t aio_outcome_encode_error(lua_State *L, int err, aio_copybuf *b, const char *what) {
  int tb = err + 1;
  if (lua_istable(L, err) && lua_getmetatable(L, err)) {
    lua_getfield(L, -1, "__name");
    if (lua_type(L, -1) == LUA_TSTRING && is_asyncio_error(L, err)) {
      int scalars;
      for (scalars = 0; scalars < 2; scalars++) {
        lua_settop(L, tb);
        lua_getmetatable(L, err);
        lua_getfield(L, -1, "__name");
        lua_remove(L, -2);
        lua_getfield(L, err, "message");
        push_fields(L, err, tb, scalars);
        if (aio_copy_encode(L, tb + 1, 3, b, what, 1, 0) == 0) return AIO_OUT_CLASS;
      }
    }
  } else if (aio_copy_encode(L, err, 2, b, what, 1, 0) == 0) {
    return AIO_OUT_VALUE;
  }
  lua_settop(L, tb);
  luaL_tolstring(L, err, NULL);
  lua_pushvalue(L, tb);
  aio_copy_encode(L, -2, 2, b, what, 1, 0);
  return AIO_OUT_VALUE;
}

uint8_t aio_outcome_encode_results(lua_State *L, int first, int n, aio_copybuf *b,
                                   const char *what) {
  const char *msg;
  size_t wlen = strlen(what), plen = wlen + sizeof ": argument " - 1;
  if (aio_copy_encode(L, first, n, b, what, 1, 0) == 0) return AIO_OUT_OK;
  /* "<what>: argument 1 .x: function" is about a result here */
  msg = lua_tostring(L, -1);
  if (strncmp(msg, what, wlen) == 0 && strncmp(msg + wlen, ": argument ", plen - wlen) == 0)
    lua_pushfstring(L, "%s: result %s", what, msg + plen);
  lua_pushnil(L);
  aio_copy_encode(L, -2, 2, b, what, 1, 0);
  return AIO_OUT_VALUE;
}

int aio_outcome_push(lua_State *L, uint8_t out, const aio_copybuf *b) {
  int base = lua_gettop(L) + 1, n;
  if (out == AIO_OUT_NOMEM) {
    lua_pushliteral(L, "not enough memory");
    return -1;
  }
  if (out == AIO_OUT_CLOSED) {
    lua_pushliteral(L, "Event loop is closed");
    aio_push_error(L, "RuntimeError", -1);
    lua_replace(L, base);
    return -1;
  }
  n = aio_copy_decode(L, b->data, b->len, 0);
  if (out == AIO_OUT_OK) return n;
  if (out == AIO_OUT_VALUE && lua_istable(L, base)) {
    if (lua_getfield(L, base, "traceback") == LUA_TNIL) {
      lua_pushvalue(L, base + 1);
      lua_setfield(L, base, "traceback");
    }
    lua_settop(L, base);
    return -1;
  }
  aio_push_hook(L, aio_get_state(L), "new_error");
  if (out == AIO_OUT_VALUE) {
    /* a string (or number...) cannot carry the traceback: it comes as a
     * RuntimeError whose message it is, the value in `value` */
    lua_pushliteral(L, "RuntimeError");
    luaL_tolstring(L, base, NULL);
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, base);
    lua_setfield(L, -2, "value");
    lua_pushvalue(L, base + 1);
    lua_setfield(L, -2, "traceback");
  } else { /* AIO_OUT_CLASS: name, message, fields (with the traceback) */
    lua_pushvalue(L, base);
    lua_pushvalue(L, base + 1);
    lua_pushvalue(L, base + 2);
  }
  lua_call(L, 3, 1); /* fields.traceback becomes the object's */
  lua_replace(L, base);
  lua_settop(L, base);
  return -1;
}

/* ---- the worker thread, continued -------------------------------------- */

/* run_job(job), under lua_pcall in the worker: decode, call, encode the
 * outcome into the job's buffer. */
static int run_job(lua_State *L) {
  aio_job *j = lua_touserdata(L, 1);
  int n = aio_copy_decode(L, j->buf.data, j->buf.len, lua_upvalueindex(1));
  aio_copybuf_reset(&j->buf);
  lua_pushlightuserdata(L, j);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &job_key);
  n = call_traced(L, n - 1, LUA_MULTRET);
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &job_key);
  if (!n)
    j->result = aio_outcome_encode_error(L, lua_gettop(L) - 1, &j->buf, j->what);
  else
    j->result = aio_outcome_encode_results(L, 2, lua_gettop(L) - 1, &j->buf, j->what);
  return 0;
}

/* run_init(pool) -> nothing, or the error's tostring and traceback */
static int run_init(lua_State *L) {
  pool *pl = lua_touserdata(L, 1);
  int n = aio_copy_decode(L, pl->init.data, pl->init.len, lua_upvalueindex(1));
  if (call_traced(L, n - 1, 0)) return 0;
  luaL_tolstring(L, -2, NULL);
  lua_insert(L, -2);
  return 2;
}

/* Marks the pool broken (pl->mu held): as Python's BrokenThreadPool, every
 * job queued or submitted later fails with the initializer's error. */
static void set_broken_locked(pool *pl, const char *msg, const char *tb) {
  if (pl->broken) return;
  pl->broken_msg = strdup(msg);
  pl->broken_tb = tb ? strdup(tb) : NULL;
  pl->broken = 1;
  pthread_cond_broadcast(&pl->work);
}

/* setup(pool) -> the cache and the two closures (W_*), under lua_pcall */
static int setup(lua_State *L) {
  pool *pl = lua_touserdata(L, 1);
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  if (pl->path) {
    lua_pushstring(L, pl->path);
    lua_setfield(L, -2, "path");
  }
  if (pl->cpath) {
    lua_pushstring(L, pl->cpath);
    lua_setfield(L, -2, "cpath");
  }
  /* the core a job requires is this one, the loop's, even for a host that
   * links it in and has no core.so: job_key and the tags are the same */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_asyncio_core);
  lua_setfield(L, -2, "asyncio.core");
  lua_settop(L, 0);
  lua_newtable(L);
  lua_pushvalue(L, W_CACHE);
  lua_pushcclosure(L, run_job, 1);
  lua_pushvalue(L, W_CACHE);
  lua_pushcclosure(L, run_init, 1);
  return 3;
}

/* A state with the standard libraries, the creating state's package paths
 * and the W_* slots; the initializer has run in it. NULL: no state, and the
 * pool is broken. */
static lua_State *worker_state(pool *pl) {
  lua_State *L = luaL_newstate();
  const char *err = "not enough memory for a worker's Lua state";
  if (L) {
    lua_pushcfunction(L, setup);
    lua_pushlightuserdata(L, pl);
    if (lua_pcall(L, 1, 3, 0) == LUA_OK) {
      if (pl->init.len == 0) return L;
      lua_pushvalue(L, W_RUN_INIT);
      lua_pushlightuserdata(L, pl);
      if (lua_pcall(L, 1, 2, 0) != LUA_OK) {
        lua_pushnil(L);
      } else if (lua_isnil(L, -2)) {
        lua_settop(L, W_RUN_INIT);
        return L;
      }
      err = lua_tostring(L, -2) ? lua_tostring(L, -2) : err;
      pthread_mutex_lock(&pl->mu);
      set_broken_locked(pl, err, lua_tostring(L, -1));
      pthread_mutex_unlock(&pl->mu);
      lua_close(L);
      return NULL;
    }
    lua_close(L);
  }
  pthread_mutex_lock(&pl->mu);
  set_broken_locked(pl, err, NULL);
  pthread_mutex_unlock(&pl->mu);
  return NULL;
}

/* Takes jobs until the pool is shut down and its queue empty, or broken. */
static void *worker_main(void *arg) {
  pool *pl = arg;
  lua_State *L;
  int last;
  char name[32];
  pthread_mutex_lock(&pl->mu);
  snprintf(name, sizeof name, "%s_%d", pl->prefix, pl->named++);
  pthread_mutex_unlock(&pl->mu);
  name[15] = '\0'; /* the kernel's limit */
  pthread_setname_np(pthread_self(), name);
  L = worker_state(pl);
  pthread_mutex_lock(&pl->mu);
  for (;;) {
    aio_job *j;
    while (!pl->head && !pl->shutdown && !pl->broken) {
      pl->idle++;
      pthread_cond_wait(&pl->work, &pl->mu);
      pl->idle--;
    }
    if (pl->broken) {
      flush_queue_locked(pl, AIO_OUT_BROKEN);
      break;
    }
    if ((j = pl->head) == NULL) break; /* shut down, nothing left */
    dequeue(pl, j);
    j->state = JOB_RUNNING;
    j->started = aio_real_time(); /* whatever the loop's clock */
    pthread_mutex_unlock(&pl->mu);
    lua_pushvalue(L, W_RUN_JOB);
    lua_pushlightuserdata(L, j);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
      aio_copybuf_reset(&j->buf);
      j->result = AIO_OUT_NOMEM;
    }
    lua_settop(L, W_RUN_INIT);
    pthread_mutex_lock(&pl->mu);
    complete_locked(pl, j);
  }
  pthread_mutex_unlock(&pl->mu);
  if (L) lua_close(L);
  pthread_mutex_lock(&pl->mu);
  pl->nthreads--;
  last = --pl->refs == 0;
  pthread_cond_broadcast(&pl->gone);
  pthread_mutex_unlock(&pl->mu);
  if (last) pool_free(pl);
  return NULL;
}

/* pl->mu held */
static int start_worker(pool *pl) {
  pthread_attr_t attr;
  pthread_t t;
  int rc;
  /* a detached worker may still run when the state that loaded this module
   * closes (a job stuck past asyncio.run's bounded wait) */
  aio_pin_module();
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  rc = pthread_create(&t, &attr, worker_main, pl);
  pthread_attr_destroy(&attr);
  if (rc == 0) {
    pl->nthreads++;
    pl->refs++;
  }
  return rc;
}

/* ---- calls from a job to its loop -------------------------------------- */

aio_job *aio_job_current(lua_State *L) {
  aio_job *j;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &job_key);
  j = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return j;
}

/* encode(tcall, what, fn, ...) under lua_pcall: a memory error must not lose c */
static int encode_call(lua_State *L) {
  tcall *c = lua_touserdata(L, 1);
  if (aio_copy_encode(L, 3, lua_gettop(L) - 2, &c->buf, lua_touserdata(L, 2), 1,
                      AIO_COPY_FUNCTION) != 0)
    return lua_error(L);
  return 0;
}

int aio_job_post(lua_State *L, aio_job *j, int first, const char *what, aio_rfut *rf) {
  pool *pl = j->pl;
  tcall *c;
  int rc = UV_ECANCELED;
  if ((c = calloc(1, sizeof *c)) == NULL) {
    lua_pushliteral(L, "not enough memory");
    return -1;
  }
  lua_pushcfunction(L, encode_call);
  lua_pushlightuserdata(L, c);
  lua_pushlightuserdata(L, (void *)what);
  lua_rotate(L, first, 3);
  if (lua_pcall(L, lua_gettop(L) - first, 0, 0) != LUA_OK) {
    tcall_free(c);
    return -1;
  }
  c->job = j;
  c->rf = rf;
  c->post.fn = tcall_run;
  c->post.data = c;
  c->post.embedded = 1;
  pthread_mutex_lock(&pl->mu);
  if (j->lp) {
    c->next = j->calls;
    if (j->calls) j->calls->prev = c;
    j->calls = c;
    if ((rc = aio_loop_post(j->lp, &c->post)) == UV_ECANCELED) tcall_unlink(c);
  }
  pthread_mutex_unlock(&pl->mu);
  if (rc == UV_ECANCELED) {
    tcall_free(c);
    return UV_ECANCELED;
  }
  return 0;
}

/* core.job_call_soon_threadsafe(fn, ...) -> true once posted to the loop that
 * submitted the running job; false outside a job (the caller then uses the
 * running loop). A worker holds no loop object: this is its
 * loop:call_soon_threadsafe. */
static int l_job_call_soon(lua_State *L) {
  aio_job *j = aio_job_current(L);
  int rc;
  if (!j) {
    lua_pushboolean(L, 0);
    return 1;
  }
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if ((rc = aio_job_post(L, j, 1, "call_soon_threadsafe", NULL)) == -1) return lua_error(L);
  if (rc == UV_ECANCELED) return aio_raise(L, "RuntimeError", "Event loop is closed");
  lua_pushboolean(L, 1);
  return 1;
}

/* deliver_call(tcall) under lua_pcall in the loop's thread */
static int deliver_call(lua_State *L) {
  tcall *c = lua_touserdata(L, 1);
  aio_copy_decode(L, c->buf.data, c->buf.len, 0);
  aio_call_reporting(L, c->job->lp, 2, "callback", NULL, 0);
  return 0;
}

static void tcall_run(lua_State *L, void *data) {
  tcall *c = data;
  aio_loop *lp = c->job->lp;
  int top = lua_gettop(L);
  pthread_mutex_lock(&c->job->pl->mu);
  tcall_unlink(c);
  pthread_mutex_unlock(&c->job->pl->mu);
  if (c->rf) {
    aio_rfut_run(L, lp, c->rf, &c->buf);
  } else {
    lua_pushcfunction(L, deliver_call);
    lua_pushlightuserdata(L, c);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) /* decoding ran out of memory */
      aio_report_callback_error(L, lp, lua_gettop(L), "Exception in callback", NULL, 0);
    lua_settop(L, top);
  }
  tcall_free(c);
}

/* ---- the loop's side --------------------------------------------------- */

static void check_waiters(lua_State *L, aio_loop *lp);

/* Completion, in the loop's thread: the outcome becomes the future's. */
static int deliver(lua_State *L) {
  aio_job *j = lua_touserdata(L, 2);
  int n;
  if (j->result == AIO_OUT_CANCEL) {
    lua_pushnil(L);
    aio_future_cancel(L, 1, -1);
    return 0;
  }
  if (j->result == AIO_OUT_BROKEN) {
    pool *pl = j->pl;
    aio_push_hook(L, aio_get_state(L), "new_error");
    lua_pushliteral(L, "BrokenThreadPool");
    lua_pushfstring(L, "%s: %s", BROKEN_MSG, pl->broken_msg ? pl->broken_msg : "?");
    lua_createtable(L, 0, 1);
    if (pl->broken_tb) {
      lua_pushstring(L, pl->broken_tb);
      lua_setfield(L, -2, "traceback");
    }
    lua_call(L, 3, 1);
    aio_future_set_exc(L, 1, -1);
    return 0;
  }
  n = aio_outcome_push(L, j->result, &j->buf);
  if (n >= 0)
    aio_future_set_results(L, 1, 3, n);
  else
    aio_future_set_exc(L, 1, -1);
  return 0;
}

static void job_done(lua_State *L, void *data) {
  aio_job *j = data;
  aio_loop *lp = j->lp;
  aio_future *f;
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, j->fut_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, j->fut_ref);
  f = lua_touserdata(L, -1);
  loop_unlink(j);
  if (f->state == AIO_PENDING) {
    f->flags &= (uint8_t)~AIO_F_JOB;
    lua_pushcfunction(L, deliver);
    lua_pushvalue(L, top + 1);
    lua_pushlightuserdata(L, j);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK && f->state == AIO_PENDING)
      aio_future_set_exc(L, top + 1, -1);
  }
  lua_settop(L, top);
  pool_release(j->pl);
  job_free(j);
  if (lp->job_waiters != LUA_NOREF) check_waiters(L, lp);
}

/* Future:cancel() of a job's future: a queued job is taken out and never
 * runs; a running one runs to its end, its outcome dropped. */
void aio_executor_cancel(lua_State *L, int fut_idx) {
  aio_future *f = lua_touserdata(L, fut_idx);
  aio_job *j;
  int queued;
  f->flags &= (uint8_t)~AIO_F_JOB;
  lua_getiuservalue(L, fut_idx, 1);
  j = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!j) return;
  pthread_mutex_lock(&j->pl->mu);
  queued = j->state == JOB_QUEUED;
  if (queued) dequeue(j->pl, j);
  pthread_mutex_unlock(&j->pl->mu);
  if (!queued) return;
  luaL_unref(L, LUA_REGISTRYINDEX, j->fut_ref);
  loop_unlink(j);
  pool_release(j->pl);
  job_free(j);
}

/* Loop close: queued and done jobs go, running ones are orphaned (their
 * worker frees them), calls not run yet are dropped, and no future points
 * to a job any more; nor does a worker wait on a task of the loop's. */
void aio_executor_loop_close(lua_State *L, aio_loop *lp) {
  aio_job *j, *next;
  for (j = lp->jobs; j; j = next) {
    pool *pl = j->pl;
    aio_future *f;
    tcall *calls;
    int running, last = 0;
    next = j->lnext;
    lua_rawgeti(L, LUA_REGISTRYINDEX, j->fut_ref);
    if ((f = lua_touserdata(L, -1)) != NULL) f->flags &= (uint8_t)~AIO_F_JOB;
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, j->fut_ref);
    pthread_mutex_lock(&pl->mu);
    if (j->state == JOB_QUEUED) dequeue(pl, j);
    calls = j->calls; /* now, not with the job: its worker may wait on one */
    j->calls = NULL;
    running = j->state == JOB_RUNNING;
    if (running)
      j->lp = NULL;
    else
      last = --pl->refs == 0;
    pthread_mutex_unlock(&pl->mu);
    drop_calls(calls);
    if (!running) {
      job_free(j);
      if (last) pool_free(pl);
    }
  }
  lp->jobs = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, lp->job_waiters);
  lp->job_waiters = LUA_NOREF;
  aio_rfut_loop_close(L, lp);
}

static int loop_has_jobs_of(const aio_loop *lp, const pool *pl) {
  aio_job *j;
  for (j = lp->jobs; j; j = j->lnext)
    if (j->pl == pl) return 1;
  return 0;
}

/* Resolves the _drain() futures whose pool has no job of this loop left. */
static void check_waiters(lua_State *L, aio_loop *lp) {
  int top = lua_gettop(L), left = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, lp->job_waiters);
  lua_pushnil(L);
  while (lua_next(L, top + 1)) {
    if (loop_has_jobs_of(lp, lua_touserdata(L, -1))) {
      left = 1;
      lua_pop(L, 1);
      continue;
    }
    lua_pop(L, 1);
    if (((aio_future *)lua_touserdata(L, -1))->state == AIO_PENDING)
      aio_future_set_results(L, -1, -1, 0);
    lua_pushvalue(L, -1);
    lua_pushnil(L);
    lua_rawset(L, top + 1);
  }
  if (!left) {
    luaL_unref(L, LUA_REGISTRYINDEX, lp->job_waiters);
    lp->job_waiters = LUA_NOREF;
  }
  lua_settop(L, top);
}

/* ---- Lua methods -------------------------------------------------------- */

static box *check_box(lua_State *L) {
  return aio_checkudata(L, 1, AIO_T_EXECUTOR, AIO_T_EXECUTOR, "ThreadPoolExecutor");
}

static pool *check_pool(lua_State *L) {
  box *b = check_box(L);
  if (!b->pl) luaL_argerror(L, 1, "executor is released");
  return b->pl;
}

/* The hot path: copy, enqueue, wake a worker (or start one). The copy is
 * made, and refused, before anything is queued. */
static int submit(lua_State *L, box *b, int kind, int fn) {
  aio_loop *lp = aio_loop_of(L, aio_state_of(L));
  pool *pl = b->pl;
  aio_future *f;
  aio_job *j;
  lua_Debug ar;
  int rc = 0, shutdown, broken;
  luaL_checktype(L, fn, LUA_TFUNCTION);
  pthread_mutex_lock(&pl->mu);
  shutdown = pl->shutdown;
  broken = pl->broken;
  pthread_mutex_unlock(&pl->mu);
  if (broken)
    return aio_raise(L, "BrokenThreadPool", "%s: %s", BROKEN_MSG,
                     pl->broken_msg ? pl->broken_msg : "?");
  if (shutdown) return aio_raise(L, "RuntimeError", "cannot schedule new futures after shutdown");
  if (!b->spare && (b->spare = calloc(1, sizeof *j)) == NULL)
    return luaL_error(L, "not enough memory");
  j = b->spare;
  aio_copybuf_reset(&j->buf); /* a copy a memory error cut short */
  j->what = kinds[kind];
  if (aio_copy_encode(L, fn, lua_gettop(L) - fn + 1, &j->buf, j->what, kind_argbase[kind],
                      AIO_COPY_FUNCTION) != 0)
    return lua_error(L);
  lua_pushvalue(L, fn);
  lua_getinfo(L, ">S", &ar);
  memcpy(j->src, ar.short_src, sizeof j->src);
  j->line = ar.linedefined;
  f = aio_future_new(L, lp);
  lua_pushvalue(L, -1);
  j->fut_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* the last step that may raise */
  b->spare = NULL;
  j->pl = pl;
  j->lp = lp;
  lua_pushlightuserdata(L, j);
  lua_setiuservalue(L, -2, 1);
  f->flags |= AIO_F_JOB;
  j->lnext = lp->jobs;
  if (lp->jobs) lp->jobs->lprev = j;
  lp->jobs = j;
  pthread_mutex_lock(&pl->mu);
  pl->refs++;
  j->prev = pl->tail;
  if (pl->tail)
    pl->tail->next = j;
  else
    pl->head = j;
  pl->tail = j;
  pl->nqueue++;
  /* a worker woken but not running yet takes a queued job first: wake one
   * while the idle outnumber the waiting jobs, else start one */
  if (pl->idle >= pl->nqueue)
    pthread_cond_signal(&pl->work);
  else if (pl->nthreads < pl->max_workers)
    rc = start_worker(pl);
  if (rc != 0 && pl->nthreads > 0) rc = 0; /* a running worker takes it later */
  pthread_mutex_unlock(&pl->mu);
  if (rc != 0) {
    lua_pushnil(L);
    aio_future_cancel(L, -2, -1); /* takes the job out of the queue */
    return aio_raise_os(L, uv_translate_sys_error(rc), "cannot start a worker thread");
  }
  return 1;
}

/* executor:submit(fn, ...) -> Future of the running loop */
static int l_submit(lua_State *L) {
  box *b = check_box(L);
  check_pool(L);
  return submit(L, b, 0, 2);
}

/* executor:_submit(kind, fn, ...): to_thread and run_in_executor, whose
 * copy errors name them */
static int l_submit_as(lua_State *L) {
  box *b = check_box(L);
  check_pool(L);
  return submit(L, b, luaL_checkoption(L, 2, NULL, kinds), 3);
}

/* executor:_shutdown(cancel_futures): no new jobs; with cancel_futures the
 * queued ones are cancelled (through their loops, as their completion);
 * the workers exit once the queue is empty. Never blocks. */
static int l_shutdown(lua_State *L) {
  pool *pl = check_pool(L);
  int cancel = lua_toboolean(L, 2);
  pthread_mutex_lock(&pl->mu);
  pl->shutdown = 1;
  if (cancel) flush_queue_locked(pl, AIO_OUT_CANCEL);
  pthread_cond_broadcast(&pl->work);
  pthread_mutex_unlock(&pl->mu);
  return 0;
}

/* executor:_join(): blocks until every worker exited (outside a loop only:
 * the Lua side never calls it from a running one) */
static int l_join(lua_State *L) {
  pool *pl = check_pool(L);
  pthread_mutex_lock(&pl->mu);
  while (pl->nthreads > 0) pthread_cond_wait(&pl->gone, &pl->mu);
  pthread_mutex_unlock(&pl->mu);
  return 0;
}

/* executor:_drain() -> Future of the running loop, resolved once it has no
 * job of this executor's left (running ones included, cancelled or not) */
static int l_drain(lua_State *L) {
  pool *pl = check_pool(L);
  aio_loop *lp = aio_loop_of(L, aio_state_of(L));
  aio_future_new(L, lp);
  if (!loop_has_jobs_of(lp, pl)) {
    aio_future_set_results(L, -1, -1, 0);
    return 1;
  }
  if (lp->job_waiters == LUA_NOREF) {
    lua_newtable(L);
    lp->job_waiters = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, lp->job_waiters);
  lua_pushvalue(L, -2);
  lua_pushlightuserdata(L, pl);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  return 1;
}

/* executor:_running() -> list of {source = "file:line", secs = running
 * for, or nil while queued} of the running loop's jobs of this executor */
static int l_running(lua_State *L) {
  pool *pl = check_pool(L);
  aio_loop *lp = aio_loop_of(L, aio_state_of(L));
  double t = aio_real_time();
  aio_job *j;
  int i = 0;
  lua_newtable(L);
  for (j = lp->jobs; j; j = j->lnext) {
    int running;
    double started;
    if (j->pl != pl) continue;
    pthread_mutex_lock(&pl->mu);
    running = j->state == JOB_RUNNING;
    started = j->started;
    pthread_mutex_unlock(&pl->mu);
    lua_createtable(L, 0, 2);
    lua_pushfstring(L, "%s:%d", j->src, j->line);
    lua_setfield(L, -2, "source");
    if (running) {
      lua_pushnumber(L, t - started);
      lua_setfield(L, -2, "secs");
    }
    lua_rawseti(L, -2, ++i);
  }
  return 1;
}

static int l_gc(lua_State *L) {
  box *b = lua_touserdata(L, 1);
  pool *pl = b->pl;
  if (b->spare) job_free(b->spare);
  b->spare = NULL;
  if (!pl) return 0;
  b->pl = NULL;
  pthread_mutex_lock(&pl->mu);
  pl->shutdown = 1;
  pthread_cond_broadcast(&pl->work);
  pthread_mutex_unlock(&pl->mu);
  pool_release(pl);
  return 0;
}

static int l_tostring(lua_State *L) {
  pool *pl = check_pool(L);
  int n, idle, q, shut;
  pthread_mutex_lock(&pl->mu);
  n = pl->nthreads;
  idle = pl->idle;
  q = pl->nqueue;
  shut = pl->shutdown;
  pthread_mutex_unlock(&pl->mu);
  lua_pushfstring(L, "<ThreadPoolExecutor max_workers=%d threads=%d idle=%d queued=%d%s>",
                  pl->max_workers, n, idle, q, shut ? " shutdown" : "");
  return 1;
}

static char *dup_package_field(lua_State *L, const char *k) {
  int top = lua_gettop(L);
  char *s = NULL;
  if (lua_getglobal(L, "package") == LUA_TTABLE && lua_getfield(L, -1, k) == LUA_TSTRING)
    s = strdup(lua_tostring(L, -1));
  lua_settop(L, top);
  return s;
}

/* ThreadPoolExecutor_new(max_workers|nil, thread_name_prefix|nil,
 * initializer|nil, initargs list|nil). The initializer is argument 1 of
 * its copy errors, initargs[i] argument i + 1. */
static int l_new(lua_State *L) {
  lua_Integer max = luaL_optinteger(L, 1, 0);
  const char *prefix = luaL_optstring(L, 2, "asyncio");
  box *b;
  pool *pl;
  luaL_argcheck(L, lua_isnoneornil(L, 1) || max > 0, 1, "max_workers must be greater than 0");
  luaL_argcheck(L, max <= 4096, 1, "max_workers must be at most 4096");
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TFUNCTION);
  if (!lua_isnoneornil(L, 4)) luaL_checktype(L, 4, LUA_TTABLE);
  lua_settop(L, 4);
  if (max == 0) { /* Python's default */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    max = ncpu < 1 ? 5 : ncpu + 4 > 32 ? 32 : ncpu + 4;
  }
  b = lua_newuserdatauv(L, sizeof *b, 0);
  b->pl = NULL;
  b->spare = NULL;
  aio_setmetatable(L, aio_state_of(L), AIO_T_EXECUTOR);
  if ((pl = calloc(1, sizeof *pl)) == NULL) return luaL_error(L, "not enough memory");
  pl->max_workers = (int)max;
  pl->refs = 1;
  snprintf(pl->prefix, sizeof pl->prefix, "%s", prefix);
  pthread_mutex_init(&pl->mu, NULL);
  pthread_cond_init(&pl->work, NULL);
  pthread_cond_init(&pl->gone, NULL);
  b->pl = pl; /* from here on __gc frees it, whatever raises */
  pl->path = dup_package_field(L, "path");
  pl->cpath = dup_package_field(L, "cpath");
  if (!lua_isnil(L, 3)) {
    int n = 0;
    lua_pushvalue(L, 3);
    if (!lua_isnil(L, 4)) {
      n = (int)luaL_len(L, 4);
      luaL_checkstack(L, n, "too many initargs");
      for (int i = 1; i <= n; i++) lua_geti(L, 4, i);
    }
    if (aio_copy_encode(L, 6, n + 1, &pl->init, "initializer", 1, AIO_COPY_FUNCTION) != 0)
      return lua_error(L);
  }
  lua_settop(L, 5);
  return 1;
}

static int l_isexecutor(lua_State *L) {
  lua_pushboolean(L, aio_testudata(L, 1, AIO_T_EXECUTOR, AIO_T_EXECUTOR) != NULL);
  return 1;
}

void aio_executor_open(lua_State *L, aio_state *S) {
  static const luaL_Reg methods[] = {
      {"submit", l_submit}, {"_submit", l_submit_as}, {"_shutdown", l_shutdown},
      {"_join", l_join},    {"_drain", l_drain},      {"_running", l_running},
      {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", l_gc}, {"__tostring", l_tostring}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"ThreadPoolExecutor_new", l_new},
                                   {"isexecutor", l_isexecutor},
                                   {"job_call_soon_threadsafe", l_job_call_soon},
                                   {NULL, NULL}};
  aio_newclass(L, S, AIO_T_EXECUTOR, EXECUTOR_MT, methods, meta);
  lua_setfield(L, -2, "ThreadPoolExecutor");
  aio_setfuncs(L, S, funcs);
}
