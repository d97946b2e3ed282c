/* Waitlist: the FIFO of tasks parked on a primitive (Event, Process.wait in C;
 * Lock, Condition, Semaphore and the queues through the Lua binding below).
 * A wait costs a slot of a table, not a Future; like the primitives, a list
 * is tied to no loop: each task is woken on its own. */
#include "internal.h"

/* Compaction: once the slots that hold no waiter (the head's, and the holes
 * left by waiters that gave up) are more than this and more than half. */
#define SLACK 32

/* Moves the entries of tasks still parked on wl down to 1..k, in order.
 * Entries of tasks that left without saying (their loop closed) go too. */
static void compact(lua_State *L, aio_waitlist *wl, int list) {
  int i, j = 0;
  for (i = wl->head; i <= wl->n; i++) {
    if (lua_rawgeti(L, list, i) != LUA_TNIL && aio_task_is_parked_on(lua_touserdata(L, -1), wl))
      lua_rawseti(L, list, ++j);
    else
      lua_pop(L, 1);
  }
  for (i = j + 1; i <= wl->n; i++) {
    lua_pushnil(L);
    lua_rawseti(L, list, i);
  }
  wl->head = 1;
  wl->n = j;
  wl->holes = 0;
}

int aio_waitlist_add(lua_State *L, aio_waitlist *wl, int list, aio_task *t) {
  int idle = wl->head - 1 + wl->holes;
  list = lua_absindex(L, list);
  if (idle > SLACK && 2 * idle > wl->n) compact(L, wl, list);
  aio_task_push(L, t->f.loop, t);
  lua_rawseti(L, list, ++wl->n);
  return wl->n;
}

static int is_hole(lua_State *L, int list, int i) {
  int hole = lua_rawgeti(L, list, i) == LUA_TNIL;
  lua_pop(L, 1);
  return hole;
}

/* The entry is at `slot` unless a compaction moved it down or a wake-up
 * took it already. */
void aio_waitlist_leave(lua_State *L, aio_waitlist *wl, int list, aio_task *t, int slot) {
  int found = 0;
  list = lua_absindex(L, list);
  for (slot = slot < wl->n ? slot : wl->n; slot >= wl->head; slot--) {
    found = lua_rawgeti(L, list, slot) == LUA_TUSERDATA && lua_touserdata(L, -1) == (void *)t;
    lua_pop(L, 1);
    if (found) break;
  }
  if (!found) return;
  lua_pushnil(L);
  lua_rawseti(L, list, slot);
  if (slot == wl->head)
    wl->head++;
  else if (slot == wl->n)
    wl->n--;
  else
    wl->holes++;
  /* the ends shrink past the holes next to them */
  for (; wl->holes > 0 && wl->head < wl->n && is_hole(L, list, wl->head); wl->holes--) wl->head++;
  for (; wl->holes > 0 && wl->n > wl->head && is_hole(L, list, wl->n); wl->holes--) wl->n--;
  if (wl->head > wl->n) aio_waitlist_init(wl);
}

int aio_waitlist_wake(lua_State *L, aio_waitlist *wl, int list) {
  int woke = 0;
  list = lua_absindex(L, list);
  while (!woke && wl->head <= wl->n) {
    int i = wl->head++;
    if (lua_rawgeti(L, list, i) == LUA_TNIL) {
      lua_pop(L, 1);
      wl->holes--;
      continue;
    }
    woke = aio_task_wake(lua_touserdata(L, -1), wl);
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_rawseti(L, list, i);
  }
  if (wl->head > wl->n) aio_waitlist_init(wl);
  return woke;
}

void aio_waitlist_wake_all(lua_State *L, aio_waitlist *wl, int list) {
  int i, head = wl->head, n = wl->n;
  list = lua_absindex(L, list);
  aio_waitlist_init(wl);
  for (i = head; i <= n; i++) {
    if (lua_rawgeti(L, list, i) == LUA_TNIL) {
      lua_pop(L, 1);
      continue;
    }
    aio_task_wake(lua_touserdata(L, -1), wl);
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_rawseti(L, list, i);
  }
}

int aio_waitlist_parked(lua_State *L, const aio_waitlist *wl, int list, int max) {
  int i, k = 0;
  list = lua_absindex(L, list);
  for (i = wl->head; i <= wl->n && k < max; i++) {
    lua_rawgeti(L, list, i);
    k += aio_task_is_parked_on(lua_touserdata(L, -1), wl);
    lua_pop(L, 1);
  }
  return k;
}

