/* The least a Lua task runtime does for the spawn benchmark, as the Lua
 * module `spawn_floor` of bench/spawn_floor.lua: create_task(fn) makes a
 * userdata holding fn and queues it; t:await() runs the queue (the loop's
 * turn) when t is not done, then returns t's result. Each task runs in one
 * reused coroutine, with no pcall, no anchors, no stats, no names and no
 * error handling: a floor to hold asyncio.create_task against, not a
 * runtime.  cc -O2 -shared -fPIC -I/usr/include/lua5.4 -o spawn_floor.so spawn_floor.c */
#include <lauxlib.h>
#include <lua.h>

typedef struct {
  int done;
} ftask;

/* registry refs: the queue (an array), the Task metatable, the coroutine */
static int queue_ref, mt_ref, co_ref;
static lua_State *co;
static lua_Integer head = 1, tail;

static int l_create_task(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  ((ftask *)lua_newuserdatauv(L, sizeof(ftask), 1))->done = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, mt_ref);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, queue_ref);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, ++tail);
  lua_pop(L, 1);
  return 1;
}

static void run_queue(lua_State *L) {
  int nres;
  lua_rawgeti(L, LUA_REGISTRYINDEX, queue_ref);
  while (head <= tail) {
    lua_rawgeti(L, -1, head); /* queue task */
    lua_pushnil(L);
    lua_rawseti(L, -3, head++);
    lua_getiuservalue(L, -1, 1);
    lua_xmove(L, co, 1);
    if (lua_resume(co, L, 0, &nres) != LUA_OK) luaL_error(L, "a task failed");
    lua_xmove(co, L, 1);
    lua_settop(co, 0);
    lua_setiuservalue(L, -2, 1);
    ((ftask *)lua_touserdata(L, -1))->done = 1;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static int l_await(lua_State *L) {
  ftask *t = luaL_checkudata(L, 1, "spawn_floor.Task");
  if (!t->done) run_queue(L);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

int luaopen_spawn_floor(lua_State *L) {
  luaL_newmetatable(L, "spawn_floor.Task");
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, l_await);
  lua_setfield(L, -2, "await");
  lua_setfield(L, -2, "__index");
  mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  queue_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  co = lua_newthread(L);
  co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, l_create_task);
  lua_setfield(L, -2, "create_task");
  return 1;
}
