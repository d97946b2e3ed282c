/* Event: Python's asyncio.Event. A waiter is a parked task in a waitlist,
 * with no Future; set() wakes every waiter in the order they came. Written
 * in C because a handoff between two tasks through Events (wait, clear, set)
 * is the hot path of task ping-pong: as Lua methods it spent as much time in
 * the VM as the switch itself. Like the other primitives an Event is tied to
 * no loop: each waiter is woken on its own loop. */

/***
Event (in C): `asyncio.Event()`.
@module locks
*/

#include <string.h>

#include "internal.h"

#define EVENT_MT "asyncio.Event"

/* Uservalue 1, made by the first wait(): the table of the waitlist. */
typedef struct aio_event {
  const char *tag; /* first: aio_test_tagged */
  aio_state *S;    /* spares wait() the lookup of its upvalue */
  aio_waitlist waiters;
  uint8_t value;
} aio_event;

static aio_event *check_event(lua_State *L) {
  aio_event *ev = aio_test_tagged(L, 1, AIO_T_EVENT);
  if (!ev) luaL_typeerror(L, 1, "Event");
  return ev;
}

/* stack: event, its waitlist's table, slot of the task's entry */
static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  aio_task *t = (aio_task *)ctx;
  aio_event *ev = lua_touserdata(L, 1);
  (void)status;
  if (aio_task_cancel_pending(t) && t->parked_on)
    aio_waitlist_leave(L, &ev->waiters, 2, t, (int)lua_tointeger(L, 3));
  aio_task_unparked(L, t);
  lua_pushboolean(L, 1);
  return 1;
}

/* wait() -> true, once the event is set. */

/***
Waits until the event is set (yields).
@function Event:wait
@python Event.wait
@treturn boolean true
@raise RuntimeError outside a task; CancelledError when cancelled
*/
static int l_wait(lua_State *L) {
  aio_event *ev = check_event(L);
  aio_task *t;
  int slot;
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
  slot = aio_waitlist_add(L, &ev->waiters, 2, t);
  lua_pushinteger(L, slot);
  return aio_task_park(L, t, &ev->waiters, (lua_KContext)t, wait_k);
}

/***
Sets the event, waking every waiter.
@function Event:set
@python Event.set
*/
static int l_set(lua_State *L) {
  aio_event *ev = check_event(L);
  if (ev->value) return 0;
  ev->value = 1;
  if (ev->waiters.n == 0) return 0;
  lua_getiuservalue(L, 1, 1);
  aio_waitlist_wake_all(L, &ev->waiters, -1);
  return 0;
}

/***
Clears the event.
@function Event:clear
@python Event.clear
*/
static int l_clear(lua_State *L) {
  check_event(L)->value = 0;
  return 0;
}

/***
Whether the event is set.
@function Event:is_set
@python Event.is_set
@treturn boolean
*/
static int l_is_set(lua_State *L) {
  lua_pushboolean(L, check_event(L)->value);
  return 1;
}

static int l_tostring(lua_State *L) {
  aio_event *ev = check_event(L);
  int waiting = 0;
  if (ev->waiters.n > 0 && lua_getiuservalue(L, 1, 1) == LUA_TTABLE)
    waiting = aio_waitlist_parked(L, &ev->waiters, -1, ev->waiters.n);
  if (waiting > 0)
    lua_pushfstring(L, "<Event [%s, waiters:%d]>", ev->value ? "set" : "unset", waiting);
  else
    lua_pushfstring(L, "<Event [%s]>", ev->value ? "set" : "unset");
  return 1;
}

/* asyncio.Event() */

/***
A new event, not set.
@function Event
@python asyncio.Event
@treturn Event
*/
static int l_new(lua_State *L) {
  aio_event *ev = lua_newuserdatauv(L, sizeof *ev, 1);
  memset(ev, 0, sizeof *ev);
  ev->tag = &aio_tags[AIO_T_EVENT];
  ev->S = aio_state_of(L);
  aio_waitlist_init(&ev->waiters);
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
