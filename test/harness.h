/* Shared helpers of the C test programs in test/: a lua_State with asyncio
 * opened the way a host does it, running Lua snippets with tracebacks, and a
 * CHECK macro that prints one line per check. Everything is static inline so
 * that each program can use whichever part it needs without warnings. */
#ifndef ASYNCIO_TEST_HARNESS_H
#define ASYNCIO_TEST_HARNESS_H

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <uv.h>

#include "asyncio.h"

/* A hard limit for every program: a hang must fail the test well before the
 * runner's own timeout would. */
#define HARNESS_ALARM_SECONDS 20

/* The whole line goes out in one call so that checks printed by several
 * threads do not interleave within a line. */
static inline void harness_report(int ok, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  printf("%s - %s\n", ok ? "ok" : "not ok", buf);
  fflush(stdout);
}

/* The condition is evaluated once; on failure the line is printed before
 * assert() aborts, so the log says which check failed and with what values. */
#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    int check_ok_ = (cond) ? 1 : 0;                                                                \
    harness_report(check_ok_, __VA_ARGS__);                                                        \
    assert(check_ok_ &&#cond);                                                                     \
  } while (0)

/* Seconds on a monotonic clock. */
static inline double harness_now(void) {
  return (double)uv_hrtime() / 1e9;
}

static inline int harness_msgh(lua_State *L) {
  luaL_traceback(L, L, luaL_tolstring(L, 1, NULL), 1);
  return 1;
}

/* Runs `code` with the values on top of the stack as its `...` (nargs of
 * them) and leaves nres results. A Lua error is a test failure: it is printed
 * with its traceback and the program aborts. */
static inline void harness_run(lua_State *L, const char *name, const char *code, int nargs,
                               int nres) {
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, harness_msgh);
  lua_insert(L, base + 1);
  if (luaL_loadbufferx(L, code, strlen(code), name, "t") == LUA_OK) {
    lua_insert(L, base + 2);
    if (lua_pcall(L, nargs, nres, base + 1) == LUA_OK) {
      lua_remove(L, base + 1);
      return;
    }
  }
  fflush(stdout);
  fprintf(stderr, "Lua error in %s: %s\n", name, lua_tostring(L, -1));
  abort();
}

/* Opens asyncio in a new state the way a host does: the core comes from this
 * program (linked in, not core.so), the Lua half from LUA_PATH. The module
 * table is the global `asyncio`. */
static inline lua_State *harness_open(lua_State *L) {
  assert(L != NULL);
  luaL_openlibs(L);
  luaL_requiref(L, "asyncio.core", luaopen_asyncio_core, 0);
  lua_pop(L, 1);
  if (asyncio_open(L) != LUA_OK) {
    fprintf(stderr, "asyncio_open failed (is LUA_PATH set?): %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_setglobal(L, "asyncio");
  return L;
}

static inline lua_State *harness_state(void) {
  return harness_open(luaL_newstate());
}

static inline int harness_global_bool(lua_State *L, const char *name) {
  int v;
  lua_getglobal(L, name);
  v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static inline lua_Integer harness_global_int(lua_State *L, const char *name) {
  lua_Integer v;
  lua_getglobal(L, name);
  v = lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

static inline double harness_global_num(lua_State *L, const char *name) {
  double v;
  lua_getglobal(L, name);
  v = (double)lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

#endif
