/* Raw libuv TCP echo on 127.0.0.1:PORT whose reads go through Lua the way
 * bench/echo_protocol.lua's do, and nothing more: each read becomes a Lua
 * string handed to the same data_received (self.transport:write(data)),
 * whose write is a bare uv_try_write. No lua_pcall, no checks, no write
 * queue: unsafe as a server (an error unwinds through uv_run), it is the
 * floor of any runtime that runs a Lua callback per read, beside uv-copy
 * (the copy alone) in `make bench-echo` (peer uv-lua).
 *   cc -O2 -o echo_uv_lua echo_uv_lua.c -luv -llua5.4 && ./echo_uv_lua PORT */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "echo_uv.h"

#define RBUF_SIZE (256 * 1024) /* the runtime's receive buffer */

static const char protocol[] = "local Echo = {}\n"
                               "Echo.__index = Echo\n"
                               "function Echo:data_received(data) self.transport:write(data) end\n"
                               "return function(transport)\n"
                               "  return setmetatable({transport = transport}, Echo)\n"
                               "end\n";

static lua_State *L;
static char rbuf[RBUF_SIZE];

/* A connection: its protocol object and data_received in the registry. */
typedef struct {
  uv_tcp_t tcp;
  int proto, data_cb;
} conn;

static void on_close(uv_handle_t *h) {
  conn *c = h->data;
  luaL_unref(L, LUA_REGISTRYINDEX, c->proto);
  luaL_unref(L, LUA_REGISTRYINDEX, c->data_cb);
  free(c);
}

/* transport:write(data): at 1 KiB the socket always takes it all; a write
 * it does not take ends the server, which has no queue to keep it in */
static int l_write(lua_State *L1) {
  conn *c = *(conn **)lua_touserdata(L1, 1);
  size_t n;
  const char *p = lua_tolstring(L1, 2, &n);
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
  if (uv_try_write((uv_stream_t *)&c->tcp, &b, 1) != (int)n) {
    fprintf(stderr, "echo_uv_lua: a write the socket did not take at once\n");
    exit(1);
  }
  return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(rbuf, sizeof rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn *c = s->data;
  if (nread < 0 && !uv_is_closing((uv_handle_t *)s)) uv_close((uv_handle_t *)s, on_close);
  if (nread <= 0) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->data_cb);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->proto);
  lua_pushlstring(L, buf->base, (size_t)nread);
  lua_call(L, 2, 0);
}

static void on_connection(uv_stream_t *server, int status) {
  conn *c;
  if (status < 0 || !(c = malloc(sizeof *c))) return;
  uv_tcp_init(server->loop, &c->tcp);
  c->tcp.data = c;
  c->proto = c->data_cb = LUA_NOREF;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, on_close);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  lua_pushvalue(L, 1); /* the protocol factory */
  *(conn **)lua_newuserdatauv(L, sizeof c, 0) = c;
  luaL_setmetatable(L, "Transport");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "data_received");
  c->data_cb = luaL_ref(L, LUA_REGISTRYINDEX);
  c->proto = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int main(int argc, char **argv) {
  L = luaL_newstate();
  luaL_openlibs(L);
  lua_gc(L, LUA_GCGEN, 0, 0); /* as lua5.4 runs the project's servers */
  luaL_newmetatable(L, "Transport");
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, l_write);
  lua_setfield(L, -2, "write");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  if (luaL_dostring(L, protocol) != LUA_OK) {
    fprintf(stderr, "echo_uv_lua: %s\n", lua_tostring(L, -1));
    return 1;
  }
  return echo_serve("echo_uv_lua", argc, argv, on_connection);
}
