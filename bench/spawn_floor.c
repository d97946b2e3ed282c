/* Two floors for create_task, as the Lua module `spawn_floor` of
 * bench/spawn_floor.lua; t:await() runs the queue (the loop's turn) when t
 * is not done, then returns t's result.
 *   create_task: the least a Lua task runtime does per task: a userdata
 *     holding fn, queued in a table, run in one reused coroutine, with no
 *     pcall, no anchors, no stats, no names and no error handling.
 *   design.create_task: that plus what lua-asyncio's design needs per task
 *     (DESIGN.md, src/task.c): the body under a pcall with a message handler
 *     inside the coroutine (to-be-closed variables close while it lives),
 *     an anchor slot in a table reached through the registry (a pending
 *     task is kept alive by its loop), a C ready ring, a clock reading and
 *     the counters of get_stats per step, and a Task of the state lua-asyncio
 *     keeps (72 bytes, as struct aio_task).
 * Floors to hold asyncio.create_task against, not runtimes.
 *   cc -O2 -shared -fPIC -I/usr/include/lua5.4 -o spawn_floor.so spawn_floor.c */
#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* ---- the design floor ------------------------------------------------ */

/* struct aio_task's 72 bytes (src/internal.h), its fields set as a spawned
 * task's steps set them */
typedef struct {
  void *loop;
  uint8_t state, flags, nres, wait;
  uint32_t id;
  int slot;
  uint32_t steps, delay_max_ns;
  uint8_t untouched[12]; /* hook, named, cancels and the wait union */
  lua_State *co;
  uint64_t run_ns, last_ns, delay_sum_ns;
} dtask;
_Static_assert(sizeof(void *) != 8 || sizeof(dtask) == 72, "dtask is not aio_task's size");

static int anchors_ref, dmt_ref;
static uint64_t stamp; /* the last step's end, as lua-asyncio's loop keeps it */
static uint32_t ntasks;
static dtask **ring;
static size_t rhead, rlen, rcap;
static int *free_slots, nfree, top, free_cap;

static uint64_t clock_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts); /* lua-asyncio's step clock */
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* runs only when a body fails, which these do not */
static int d_msgh(lua_State *L) {
  (void)L;
  return 1;
}

static int d_main_k(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  if (status != LUA_OK && status != LUA_YIELD) {
    lua_pushboolean(L, 0);
    lua_replace(L, 1);
  }
  return lua_gettop(L);
}

/* msgh, fn -> msgh, results... | false, error */
static int d_main(lua_State *L) {
  return d_main_k(L, lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 1, 0, d_main_k), 0);
}

static int d_create_task(lua_State *L) {
  dtask *t;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  t = lua_newuserdatauv(L, sizeof *t, 1);
  memset(t, 0, sizeof *t);
  t->loop = &ring;
  t->flags = 1;
  t->id = ++ntasks;
  t->last_ns = stamp;
  lua_rawgeti(L, LUA_REGISTRYINDEX, dmt_ref);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  if (nfree == 0 && top == free_cap) {
    int *slots = realloc(free_slots, (size_t)(free_cap ? free_cap * 2 : 64) * sizeof *slots);
    if (!slots) return luaL_error(L, "not enough memory");
    free_slots = slots;
    free_cap = free_cap ? free_cap * 2 : 64;
  }
  t->slot = nfree ? free_slots[--nfree] : ++top;
  lua_rawgeti(L, LUA_REGISTRYINDEX, anchors_ref);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, t->slot);
  lua_pop(L, 1);
  if (rlen == rcap) {
    size_t cap = rcap ? rcap * 2 : 256, i;
    dtask **r = malloc(cap * sizeof *r);
    if (!r) return luaL_error(L, "not enough memory");
    for (i = 0; i < rlen; i++) r[i] = ring[(rhead + i) & (rcap - 1)];
    free(ring);
    ring = r;
    rhead = 0;
    rcap = cap;
  }
  ring[(rhead + rlen++) & (rcap - 1)] = t;
  return 1;
}

static void d_run_queue(lua_State *L) {
  int nres;
  uint64_t t0 = clock_ns();
  lua_rawgeti(L, LUA_REGISTRYINDEX, anchors_ref);
  while (rlen > 0) {
    dtask *t = ring[rhead];
    uint64_t t1;
    rhead = (rhead + 1) & (rcap - 1);
    rlen--;
    t->wait = 0;
    t->co = co;
    lua_rawgeti(L, -1, t->slot);
    lua_pushcfunction(L, d_main);
    lua_pushcfunction(L, d_msgh);
    lua_getiuservalue(L, -3, 1);
    lua_xmove(L, co, 3);
    if (lua_resume(co, L, 2, &nres) != LUA_OK || nres != 2) luaL_error(L, "a task failed");
    t1 = clock_ns();
    {
      uint64_t delay = t0 > t->last_ns ? t0 - t->last_ns : 0; /* ours: from the wake-up */
      t->delay_sum_ns += delay;
      if (delay > t->delay_max_ns) t->delay_max_ns = (uint32_t)delay;
    }
    t->steps++;
    t->run_ns += t1 - t0;
    t->last_ns = stamp = t0 = t1;
    lua_xmove(co, L, 2);
    if (!lua_toboolean(L, -2)) luaL_error(L, "a task failed");
    lua_setiuservalue(L, -3, 1);
    t->state = 1;
    t->nres = 1;
    t->co = NULL;
    lua_pushnil(L);
    lua_rawseti(L, -4, t->slot);
    free_slots[nfree++] = t->slot;
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
}

static int d_await(lua_State *L) {
  dtask *t = luaL_checkudata(L, 1, "spawn_floor.DesignTask");
  if (!t->state) d_run_queue(L);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

/* a metatable named `name` whose __index holds await; its registry ref */
static int new_class(lua_State *L, const char *name, lua_CFunction await) {
  luaL_newmetatable(L, name);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, await);
  lua_setfield(L, -2, "await");
  lua_setfield(L, -2, "__index");
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

int luaopen_spawn_floor(lua_State *L) {
  mt_ref = new_class(L, "spawn_floor.Task", l_await);
  dmt_ref = new_class(L, "spawn_floor.DesignTask", d_await);
  lua_newtable(L);
  queue_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  anchors_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  co = lua_newthread(L);
  co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, l_create_task);
  lua_setfield(L, -2, "create_task");
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, d_create_task);
  lua_setfield(L, -2, "create_task");
  lua_setfield(L, -2, "design");
  return 1;
}
