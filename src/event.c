/* Event: Python's asyncio.Event. A waiter is a parked task (aio_task_park)
 * with no Future; set() wakes every waiter in the order they came. Written
 * in C because a handoff between two tasks through Events (wait, clear, set)
 * is the hot path of task ping-pong: as Lua methods it spent as much time in
 * the VM as the switch itself. Like the other primitives an Event is tied to
 * no loop: each waiter is woken on its own loop. */
#include <string.h>

#include "internal.h"

#define EVENT_MT "asyncio.Event"

/* Uservalue 1, made by the first wait(): the waiting tasks at 1..n (strong
 * references, so the list never points at a collected task), in arrival
 * order. A cancelled waiter takes its entry out when it runs; entries whose
 * task never ran again (its loop closed) go when the list is compacted. */
typedef struct aio_event {
  const char *tag; /* first: aio_test_tagged */
  aio_state *S;    /* spares wait() the lookup of its upvalue */
  int n;           /* slots in use in the list, holes (nil) included */
  int limit;       /* n at which wait() compacts the list */
  uint8_t value;
} aio_event;

static aio_event *check_event(lua_State *L) {
  aio_event *ev = aio_test_tagged(L, 1, AIO_T_EVENT);
  if (!ev) luaL_typeerror(L, 1, "Event");
  return ev;
}

/* Keeps the entries of tasks still waiting on ev, in order, and sets the
 * next threshold at twice their count, so wait() compacts rarely. */
static void compact(lua_State *L, aio_event *ev, int list) {
  int i, j = 0;
  for (i = 1; i <= ev->n; i++) {
    lua_rawgeti(L, list, i);
    if (aio_task_is_parked_on(lua_touserdata(L, -1), ev))
      lua_rawseti(L, list, ++j);
    else
      lua_pop(L, 1);
  }
  for (i = j + 1; i <= ev->n; i++) {
    lua_pushnil(L);
    lua_rawseti(L, list, i);
  }
  ev->n = j;
  ev->limit = j < 4 ? 8 : 2 * j;
}

/* A cancelled wait takes the task's entry out of the list: at `slot` unless
 * set() emptied the list since, or a compaction moved the entry down. */
static void drop_waiter(lua_State *L, aio_event *ev, aio_task *t, int slot) {
  int list, me;
  if (ev->n == 0 || lua_getiuservalue(L, 1, 1) != LUA_TTABLE) return;
  list = lua_gettop(L);
  aio_task_push(L, t->f.loop, t);
  me = list + 1;
  for (slot = slot < ev->n ? slot : ev->n; slot > 0; slot--) {
    int found = lua_rawgeti(L, list, slot) != LUA_TNIL && lua_rawequal(L, -1, me);
    lua_pop(L, 1);
    if (found) break;
  }
  if (slot == 0) return;
  lua_pushnil(L);
  lua_rawseti(L, list, slot);
  if (slot < ev->n) return;
  for (ev->n--; ev->n > 0; ev->n--) { /* the tail shrinks past the holes before it */
    int hole = lua_rawgeti(L, list, ev->n) == LUA_TNIL;
    lua_pop(L, 1);
    if (!hole) break;
  }
}

/* stack: event, slot of the task's entry */
static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  aio_task *t = (aio_task *)ctx;
  (void)status;
  if (aio_task_cancel_pending(t)) drop_waiter(L, lua_touserdata(L, 1), t, (int)lua_tointeger(L, 2));
  aio_task_unparked(L, t);
  lua_pushboolean(L, 1);
  return 1;
}

/* wait() -> true, once the event is set. */
static int l_wait(lua_State *L) {
  aio_event *ev = check_event(L);
  aio_task *t;
  if (ev->value) {
    lua_pushboolean(L, 1);
    return 1;
  }
  t = aio_current_task(L, ev->S, "Event.wait");
  if (!t) return aio_nested_yield(L);
  lua_settop(L, 1);
  if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 4, 0);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 1);
  }
  if (ev->n >= ev->limit) compact(L, ev, 2);
  aio_task_push(L, t->f.loop, t);
  lua_rawseti(L, 2, ++ev->n);
  lua_settop(L, 1);
  lua_pushinteger(L, ev->n);
  return aio_task_park(L, t, ev, (lua_KContext)t, wait_k);
}

static int l_set(lua_State *L) {
  aio_event *ev = check_event(L);
  int i, n = ev->n;
  if (ev->value) return 0;
  ev->value = 1;
  if (n == 0) return 0;
  ev->n = 0;
  lua_getiuservalue(L, 1, 1);
  for (i = 1; i <= n; i++) {
    if (lua_rawgeti(L, -1, i) != LUA_TNIL) aio_task_wake(lua_touserdata(L, -1), ev);
    lua_pushnil(L);
    lua_rawseti(L, -3, i);
    lua_pop(L, 1);
  }
  return 0;
}

static int l_clear(lua_State *L) {
  check_event(L)->value = 0;
  return 0;
}

static int l_is_set(lua_State *L) {
  lua_pushboolean(L, check_event(L)->value);
  return 1;
}

static int l_tostring(lua_State *L) {
  aio_event *ev = check_event(L);
  int waiting = 0;
  if (ev->n > 0 && lua_getiuservalue(L, 1, 1) == LUA_TTABLE) {
    int i;
    for (i = 1; i <= ev->n; i++) {
      lua_rawgeti(L, -1, i);
      waiting += aio_task_is_parked_on(lua_touserdata(L, -1), ev);
      lua_pop(L, 1);
    }
  }
  if (waiting > 0)
    lua_pushfstring(L, "<Event [%s, waiters:%d]>", ev->value ? "set" : "unset", waiting);
  else
    lua_pushfstring(L, "<Event [%s]>", ev->value ? "set" : "unset");
  return 1;
}

/* asyncio.Event() */
static int l_new(lua_State *L) {
  aio_event *ev = lua_newuserdatauv(L, sizeof *ev, 1);
  memset(ev, 0, sizeof *ev);
  ev->tag = &aio_tags[AIO_T_EVENT];
  ev->S = aio_state_of(L);
  ev->limit = 8;
  aio_setmetatable(L, ev->S, AIO_T_EVENT);
  return 1;
}

void aio_event_open(lua_State *L, aio_state *S) {
  static const luaL_Reg methods[] = {
      {"wait", l_wait}, {"set", l_set}, {"clear", l_clear}, {"is_set", l_is_set}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__tostring", l_tostring}, {NULL, NULL}};
  aio_newclass(L, S, AIO_T_EVENT, EVENT_MT, methods, meta);
  lua_pop(L, 1);
  lua_pushlightuserdata(L, S);
  lua_pushcclosure(L, l_new, 1);
  lua_setfield(L, -2, "Event");
}
