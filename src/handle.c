/* Handle and TimerHandle: a scheduled Lua callback. The callback and its
 * arguments live in the userdata's own uservalues, so scheduling one costs a
 * single allocation. */

/***
What `loop:call_soon` (`Handle`) and `call_later`/`call_at` (`TimerHandle`) return.
Python: `asyncio.Handle`, `asyncio.TimerHandle`.
@classmod Handle
*/

#include <stdio.h>

#include "internal.h"

aio_handle *aio_handle_new(lua_State *L, aio_loop *lp, int fn_idx, int nargs, int is_timer) {
  aio_handle *h;
  int i;
  fn_idx = lua_absindex(L, fn_idx);
  h = lua_newuserdatauv(L, sizeof *h, 1 + nargs);
  h->loop = lp;
  h->timer.index = 0;
  h->timer.kind = AIO_TIMER_HANDLE;
  h->when = 0;
  h->slot = 0;
  h->cancelled = h->scheduled = 0;
  h->is_timer = (uint8_t)is_timer;
  h->nargs = (uint8_t)nargs;
  aio_setmetatable(L, lp->S, is_timer ? AIO_T_TIMER : AIO_T_HANDLE);
  for (i = 0; i <= nargs; i++) {
    lua_pushvalue(L, fn_idx + i);
    lua_setiuservalue(L, -2, i + 1);
  }
  return h;
}

void aio_handle_schedule(lua_State *L, aio_loop *lp, aio_handle *h, int idx) {
  int slot = aio_anchors_put(L, &lp->handles, idx);
  h->scheduled = 1;
  aio_loop_push(lp, AIO_RUN_HANDLE, h, slot, LUA_NOREF);
}

static aio_handle *check_handle(lua_State *L, int idx) {
  return aio_checkudata(L, idx, AIO_T_HANDLE, AIO_T_TIMER, "Handle");
}

/* Error handler for callbacks: keeps the error value and adds where it was
 * raised, for the exception handler's context. */
int aio_callback_msgh(lua_State *L) {
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  aio_traceback(L, L, NULL, 1);
  lua_rawseti(L, -2, 2);
  return 1;
}

/* Reports what aio_callback_msgh made of an error (at err_idx) to the
 * loop's exception handler as {message = msg, exception, traceback, <key> =
 * the value at key_idx}; replaces it with the bare error value. */
void aio_report_callback_error(lua_State *L, aio_loop *lp, int err_idx, const char *msg,
                               const char *key, int key_idx) {
  err_idx = lua_absindex(L, err_idx);
  key_idx = lua_absindex(L, key_idx);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  if (lua_istable(L, err_idx)) {
    lua_rawgeti(L, err_idx, 2);
    lua_setfield(L, -2, "traceback");
    lua_rawgeti(L, err_idx, 1);
    lua_replace(L, err_idx);
  }
  lua_pushvalue(L, err_idx);
  lua_setfield(L, -2, "exception");
  if (key) {
    lua_pushvalue(L, key_idx);
    lua_setfield(L, -2, key);
  }
  aio_loop_call_exception_handler(L, lp, -1);
  lua_pop(L, 1);
}

/* Calls the function at `base` with the values above it under the callback
 * error handler (`what` names it in slow-callback warnings). Returns 0
 * leaving nres results at base, or, when it raised: reports it (see above),
 * leaves the error at base and returns 1. msg NULL: "Exception in <what>",
 * formatted only then (this runs for every Lua callback). */
int aio_pcall_reporting(lua_State *L, aio_loop *lp, int base, int nres, const char *what,
                        const char *msg, const char *key, int key_idx) {
  int nargs = lua_gettop(L) - base, debug = lp->debug, status;
  aio_debug_frame fr;
  if (debug) aio_debug_enter(L, lp, L, NULL, base, aio_clock_ns(lp), &fr);
  lua_pushcfunction(L, aio_callback_msgh);
  lua_insert(L, base);
  status = lua_pcall(L, nargs, nres, base);
  lua_remove(L, base);
  if (debug) aio_debug_leave(L, lp, &fr, 0, what, NULL, 0);
  if (status == LUA_OK) return 0;
  if (!msg) msg = lua_pushfstring(L, "Exception in %s", what);
  aio_report_callback_error(L, lp, base, msg, key, key_idx);
  lua_settop(L, base);
  return 1;
}

