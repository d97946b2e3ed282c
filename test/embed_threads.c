/* embed_threads: the core keeps no global state. Two OS threads each open
 * their own lua_State with its own asyncio loop and run a busy workload (1000
 * tasks, sleeps, call_later timers, futures) at the same time. A third thread
 * posts C callbacks into loop 1 with asyncio_call_threadsafe while it runs,
 * and at the end wakes it from its poller: loop 1 then waits on a future that
 * only a posted callback resolves. Posting to the closed loop must fail with
 * UV_ECANCELED. */
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <unistd.h>

#include "harness.h"

#define NTASKS 1000
#define NPOSTS 200

typedef struct {
  int id;
  lua_Integer seed;
  pthread_t self;
  asyncio_loop *loop;
  double t_start, t_end;
  lua_Integer result;
  int closed_in_lua;
} worker;

static worker workers[2] = {{.id = 1, .seed = 7}, {.id = 2, .seed = 13}};

/* Both workers enter their loops together, so the two loops really overlap. */
static pthread_barrier_t start_line;
/* The handshakes between loop 1 (in Lua) and the poster thread. */
static sem_t loop1_busy, loop1_waiting, loop1_closed, poster_done;

/* Loop 1's thread alone touches these (posted callbacks run there). */
static int posted_ref = LUA_NOREF; /* registry ref (state 1) of the future to resolve */
static int posts_run;
static int posts_wrong; /* ran on another thread or state, or could not resolve */
static int posts_out_of_order;
static double resolved_at;

/* A C callback runs on the loop's own thread, with a thread of the loop's own
 * state, and gives the stack back as it found it. */
static int on_loop1(lua_State *L) {
  int ok;
  int top = lua_gettop(L);
  lua_getglobal(L, "state_id");
  ok = pthread_equal(pthread_self(), workers[0].self) && lua_tointeger(L, -1) == 1;
  lua_settop(L, top);
  return ok;
}

static void on_post(lua_State *L, void *data) {
  int i = (int)(intptr_t)data;
  if (!on_loop1(L)) posts_wrong++;
  if (i != posts_run) posts_out_of_order++;
  posts_run++;
}

static void resolve_posted(lua_State *L, void *data) {
  (void)data;
  if (!on_loop1(L)) posts_wrong++;
  lua_rawgeti(L, LUA_REGISTRYINDEX, posted_ref);
  lua_pushliteral(L, "posted");
  lua_pushinteger(L, posts_run);
  if (asyncio_future_set_result(L, -3, 2) != 0) posts_wrong++;
  lua_pop(L, 1);
  resolved_at = harness_now();
}

static int l_busy(lua_State *L) {
  (void)L;
  sem_post(&loop1_busy);
  return 0;
}

static int l_waiting(lua_State *L) {
  (void)L;
  sem_post(&loop1_waiting);
  return 0;
}

/* Each task sleeps, then waits on a future that a call_later timer resolves;
 * the sum of the results depends on the state's own seed, and every task
 * checks that the running loop is its own state's loop. */
static const char *workload =
    "local seed, id, ntasks = ...\n"
    "local loop = loop\n"
    "asyncio.set_event_loop(loop)\n"
    "local wrong_loop = 0\n"
    "local function job(i)\n"
    "  if asyncio.get_running_loop() ~= loop then wrong_loop = wrong_loop + 1 end\n"
    "  asyncio.sleep((i % 5) * 0.002)\n"
    "  local f = loop:create_future()\n"
    "  loop:call_later((i % 3) * 0.001, function() f:set_result(i * seed) end)\n"
    "  local v = f:await()\n"
    "  asyncio.sleep(0)\n"
    "  if asyncio.get_running_loop() ~= loop then wrong_loop = wrong_loop + 1 end\n"
    "  return v\n"
    "end\n"
    "local function main()\n"
    "  if id == 1 then busy() end\n"
    "  local tasks = {}\n"
    "  for i = 1, ntasks do tasks[i] = loop:create_task(job, i) end\n"
    "  local sum = 0\n"
    "  for i = 1, ntasks do sum = sum + tasks[i]:await() end\n"
    "  if id == 1 then\n"
    "    waiting()\n"
    "    local what, n = posted_future:await()\n"
    "    assert(what == 'posted', what)\n"
    "    posted_count = n\n"
    "  end\n"
    "  return sum\n"
    "end\n"
    "local sum = loop:run_until_complete(loop:create_task(main))\n"
    "assert(asyncio.get_event_loop() == loop)\n"
    "asyncio.set_event_loop(nil)\n"
    "loop:close()\n"
    "return sum, wrong_loop, loop:is_closed()\n";

