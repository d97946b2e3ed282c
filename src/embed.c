/* The rest of the public C interface (include/asyncio.h) for embedding hosts;
 * the loop and future entry points live beside their types. */
#include "internal.h"

int asyncio_open(lua_State *L) {
  int status;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "asyncio");
  status = lua_pcall(L, 1, 1, 0);
  return status;
}

asyncio_loop *asyncio_loop_test(lua_State *L, int idx) {
  aio_loop **box = aio_testudata(L, idx, AIO_T_LOOP, AIO_T_LOOP);
  return box ? *box : NULL;
}

void asyncio_loop_push(lua_State *L, asyncio_loop *loop) {
  aio_loop_push_self(L, loop);
}

uv_loop_t *asyncio_loop_uv(asyncio_loop *loop) {
  return loop->uv;
}

int asyncio_loop_backend_fd(asyncio_loop *loop) {
  return uv_backend_fd(loop->uv);
}
