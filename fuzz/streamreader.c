/* StreamReader (src/reader.c) fed random chunks and asked for random reads,
 * under the Lua driver fuzz/streamreader.lua: bytes fed must come out of the
 * reads exactly once, in order, whatever is cancelled. One Lua state serves
 * every input; a full collection after each keeps the heap flat. */
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lualib.h>

#include "asyncio.h"

static lua_State *L;

static int msgh(lua_State *L1) {
  luaL_traceback(L1, L1, luaL_tolstring(L1, 1, NULL), 1);
  return 1;
}

static void open_state(void) {
  L = luaL_newstate();
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, AIO_FUZZ_LUA_DIR "/?.lua;" AIO_FUZZ_LUA_DIR "/?/init.lua");
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  luaL_requiref(L, "asyncio.core", luaopen_asyncio_core, 0);
  lua_pop(L, 1);
  if (luaL_dofile(L, AIO_FUZZ_DIR "/streamreader.lua") != LUA_OK) {
    fprintf(stderr, "fuzz/streamreader.lua: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_setglobal(L, "fuzz_one");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!L) open_state();
  lua_pushcfunction(L, msgh);
  lua_getglobal(L, "fuzz_one");
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, -3) != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    abort();
  }
  lua_pop(L, 1);
  lua_gc(L, LUA_GCCOLLECT);
  return 0;
}