static void *worker_main(void *arg) {
  worker *w = arg;
  lua_State *L;
  w->self = pthread_self();
  L = harness_state();
  lua_pushinteger(L, w->id);
  lua_setglobal(L, "state_id");
  w->loop = asyncio_loop_new(L, NULL);
  lua_setglobal(L, "loop");
  if (w->id == 1) {
    lua_register(L, "busy", l_busy);
    lua_register(L, "waiting", l_waiting);
    asyncio_future_new(L, w->loop);
    lua_pushvalue(L, -1);
    posted_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_setglobal(L, "posted_future");
  }
  lua_pushinteger(L, w->seed);
  lua_pushinteger(L, w->id);
  lua_pushinteger(L, NTASKS);
  pthread_barrier_wait(&start_line);
  w->t_start = harness_now();
  harness_run(L, "workload", workload, 3, 3);
  w->t_end = harness_now();
  w->result = lua_tointeger(L, -3);
  CHECK(lua_tointeger(L, -2) == 0, "state %d: every task saw its own state's running loop", w->id);
  w->closed_in_lua = lua_toboolean(L, -1);
  lua_pop(L, 3);
  if (w->id == 1) {
    CHECK(harness_global_int(L, "posted_count") == NPOSTS,
          "loop 1: the future resolved by a posted callback carries %d earlier posts",
          (int)harness_global_int(L, "posted_count"));
    luaL_unref(L, LUA_REGISTRYINDEX, posted_ref);
    /* the poster checks posting to the closed loop; the record must still
     * exist then, so the state is closed only after it is done */
    sem_post(&loop1_closed);
    sem_wait(&poster_done);
  }
  lua_close(L);
  return NULL;
}

static void *poster_main(void *arg) {
  asyncio_loop *loop1;
  double posted_at;
  int i, rc, failures = 0;
  (void)arg;
  sem_wait(&loop1_busy);
  loop1 = workers[0].loop;
  for (i = 0; i < NPOSTS; i++) {
    rc = asyncio_call_threadsafe(loop1, on_post, (void *)(intptr_t)i);
    if (rc != 0) failures++;
    /* spread the posts over the workload instead of one burst */
    if (i % 20 == 19) usleep(500);
  }
  CHECK(failures == 0, "poster: %d posts into running loop 1 accepted", NPOSTS);
  rc = asyncio_call_threadsafe(loop1, NULL, NULL);
  CHECK(rc == UV_EINVAL, "poster: a NULL callback is refused with UV_EINVAL");

  sem_wait(&loop1_waiting);
  /* loop 1 has nothing left but the future: give it time to block in its
   * poller, so that only the post itself can wake it */
  usleep(30 * 1000);
  posted_at = harness_now();
  rc = asyncio_call_threadsafe(loop1, resolve_posted, NULL);
  CHECK(rc == 0, "poster: posted the callback that resolves loop 1's future (rc %d)", rc);

  sem_wait(&loop1_closed);
  CHECK(resolved_at >= posted_at && resolved_at - posted_at < 1.0,
        "poster: the post woke loop 1 from its poller (%.1f ms later)",
        (resolved_at - posted_at) * 1e3);
  rc = asyncio_call_threadsafe(loop1, on_post, (void *)(intptr_t)-1);
  CHECK(rc == UV_ECANCELED, "poster: posting to the closed loop returns UV_ECANCELED (rc %d: %s)",
        rc, uv_err_name(rc));
  sem_post(&poster_done);
  return NULL;
}

int main(void) {
  pthread_t threads[3];
  const lua_Integer tri = (lua_Integer)NTASKS * (NTASKS + 1) / 2;
  int i, rc;
  alarm(HARNESS_ALARM_SECONDS);
  setvbuf(stdout, NULL, _IOLBF, 0);
  pthread_barrier_init(&start_line, NULL, 2);
  sem_init(&loop1_busy, 0, 0);
  sem_init(&loop1_waiting, 0, 0);
  sem_init(&loop1_closed, 0, 0);
  sem_init(&poster_done, 0, 0);

  for (i = 0; i < 2; i++) {
    rc = pthread_create(&threads[i], NULL, worker_main, &workers[i]);
    assert(rc == 0);
  }
  rc = pthread_create(&threads[2], NULL, poster_main, NULL);
  assert(rc == 0);
  for (i = 0; i < 3; i++) {
    rc = pthread_join(threads[i], NULL);
    assert(rc == 0);
  }

  for (i = 0; i < 2; i++) {
    worker *w = &workers[i];
    CHECK(w->result == w->seed * tri, "state %d: %d tasks summed to %lld (expected %lld)", w->id,
          NTASKS, (long long)w->result, (long long)(w->seed * tri));
    CHECK(w->closed_in_lua, "state %d: loop:close() from Lua closed the loop", w->id);
  }
  CHECK(workers[0].t_start < workers[1].t_end && workers[1].t_start < workers[0].t_end,
        "the two loops ran at the same time (%.1f-%.1f ms and %.1f-%.1f ms)", 0.0,
        (workers[0].t_end - workers[0].t_start) * 1e3,
        (workers[1].t_start - workers[0].t_start) * 1e3,
        (workers[1].t_end - workers[0].t_start) * 1e3);
  CHECK(posts_run == NPOSTS, "loop 1 ran all %d posted callbacks (%d)", NPOSTS, posts_run);
  CHECK(posts_wrong == 0, "every posted callback ran on loop 1's thread and state");
  CHECK(posts_out_of_order == 0, "posted callbacks ran in the order they were posted");

  pthread_barrier_destroy(&start_line);
  sem_destroy(&loop1_busy);
  sem_destroy(&loop1_waiting);
  sem_destroy(&loop1_closed);
  sem_destroy(&poster_done);
  printf("embed_threads: all checks passed\n");
  return 0;
}