int aio_call_reporting(lua_State *L, aio_loop *lp, int base, const char *what, const char *key,
                       int key_idx) {
  int failed = aio_pcall_reporting(L, lp, base, 0, what, NULL, key, key_idx);
  lua_settop(L, base - 1);
  return failed;
}

/* slot: where the queue entry anchors the handle in lp->handles */
void aio_handle_run(lua_State *L, aio_loop *lp, aio_handle *h, int slot) {
  int base = lua_gettop(L), i;
  aio_anchors_push(L, &lp->handles, slot);
  aio_anchors_drop(L, &lp->handles, slot);
  h->scheduled = 0;
  if (h->cancelled) {
    lua_settop(L, base);
    return;
  }
  for (i = 1; i <= h->nargs + 1; i++) lua_getiuservalue(L, base + 1, i);
  aio_call_reporting(L, lp, base + 2, h->is_timer ? "timer callback" : "callback", "handle",
                     base + 1);
  lua_settop(L, base);
}

/***
Cancels the callback (nothing when it has run).
@function Handle:cancel
@python Handle.cancel
*/
static int l_cancel(lua_State *L) {
  aio_handle *h = check_handle(L, 1);
  int i;
  if (h->cancelled) return 0;
  h->cancelled = 1;
  if (h->timer.index) {
    aio_loop_remove_timer(h->loop, &h->timer);
    aio_anchors_drop(L, &h->loop->handles, h->slot);
    h->slot = 0;
    h->scheduled = 0;
  }
  /* drop the callback and its arguments so they can be collected now */
  for (i = 1; i <= h->nargs + 1; i++) {
    lua_pushnil(L);
    lua_setiuservalue(L, 1, i);
  }
  return 0;
}

/***
Whether it was cancelled.
@function Handle:cancelled
@python Handle.cancelled
@treturn boolean
*/
static int l_cancelled(lua_State *L) {
  lua_pushboolean(L, check_handle(L, 1)->cancelled);
  return 1;
}

/***
A TimerHandle's loop time.
@function Handle:when
@python TimerHandle.when
@treturn number
*/
static int l_when(lua_State *L) {
  aio_handle *h = aio_checkudata(L, 1, AIO_T_TIMER, AIO_T_TIMER, "TimerHandle");
  lua_pushnumber(L, h->when);
  return 1;
}

/***
The handle's loop.
@function Handle:get_loop
@python Handle.get_loop
@treturn Loop
*/
static int l_get_loop(lua_State *L) {
  aio_loop_push_self(L, check_handle(L, 1)->loop);
  return 1;
}

static int l_tostring(lua_State *L) {
  aio_handle *h = check_handle(L, 1);
  if (h->is_timer)
    lua_pushfstring(L, "<TimerHandle%s when=%f>", h->cancelled ? " cancelled" : "", h->when);
  else
    lua_pushfstring(L, "<Handle%s>", h->cancelled ? " cancelled" : "");
  return 1;
}

void aio_handle_open(lua_State *L, aio_state *S) {
  static const luaL_Reg methods[] = {{"cancel", l_cancel},
                                     {"cancelled", l_cancelled},
                                     {"get_loop", l_get_loop},
                                     {"when", l_when},
                                     {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__tostring", l_tostring}, {NULL, NULL}};
  aio_newclass(L, S, AIO_T_HANDLE, AIO_HANDLE_MT, methods, meta);
  lua_pushnil(L);
  lua_setfield(L, -2, "when"); /* plain Handles have no deadline */
  lua_setfield(L, -2, "Handle");
  aio_newclass(L, S, AIO_T_TIMER, AIO_TIMER_MT, methods, meta);
  lua_setfield(L, -2, "TimerHandle");
}
