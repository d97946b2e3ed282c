/* executor_threads: two OS threads, each with its own state and loop, use
 * their loops' default executors at once. Jobs post back to their loop from
 * the worker threads both ways: from C with asyncio_call_threadsafe (through
 * a C module the job requires, test/modules/threadsafe_probe.c) and from Lua
 * with asyncio.call_soon_threadsafe. Every post runs on its own loop's
 * thread, in order, before the job's result is back. Jobs in parallel wait
 * on tasks of their loop (run_coroutine_threadsafe), cancelling some. Then
 * cancels, shutdowns and loop closes race with running jobs and with
 * workers waiting on tasks (for the tsan-ctest pass). */
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "harness.h"

#define NPOSTS 300

typedef struct {
  int id;
  pthread_t self;
  lua_Integer sum, lua_posts, from_tasks, churned;
  int c_posts, c_wrong, c_out_of_order;
} host;

static host hosts[2] = {{.id = 1}, {.id = 2}};
static pthread_t threads[2];
static pthread_barrier_t start_line;
/* the host whose loop runs on this thread: a posted callback finds its own */
static _Thread_local host *me;

static void on_post(lua_State *L, void *data) {
  int i = (int)(intptr_t)data, top = lua_gettop(L);
  lua_getglobal(L, "host_id");
  if (!me || !pthread_equal(pthread_self(), me->self) || lua_tointeger(L, -1) != me->id)
    hosts[0].c_wrong++, hosts[1].c_wrong++;
  else if (i != me->c_posts + 1)
    me->c_out_of_order++;
  if (me) me->c_posts++;
  lua_settop(L, top);
}

static int l_loop_addr(lua_State *L) {
  asyncio_loop *loop = asyncio_loop_test(L, 1);
  luaL_argcheck(L, loop != NULL, 1, "loop expected");
  lua_pushinteger(L, (lua_Integer)(intptr_t)loop);
  return 1;
}

static char modules[PATH_MAX];

static const char *const code =
    "local n = ...\n"
    "package.cpath = modules .. '/?.so;' .. package.cpath\n"
    "return asyncio.run(function()\n"
    "  local addr = loop_addr(asyncio.get_running_loop())\n"
    "  local sum = 0\n"
    "  for i = 1, 200 do sum = sum + asyncio.to_thread(function(x) return x * 2 end, i) end\n"
    "  local futs = {}\n"
    "  for k = 1, 3 do\n"
    "    futs[k] = asyncio.get_running_loop():run_in_executor(nil, function(addr, cb, n, k)\n"
    "      local probe = require 'threadsafe_probe'\n"
    "      for i = (k - 1) * n // 3 + 1, k * n // 3 do assert(probe.post(addr, cb, i) == 0) end\n"
    "    end, addr, post_cb, n, k)\n"
    "    futs[k]:await()\n" /* one job at a time: the order of the posts is known */
    "  end\n"
    "  LUA_POSTS = 0\n"
    "  asyncio.to_thread(function(n)\n"
    "    local aio = require 'asyncio'\n"
    "    for i = 1, n do aio.call_soon_threadsafe(function(i) LUA_POSTS = LUA_POSTS + i end, i) "
    "end\n"
    "  end, n)\n"
    "  for k = 1, 4 do\n"
    "    futs[k] = asyncio.get_running_loop():run_in_executor(nil, function()\n"
    "      local aio, s = require 'asyncio', 0\n"
    "      for i = 1, 25 do\n"
    "        local f = aio.run_coroutine_threadsafe(function(i)\n"
    "          if i % 2 == 0 then require('asyncio').sleep(0) end\n"
    "          return i\n"
    "        end, nil, i)\n"
    "        if i % 5 == 0 then f:cancel() else s = s + f:result() end\n"
    "      end\n"
    "      return s\n"
    "    end)\n"
    "  end\n"
    "  local from_tasks = 0\n"
    "  for k = 1, 4 do from_tasks = from_tasks + futs[k]:await() end\n"
    "  return sum, LUA_POSTS, from_tasks\n"
    "end)\n";

/* Races for ThreadSanitizer: cancels of queued and running jobs,
 * shutdown(cancel_futures) with jobs queued, a loop closed under running
 * jobs and the join after it. Returns the jobs that completed uncancelled. */
