/* threadsafe_probe: a C module as a blocking C library would be, calling
 * asyncio_call_threadsafe from whatever thread runs it (an executor worker
 * in test/executor_threads.c). The host passes its loop and callback as
 * addresses: a worker's Lua state holds no loop object. */
#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>

#include "asyncio.h"

/* post(loop_address, callback_address, n) -> asyncio_call_threadsafe's result */
static int l_post(lua_State *L) {
  asyncio_loop *loop = (asyncio_loop *)(intptr_t)luaL_checkinteger(L, 1);
  asyncio_callback cb = (asyncio_callback)(intptr_t)luaL_checkinteger(L, 2);
  lua_Integer n = luaL_checkinteger(L, 3);
  lua_pushinteger(L, asyncio_call_threadsafe(loop, cb, (void *)(intptr_t)n));
  return 1;
}

int luaopen_threadsafe_probe(lua_State *L);

int luaopen_threadsafe_probe(lua_State *L) {
  static const luaL_Reg funcs[] = {{"post", l_post}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
