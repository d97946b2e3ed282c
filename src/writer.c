/* The per-call methods of StreamWriter (a Lua table, streams.lua) in C:
 * write, and drain's fast path, which is all an echo loop's drain does. The
 * writer keeps its reader at [1] and its transport in its one field. */
#include "internal.h"

/* write(self, data) */
static int l_write(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  lua_getfield(L, 1, "transport");
  aio_transport_write(L, 3, 2);
  return 0;
}

static int drain_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return lua_gettop(L);
}

/* drain(self): returns at once unless there is something to wait for or to
 * raise; then it is the Lua function it was made with (upvalue 2). */
static int l_drain(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_rawgeti(L, 1, 1);
  lua_getfield(L, 1, "transport");
  if (!aio_reader_drain_pending(L, 2) && !aio_transport_is_closing(L, 3)) return 0;
  lua_settop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_insert(L, 1);
  lua_callk(L, 1, LUA_MULTRET, 0, drain_k);
  return drain_k(L, LUA_OK, 0);
}

/* stream_drain(slow) -> the drain method */
static int l_stream_drain(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, 1);
  lua_pushcclosure(L, l_drain, 2);
  return 1;
}

void aio_writer_open(lua_State *L, aio_state *S) {
  static const luaL_Reg funcs[] = {
      {"stream_write", l_write}, {"stream_drain", l_stream_drain}, {NULL, NULL}};
  aio_setfuncs(L, S, funcs);
}