static const char *const churn =
    "local function spin(i) local s = 0 for k = 1, 3000 do s = s + k end return i end\n"
    "local ok = asyncio.run(function()\n"
    "  local ex = asyncio.ThreadPoolExecutor({ max_workers = 3 })\n"
    "  local futs, ok = {}, 0\n"
    "  for i = 1, 300 do futs[i] = ex:submit(spin, i) end\n"
    "  for i = 1, 300, 2 do futs[i]:cancel() end\n"
    "  for i = 2, 300, 2 do if futs[i]:await() == i then ok = ok + 1 end end\n"
    "  for i = 1, 50 do futs[i] = ex:submit(spin, i) end\n"
    "  ex:shutdown({ cancel_futures = true })\n"
    "  return ok\n"
    "end)\n"
    "local ex = asyncio.ThreadPoolExecutor({ max_workers = 2 })\n"
    "asyncio.run(function()\n"
    "  for _ = 1, 20 do ex:submit(function() local s = 0 for k = 1, 200000 do s = s + k end return "
    "s end) end\n"
    "  asyncio.sleep(0)\n"
    "end)\n"
    "ex:shutdown()\n"
    "local loop = asyncio.new_event_loop()\n"
    "ex = asyncio.ThreadPoolExecutor({ max_workers = 3 })\n"
    "loop:run_until_complete(function()\n"
    "  for _ = 1, 6 do ex:submit(function()\n"
    "    local aio = require 'asyncio'\n"
    "    for _ = 1, 50 do\n"
    "      local ok, f = pcall(aio.run_coroutine_threadsafe, function()\n"
    "        require('asyncio').sleep(0.001)\n"
    "      end)\n"
    "      if not ok or not pcall(f.result, f) then return end\n"
    "    end\n"
    "  end) end\n"
    "  asyncio.sleep(0.01)\n"
    "end)\n"
    "loop:close()\n"
    "ex:shutdown()\n"
    "return ok\n";

static void *run_host(void *arg) {
  host *h = arg;
  lua_State *L = harness_state();
  me = h;
  h->self = pthread_self();
  lua_pushinteger(L, h->id);
  lua_setglobal(L, "host_id");
  lua_pushstring(L, modules);
  lua_setglobal(L, "modules");
  lua_pushcfunction(L, l_loop_addr);
  lua_setglobal(L, "loop_addr");
  lua_pushinteger(L, (lua_Integer)(intptr_t)on_post);
  lua_setglobal(L, "post_cb");
  pthread_barrier_wait(&start_line);
  lua_pushinteger(L, NPOSTS);
  harness_run(L, "executor_threads", code, 1, 3);
  h->sum = lua_tointeger(L, -3);
  h->lua_posts = lua_tointeger(L, -2);
  h->from_tasks = lua_tointeger(L, -1);
  lua_pop(L, 3);
  harness_run(L, "executor_churn", churn, 0, 1);
  h->churned = lua_tointeger(L, -1);
  lua_close(L);
  return NULL;
}

int main(void) {
  char exe[PATH_MAX - sizeof "/modules"];
  ssize_t n;
  int i;
  alarm(HARNESS_ALARM_SECONDS);
  n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  CHECK(n > 0, "found the program's directory");
  exe[n] = '\0';
  *strrchr(exe, '/') = '\0';
  snprintf(modules, sizeof modules, "%s/modules", exe);
  pthread_barrier_init(&start_line, NULL, 2);
  for (i = 0; i < 2; i++) pthread_create(&threads[i], NULL, run_host, &hosts[i]);
  for (i = 0; i < 2; i++) pthread_join(threads[i], NULL);
  pthread_barrier_destroy(&start_line);
  for (i = 0; i < 2; i++) {
    host *h = &hosts[i];
    CHECK(h->sum == 200 * 201, "loop %d: 200 to_thread round trips in its own executor", h->id);
    CHECK(h->c_posts == NPOSTS && h->c_out_of_order == 0,
          "loop %d: %d of %d asyncio_call_threadsafe posts from workers ran, in order", h->id,
          h->c_posts, NPOSTS);
    CHECK(h->c_wrong == 0, "loop %d: each on its own loop's thread and state", h->id);
    CHECK(h->lua_posts == (lua_Integer)NPOSTS * (NPOSTS + 1) / 2,
          "loop %d: asyncio.call_soon_threadsafe from a worker ran every call", h->id);
    CHECK(h->from_tasks == 4 * 250,
          "loop %d: jobs got the values of their tasks from run_coroutine_threadsafe", h->id);
    CHECK(h->churned == 150, "loop %d: the 150 jobs not cancelled completed", h->id);
  }
  return 0;
}
