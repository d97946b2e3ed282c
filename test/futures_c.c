/* futures_c: futures created with asyncio_future_new and resolved from C with
 * asyncio_future_set_result (zero, one, several and many values, nils
 * included) and asyncio_future_set_exception, while a Lua task awaits them;
 * setting a done future again must return -1 and pop only the values. */
#include <unistd.h>

#include "harness.h"

#define MANY 300

static int resolve_late_ran;

/* Evaluates a Lua expression and checks that it is true. */
static void lua_check(lua_State *L, const char *expr, const char *what) {
  char code[512];
  int ok;
  snprintf(code, sizeof code, "return %s", expr);
  harness_run(L, what, code, 0, 1);
  ok = lua_toboolean(L, -1);
  lua_pop(L, 1);
  CHECK(ok, "%s", what);
}

/* Pushes futs[name], the futures the Lua side awaits. */
static int push_future(lua_State *L, const char *name) {
  lua_getglobal(L, "futs");
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
  return lua_gettop(L);
}

static void new_future(lua_State *L, asyncio_loop *loop, const char *name) {
  lua_getglobal(L, "futs");
  asyncio_future_new(L, loop);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

/* Posted with asyncio_call_threadsafe: resolves a future the task is
 * awaiting while the loop runs, from inside the loop. */
static void resolve_late(lua_State *L, void *data) {
  int rc;
  (void)data;
  push_future(L, "late");
  lua_pushliteral(L, "late");
  rc = asyncio_future_set_result(L, -2, 1);
  lua_pop(L, 1);
  resolve_late_ran = rc == 0 ? 1 : -1;
}

static const char *waiter_code =
    "order = {'early', 'multi', 'none', 'single_nil', 'payload', 'many', 'exc', 'exc_str', "
    "'late'}\n"
    "got = {}\n"
    "waiter = loop:create_task(function()\n"
    "  for _, name in ipairs(order) do\n"
    "    local f = futs[name]\n"
    "    got[name] = table.pack(pcall(f.await, f))\n"
    "  end\n"
    "end)\n"
    "futs.multi:add_done_callback(function(f) done_cb_results = select('#', f:result()) end)\n";

int main(void) {
  lua_State *L;
  asyncio_loop *loop;
  int i, idx, top, rc;
  static const char *names[] = {"fresh", "early", "multi",   "none", "single_nil", "payload",
                                "many",  "exc",   "exc_str", "late", "cancelled"};

  alarm(HARNESS_ALARM_SECONDS);
  setvbuf(stdout, NULL, _IOLBF, 0);
  L = harness_state();
  loop = asyncio_loop_new(L, NULL);
  lua_setglobal(L, "loop");
  lua_newtable(L);
  lua_setglobal(L, "futs");

  top = lua_gettop(L);
  asyncio_future_new(L, loop);
  CHECK(lua_gettop(L) == top + 1 && lua_type(L, -1) == LUA_TUSERDATA,
        "asyncio_future_new pushes one value");
  lua_setglobal(L, "fresh");
  lua_check(L, "asyncio.isfuture(fresh) and not fresh:done() and fresh:get_loop() == loop",
            "the new future is a pending Future of the loop");
  for (i = 1; i < (int)(sizeof names / sizeof *names); i++) new_future(L, loop, names[i]);

  /* resolved before anyone awaits it: await must return at once */
  idx = push_future(L, "early");
  lua_pushliteral(L, "early");
  CHECK(asyncio_future_set_result(L, idx, 1) == 0 && lua_gettop(L) == idx,
        "set_result on a pending future returns 0 and pops the value");
  lua_pop(L, 1);

  harness_run(L, "waiter", waiter_code, 0, 0);
  for (i = 0; i < 3; i++) asyncio_loop_run_once(L, loop, 0);
  lua_check(L, "got.early and got.early[1] and got.early[2] == 'early' and got.multi == nil",
            "a future resolved before the await: the task got its value without waiting");
  lua_check(L, "not waiter:done() and not futs.multi:done()",
            "the task waits on the next future, still pending");

  /* Resolve the futures from C while the loop is not running: the waiting
   * task is woken by the loop's next iterations. */
  top = lua_gettop(L);
  push_future(L, "multi");
  lua_pushinteger(L, 42);
  lua_pushliteral(L, "two");
  lua_pushnil(L);
  lua_pushnil(L);
  rc = asyncio_future_set_result(L, -5, 4);
  CHECK(rc == 0 && lua_gettop(L) == top + 1,
        "set_result with 4 values (nils inside and last), relative index: 0, values popped");
  lua_pushinteger(L, 1);
  lua_pushinteger(L, 2);
  rc = asyncio_future_set_result(L, -3, 2);
  CHECK(rc == -1 && lua_gettop(L) == top + 1,
        "set_result on a done future returns -1 and still pops its values");
  lua_pushliteral(L, "late error");
  rc = asyncio_future_set_exception(L, -2);
  CHECK(rc == -1 && lua_gettop(L) == top + 1,
        "set_exception on a done future returns -1 and pops the error");
  lua_settop(L, top);

  idx = push_future(L, "none");
  CHECK(asyncio_future_set_result(L, idx, 0) == 0 && lua_gettop(L) == idx,
        "set_result with no value");
  lua_settop(L, top);

  idx = push_future(L, "single_nil");
  lua_pushnil(L);
  CHECK(asyncio_future_set_result(L, idx, 1) == 0 && lua_gettop(L) == idx,
        "set_result with one nil");
  lua_settop(L, top);

  idx = push_future(L, "payload");
  harness_run(L, "payload", "payload = {answer = 42}\nreturn payload\n", 0, 1);
  CHECK(asyncio_future_set_result(L, idx, 1) == 0 && lua_gettop(L) == idx,
        "set_result with one table");
  lua_settop(L, top);

  idx = push_future(L, "many");
  luaL_checkstack(L, MANY, "test values");
  for (i = 1; i <= MANY; i++) lua_pushinteger(L, i);
  CHECK(asyncio_future_set_result(L, idx, MANY) == 0 && lua_gettop(L) == idx,
        "set_result with %d values", MANY);
  lua_settop(L, top);

  idx = push_future(L, "exc");
  harness_run(L, "boom", "boom = asyncio.RuntimeError('boom from C')\nreturn boom\n", 0, 1);
  CHECK(asyncio_future_set_exception(L, idx) == 0 && lua_gettop(L) == idx,
        "set_exception with an error object returns 0 and pops it");
  lua_pushinteger(L, 7);
  CHECK(asyncio_future_set_result(L, idx, 1) == -1 && lua_gettop(L) == idx,
        "set_result on a future done with an exception returns -1");
  lua_settop(L, top);

  idx = push_future(L, "exc_str");
  lua_pushliteral(L, "plain error");
  CHECK(asyncio_future_set_exception(L, -2) == 0 && lua_gettop(L) == idx,
        "set_exception with a string error, relative index");
  lua_settop(L, top);

  harness_run(L, "cancel", "assert(futs.cancelled:cancel())\n", 0, 0);
  idx = push_future(L, "cancelled");
  lua_pushboolean(L, 1);
  CHECK(asyncio_future_set_result(L, idx, 1) == -1 && lua_gettop(L) == idx,
        "set_result on a cancelled future returns -1");
  lua_pushliteral(L, "too late");
  CHECK(asyncio_future_set_exception(L, idx) == -1 && lua_gettop(L) == idx,
        "set_exception on a cancelled future returns -1");
  lua_settop(L, top);

  /* the last future is resolved by a C callback inside the running loop */
  rc = asyncio_call_threadsafe(loop, resolve_late, NULL);
  CHECK(rc == 0, "posted the callback that resolves the last future");
  harness_run(L, "run", "loop:run_until_complete(waiter)\nassert(waiter:done())\n", 0, 0);
  CHECK(resolve_late_ran == 1, "the posted callback resolved the future from inside the loop");

  lua_check(L,
            "got.multi[1] == true and got.multi.n == 5 and got.multi[2] == 42 and "
            "got.multi[3] == 'two' and got.multi[4] == nil and got.multi[5] == nil",
            "await returned the 4 values (42, 'two', nil, nil)");
  lua_check(L, "select('#', futs.multi:result()) == 4 and futs.multi:result() == 42",
            "the second set_result changed nothing");
  lua_check(L, "done_cb_results == 4", "the done callback added in Lua ran and saw 4 results");
  lua_check(L, "got.none[1] == true and got.none.n == 1", "await returned no value");
  lua_check(L, "got.single_nil[1] == true and got.single_nil.n == 2 and got.single_nil[2] == nil",
            "await returned exactly one nil");
  lua_check(L, "got.payload[1] == true and rawequal(got.payload[2], payload)",
            "await returned the very table");
  {
    char expr[256];
    snprintf(expr, sizeof expr,
             "got.many[1] == true and got.many.n == %d and got.many[2] == 1 and "
             "got.many[%d] == %d",
             MANY + 1, MANY + 1, MANY);
    lua_check(L, expr, "await returned all 300 values in order");
  }
  lua_check(L,
            "got.exc[1] == false and rawequal(got.exc[2], boom) and "
            "asyncio.isinstance(got.exc[2], asyncio.RuntimeError)",
            "await raised the error object set from C");
  lua_check(L, "rawequal(futs.exc:exception(), boom)", "future:exception() returns it too");
  lua_check(L, "got.exc_str[1] == false and got.exc_str[2] == 'plain error'",
            "await raised the string error set from C");
  lua_check(L, "got.late[1] == true and got.late[2] == 'late'",
            "await returned the value set by the posted callback");
  lua_check(L, "futs.cancelled:cancelled()", "the cancelled future stayed cancelled");

  harness_run(L, "close", "loop:close()\n", 0, 0);
  lua_close(L);
  printf("futures_c: all checks passed\n");
  return 0;
}
