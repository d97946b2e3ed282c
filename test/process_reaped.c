/* process_reaped: a child that someone else reaps (here the host, with a
 * blocking waitpid of its own) makes wait() raise OSError ECHILD instead of
 * hanging; through the pidfd and, in a forked copy of this program with
 * LUA_ASYNCIO_NO_PIDFD=1, through the SIGCHLD watcher. */
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static int l_reap(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1), r;
  int status = 0;
  do r = waitpid(pid, &status, 0);
  while (r < 0 && errno == EINTR);
  lua_pushboolean(L, r == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
  return 1;
}

static const char *program =
    "return asyncio.run(function()\n"
    "  local p = asyncio.create_subprocess_exec({'sleep', '0.1'})\n"
    "  local q = asyncio.create_subprocess_exec({'sleep', '0.1'})\n"
    "  assert(reap(p.pid), 'the host reaped the child')\n"
    "  assert(reap(q.pid), 'the host reaped the child')\n"
    "  local ok, err = pcall(p.wait, p)\n"
    "  assert(not ok and asyncio.isinstance(err, asyncio.OSError), tostring(err))\n"
    "  -- the field asks the kernel first: it finds the child gone as well\n"
    "  local rc = q.returncode\n"
    "  local ok2, err2 = pcall(q.wait, q)\n"
    "  assert(not ok2, 'a second child gone')\n"
    "  return err.errno, err2.errno, rc\n"
    "end)\n";

static void run_case(const char *how) {
  lua_State *L = harness_state();
  lua_register(L, "reap", l_reap);
  harness_run(L, how, program, 0, 3);
  CHECK(strcmp(lua_tostring(L, -3), "ECHILD") == 0 && strcmp(lua_tostring(L, -2), "ECHILD") == 0,
        "%s: wait() on a child reaped by the host raises OSError ECHILD (%s, %s)", how,
        lua_tostring(L, -3), lua_tostring(L, -2));
  CHECK(lua_tointeger(L, -1) == 255, "%s: its returncode is 255, as in Python", how);
  lua_close(L);
}

int main(void) {
  pid_t child;
  int status = 0;
  alarm(HARNESS_ALARM_SECONDS);
  setvbuf(stdout, NULL, _IOLBF, 0);
  /* the SIGCHLD path in a copy of this program, which has spawned nothing
   * yet: the variable is read at the first spawn */
  child = fork();
  assert(child >= 0);
  if (child == 0) {
    setenv("LUA_ASYNCIO_NO_PIDFD", "1", 1);
    run_case("SIGCHLD watcher");
    _exit(0);
  }
  run_case("pidfd");
  CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "the SIGCHLD-watcher copy passed (status %d)", status);
  printf("process_reaped: all checks passed\n");
  return 0;
}