/* ---- the Lua binding ----------------------------------------------------- */
/* core.waitlist() -> list. Its table of tasks is uservalue 1, made by the
 * first park. The functions below take nil for a list not made yet (a Lock
 * makes its own when a task first blocks). */

typedef struct {
  const char *tag; /* first: aio_test_tagged */
  aio_waitlist wl;
} waitlist_ud;

static waitlist_ud *check_list(lua_State *L) {
  waitlist_ud *w = aio_test_tagged(L, 1, AIO_T_WAITLIST);
  if (!w) luaL_typeerror(L, 1, "waitlist");
  return w;
}

/* The list at index 1 (or nil) and its table, pushed; NULL for none. */
static aio_waitlist *push_list(lua_State *L) {
  waitlist_ud *w;
  if (lua_isnoneornil(L, 1)) return NULL;
  w = check_list(L);
  lua_getiuservalue(L, 1, 1);
  return &w->wl;
}

static int l_new(lua_State *L) {
  waitlist_ud *w = lua_newuserdatauv(L, sizeof *w, 1);
  w->tag = &aio_tags[AIO_T_WAITLIST];
  aio_waitlist_init(&w->wl);
  return 1;
}

/* stack: list, table, slot */
static int park_k(lua_State *L, int status, lua_KContext ctx) {
  aio_task *t = (aio_task *)ctx;
  int woken = t->parked_on == NULL; /* a wake-up clears it, a cancellation does not */
  (void)status;
  t->parked_on = NULL;
  if (!aio_task_cancel_pending(t)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (!woken) {
    waitlist_ud *w = lua_touserdata(L, 1);
    aio_waitlist_leave(L, &w->wl, 2, t, (int)lua_tointeger(L, 3));
  }
  lua_pushboolean(L, 0);
  aio_task_push_cancelled(L, t);
  lua_pushboolean(L, woken);
  return 3;
}

/* park(list) -> true | false, CancelledError, woken. No pcall is needed: a
 * cancelled waiter that was woken first holds a wake-up its primitive must
 * pass on, which `woken` says; one that was not has left the list. */
static int l_park(lua_State *L) {
  waitlist_ud *w = check_list(L);
  aio_task *t = aio_current_task(L, aio_state_of(L), "park");
  int slot;
  if (!t) return aio_nested_yield(L);
  lua_settop(L, 1);
  if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 4, 0);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 1);
  }
  slot = aio_waitlist_add(L, &w->wl, 2, t);
  lua_pushinteger(L, slot);
  return aio_task_park(L, t, &w->wl, (lua_KContext)t, park_k);
}

/* wake(list) -> whether a task was parked: the first one is woken and leaves. */
static int l_wake(lua_State *L) {
  aio_waitlist *wl = push_list(L);
  lua_pushboolean(L, wl && wl->n > 0 && aio_waitlist_wake(L, wl, -1));
  return 1;
}

static int l_wake_all(lua_State *L) {
  aio_waitlist *wl = push_list(L);
  if (wl && wl->n > 0) aio_waitlist_wake_all(L, wl, -1);
  return 0;
}

/* waiting(list) -> how many tasks are in it (a cancelled one that has not
 * run yet included); any_parked(list) -> whether one of them is still parked */
static int l_waiting(lua_State *L) {
  aio_waitlist *wl = push_list(L);
  lua_pushinteger(L, wl ? wl->n - wl->head + 1 - wl->holes : 0);
  return 1;
}

static int l_any_parked(lua_State *L) {
  aio_waitlist *wl = push_list(L);
  lua_pushboolean(L, wl && wl->n > 0 && aio_waitlist_parked(L, wl, -1, 1));
  return 1;
}

/* slots(list) -> head, last slot, holes: the layout, for the tests that
 * check that cancelled waiters do not pile up */
static int l_slots(lua_State *L) {
  waitlist_ud *w = check_list(L);
  lua_pushinteger(L, w->wl.head);
  lua_pushinteger(L, w->wl.n);
  lua_pushinteger(L, w->wl.holes);
  return 3;
}

void aio_waitlist_open(lua_State *L, aio_state *S) {
  static const luaL_Reg funcs[] = {{"waitlist", l_new},
                                   {"park", l_park},
                                   {"wake", l_wake},
                                   {"wake_all", l_wake_all},
                                   {"waiting", l_waiting},
                                   {"any_parked", l_any_parked},
                                   {"waitlist_slots", l_slots},
                                   {NULL, NULL}};
  aio_setfuncs(L, S, funcs);
}
