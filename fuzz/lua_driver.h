/* A harness whose model is a Lua driver, fuzz/FUZZ_DRIVER.lua: the chunk
 * returns a function that takes one input and raises when the runtime
 * breaks its contract. One Lua state serves every input; a full collection
 * after each keeps the heap flat. Define FUZZ_DRIVER before including. */
#ifndef AIO_FUZZ_LUA_DRIVER_H
#define AIO_FUZZ_LUA_DRIVER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lualib.h>

#include "asyncio.h"

static lua_State *fuzz_L;

static int fuzz_msgh(lua_State *L) {
  luaL_traceback(L, L, luaL_tolstring(L, 1, NULL), 1);
  return 1;
}

static void fuzz_open_state(void) {
  lua_State *L = fuzz_L = luaL_newstate();
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, AIO_FUZZ_LUA_DIR "/?.lua;" AIO_FUZZ_LUA_DIR "/?/init.lua");
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  luaL_requiref(L, "asyncio.core", luaopen_asyncio_core, 0);
  lua_pop(L, 1);
  if (luaL_dofile(L, AIO_FUZZ_DIR "/" FUZZ_DRIVER ".lua") != LUA_OK) {
    fprintf(stderr, "fuzz/" FUZZ_DRIVER ".lua: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_setglobal(L, "fuzz_one");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L;
  if (!fuzz_L) fuzz_open_state();
  L = fuzz_L;
  lua_pushcfunction(L, fuzz_msgh);
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

#endif
