/* thread_check: loop methods that are not thread-safe (call_soon, call_later,
 * call_at, create_future, asyncio.Future, create_task, asyncio.create_task)
 * raise Python's RuntimeError when called from another OS thread than the one
 * running the loop, and work from any thread while it is not running.
 *
 * A Lua state must never be entered by two threads at once, so the test plays
 * a host that hands its state from thread to thread: thread A runs the loop
 * and blocks in its poller (a uv_prepare handle, the last thing before the
 * poll, tells B when: A runs no Lua until an event wakes it); thread B then
 * calls into the same state through a Lua thread of its own, and finally
 * wakes A with asyncio_call_threadsafe, the one call meant for other threads.
 * The mistake caught is real: a call_soon from B would not wake A's poller.
 * Then, with the loop stopped, B may use it, and even run it itself (a host
 * may run a loop in another thread than the one that made it). */
#include <pthread.h>
#include <semaphore.h>
#include <unistd.h>

#include "harness.h"

static lua_State *L_main;
static int co_ref = LUA_NOREF; /* the Lua thread B calls through */
static int fut_ref = LUA_NOREF;
static asyncio_loop *loop;
static uv_prepare_t prepare;
static int main_waits; /* set by Lua (thread A) before it awaits */
static sem_t a_polling, a_stopped, b_done;

static int l_waiting(lua_State *L) {
  (void)L;
  main_waits = 1;
  return 0;
}

/* runs in thread A right before it blocks in the poller */
static void on_prepare(uv_prepare_t *h) {
  (void)h;
  if (main_waits) {
    main_waits = 0;
    sem_post(&a_polling);
  }
}

static void resolve(lua_State *L, void *data) {
  (void)data;
  lua_rawgeti(L, LUA_REGISTRYINDEX, fut_ref);
  lua_pushliteral(L, "woken");
  asyncio_future_set_result(L, -2, 1);
  lua_pop(L, 1);
}

/* Each call from the wrong thread must raise RuntimeError with Python's text;
 * returns the number of calls that did, and the first message. */
static const char *from_b_running =
    "local calls = {\n"
    "  function() loop:call_soon(print) end,\n"
    "  function() loop:call_later(1, print) end,\n"
    "  function() loop:call_at(0, print) end,\n"
    "  function() loop:create_future() end,\n"
    "  function() asyncio.Future(loop) end,\n"
    "  function() loop:create_task(function() end) end,\n"
    "  function() asyncio.create_task(function() end) end,\n"
    "}\n"
    "local refused, msg = 0\n"
    "for _, f in ipairs(calls) do\n"
    "  local ok, err = pcall(f)\n"
    "  if not ok and asyncio.isinstance(err, asyncio.RuntimeError) then\n"
    "    refused = refused + 1\n"
    "    msg = msg or err.message\n"
    "  end\n"
    "end\n"
    "-- the thread-safe and read-only ones still work\n"
    "local fine = loop:is_running() and loop:time() > 0 and not loop:is_closed()\n"
    "return refused, #calls, msg, fine\n";

static const char *from_b_stopped = "local ran = 0\n"
                                    "loop:call_soon(function() ran = ran + 1 end)\n"
                                    "loop:run_until_complete(function()\n"
                                    "  loop:call_soon(function() ran = ran + 1 end)\n"
                                    "  asyncio.create_task(function() ran = ran + 1 end):await()\n"
                                    "  asyncio.sleep(0)\n"
                                    "end)\n"
                                    "return ran\n";

static void *thread_b(void *arg) {
  lua_State *co;
  int rc;
  (void)arg;
  sem_wait(&a_polling);
  lua_rawgeti(L_main, LUA_REGISTRYINDEX, co_ref); /* A runs no Lua now */
  co = lua_tothread(L_main, -1);
  lua_pop(L_main, 1);
  harness_run(co, "from_b_running", from_b_running, 0, 4);
  CHECK(lua_tointeger(co, -4) == lua_tointeger(co, -3),
        "B, loop running in A: %d of %d non-thread-safe calls raise RuntimeError",
        (int)lua_tointeger(co, -4), (int)lua_tointeger(co, -3));
  CHECK(lua_isstring(co, -2) &&
            strcmp(lua_tostring(co, -2), "Non-thread-safe operation invoked on an event loop "
                                         "other than the current one") == 0,
        "B: with Python's message: %s", lua_tostring(co, -2));
  CHECK(lua_toboolean(co, -1), "B: is_running, time and is_closed still answer");
  lua_settop(co, 0);
  /* done with the state: only now wake A */
  rc = asyncio_call_threadsafe(loop, resolve, NULL);
  CHECK(rc == 0, "B: posted the wake-up (rc %d)", rc);

  sem_wait(&a_stopped);
  harness_run(co, "from_b_stopped", from_b_stopped, 0, 1);
  CHECK(lua_tointeger(co, -1) == 3, "B, loop stopped: B schedules on it and runs it itself (%d)",
        (int)lua_tointeger(co, -1));
  lua_settop(co, 0);
  sem_post(&b_done);
  return NULL;
}

static const char *run_in_a = "local fut = ...\n"
                              "return loop:run_until_complete(function()\n"
                              "  waiting()\n"
                              "  return fut:await()\n"
                              "end)\n";

static const char *again_in_a = "local ran = false\n"
                                "loop:run_until_complete(function()\n"
                                "  loop:call_soon(function() ran = true end)\n"
                                "  asyncio.sleep(0)\n"
                                "end)\n"
                                "loop:close()\n"
                                "return ran\n";

int main(void) {
  pthread_t b;
  alarm(HARNESS_ALARM_SECONDS);
  sem_init(&a_polling, 0, 0);
  sem_init(&a_stopped, 0, 0);
  sem_init(&b_done, 0, 0);
  L_main = harness_state();
  lua_register(L_main, "waiting", l_waiting);
  loop = asyncio_loop_new(L_main, NULL);
  lua_setglobal(L_main, "loop");
  lua_newthread(L_main);
  co_ref = luaL_ref(L_main, LUA_REGISTRYINDEX);
  uv_prepare_init(asyncio_loop_uv(loop), &prepare);
  uv_prepare_start(&prepare, on_prepare);
  uv_unref((uv_handle_t *)&prepare);
  asyncio_future_new(L_main, loop);
  lua_pushvalue(L_main, -1);
  fut_ref = luaL_ref(L_main, LUA_REGISTRYINDEX);
  pthread_create(&b, NULL, thread_b, NULL);

  harness_run(L_main, "run_in_a", run_in_a, 1, 1);
  CHECK(strcmp(lua_tostring(L_main, -1), "woken") == 0, "A: the loop ran until B's post woke it");
  lua_pop(L_main, 1);
  uv_close((uv_handle_t *)&prepare, NULL);

  sem_post(&a_stopped);
  sem_wait(&b_done);
  harness_run(L_main, "again_in_a", again_in_a, 0, 1);
  CHECK(lua_toboolean(L_main, -1), "A: runs the loop B ran, call_soon from A works again");
  lua_pop(L_main, 1);
  pthread_join(b, NULL);
  luaL_unref(L_main, LUA_REGISTRYINDEX, fut_ref);
  luaL_unref(L_main, LUA_REGISTRYINDEX, co_ref);
  lua_close(L_main);
  return 0;
}
