/* process_threads: loops in two OS threads, each in its own lua_State, spawn
 * children at the same time (each with its own umask, so the spawn-time
 * umask of one can never leak into the other's children or stay behind in
 * the process) and each has a SIGUSR1 handler: one kill() of the process
 * reaches both loops. */
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define NCHILDREN 40

typedef struct {
  int id;
  int mask;
  lua_Integer spawned, wrong, signalled;
} worker;

static worker workers[2] = {{.id = 1, .mask = 077}, {.id = 2, .mask = 027}};
static sem_t ready;

static int l_ready(lua_State *L) {
  (void)L;
  sem_post(&ready);
  return 0;
}

/* Every child reports its umask; then the loop waits for SIGUSR1. */
static const char *program =
    "local mask, n = ...\n"
    "return asyncio.run(function()\n"
    "  local loop = asyncio.get_running_loop()\n"
    "  local got = asyncio.Event()\n"
    "  local times = 0\n"
    "  loop:add_signal_handler('SIGUSR1', function() times = times + 1; got:set() end)\n"
    "  local wrong, jobs = 0, {}\n"
    "  for i = 1, n do\n"
    "    jobs[i] = asyncio.create_task(function()\n"
    "      local p = asyncio.create_subprocess_exec({'sh', '-c', 'umask'},\n"
    "        {stdout = asyncio.subprocess.PIPE, umask = mask})\n"
    "      local out = p:communicate()\n"
    "      if tonumber(out, 8) ~= mask or p.returncode ~= 0 then wrong = wrong + 1 end\n"
    "    end)\n"
    "  end\n"
    "  asyncio.gather(jobs):await()\n"
    "  ready()\n"
    "  asyncio.wait_for(function() return got:wait() end, 10)\n"
    "  loop:remove_signal_handler('SIGUSR1')\n"
    "  return n, wrong, times\n"
    "end)\n";

static void *worker_main(void *arg) {
  worker *w = arg;
  lua_State *L = harness_state();
  lua_register(L, "ready", l_ready);
  lua_pushinteger(L, w->mask);
  lua_pushinteger(L, NCHILDREN);
  harness_run(L, "program", program, 2, 3);
  w->spawned = lua_tointeger(L, -3);
  w->wrong = lua_tointeger(L, -2);
  w->signalled = lua_tointeger(L, -1);
  lua_close(L);
  return NULL;
}

int main(void) {
  pthread_t threads[2];
  mode_t before = umask(022), after;
  int i, rc;
  alarm(HARNESS_ALARM_SECONDS);
  setvbuf(stdout, NULL, _IOLBF, 0);
  sem_init(&ready, 0, 0);
  for (i = 0; i < 2; i++) {
    rc = pthread_create(&threads[i], NULL, worker_main, &workers[i]);
    assert(rc == 0);
  }
  /* both handlers are in place once both loops are ready */
  sem_wait(&ready);
  sem_wait(&ready);
  kill(getpid(), SIGUSR1);
  for (i = 0; i < 2; i++) {
    rc = pthread_join(threads[i], NULL);
    assert(rc == 0);
  }
  for (i = 0; i < 2; i++) {
    worker *w = &workers[i];
    CHECK(w->spawned == NCHILDREN && w->wrong == 0,
          "loop %d: %d children spawned at once with umask %03o, %d saw another", w->id,
          (int)w->spawned, w->mask, (int)w->wrong);
    CHECK(w->signalled == 1, "loop %d: one SIGUSR1 ran its handler once (%d)", w->id,
          (int)w->signalled);
  }
  after = umask(before);
  CHECK(after == 022, "the process's umask is what it was (%03o)", (unsigned)after);
  sem_destroy(&ready);
  printf("process_threads: all checks passed\n");
  return 0;
}
