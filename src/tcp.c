/* TCP: connecting a Transport to one address, binding a Listener. Name
 * resolution and trying several addresses are the Lua side's (network.lua). */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "listener.h"

static int bind_local(lua_State *L, aio_tp *tp, int idx) {
  struct sockaddr_storage ss;
  int err = aio_to_sockaddr(L, idx, &ss);
  if (err == 0) err = uv_tcp_bind(&tp->u.tcp, (struct sockaddr *)&ss, 0);
  return err;
}

/* tcp_connect(loop, {host, port} [, local {host, port}]) -> Future; hosts
 * are numeric. A bad address or a failed bind raises at once. */
static int l_tcp_connect(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  struct sockaddr_storage ss;
  aio_connect *c;
  aio_tp *tp;
  int err;
  if ((err = aio_to_sockaddr(L, 2, &ss)) != 0) return aio_raise_os(L, err, "invalid address");
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  aio_loop_check_open(L, lp);
  lua_settop(L, 3);
  aio_future_new(L, lp);              /* 4 */
  tp = aio_tp_new(L, lp, AIO_TP_TCP); /* 5 */
  if ((err = uv_tcp_init_ex(lp->uv, &tp->u.tcp, ss.ss_family)) != 0) {
    aio_tp_discard(tp);
    return aio_raise_os(L, err, "socket");
  }
  uv_tcp_nodelay(&tp->u.tcp, 1);
  if (!lua_isnil(L, 3) && (err = bind_local(L, tp, 3)) != 0) {
    aio_tp_abandon(L, tp);
    return aio_raise_os(L, err, "error while attempting to bind on address");
  }
  c = malloc(sizeof *c);
  if (!c) {
    aio_tp_abandon(L, tp);
    return luaL_error(L, "not enough memory");
  }
  c->lp = lp;
  if ((err = uv_tcp_connect(&c->req, &tp->u.tcp, (struct sockaddr *)&ss, aio_tp_on_connect)) != 0) {
    free(c);
    aio_tp_abandon(L, tp);
    return aio_raise_os(L, err, "Connect call failed");
  }
  aio_connect_hold(L, c, 4);
  return 1;
}

static int set_flag(uv_os_fd_t fd, int level, int name) {
  int on = 1;
  return setsockopt(fd, level, name, &on, sizeof on) == 0 ? 0 : uv_translate_sys_error(errno);
}

/* tcp_listen(loop, {host, port}, reuse_address, reuse_port) -> Listener,
 * bound, not yet listening. The bind is ours, not uv_tcp_bind's, which
 * would defer EADDRINUSE to listen(); IPv6 sockets are IPv6-only, so "::"
 * and "0.0.0.0" can both be bound on one port. */
static int l_tcp_listen(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  struct sockaddr_storage ss;
  int reuse_address = lua_toboolean(L, 3), reuse_port = lua_toboolean(L, 4), err;
  aio_listener *ls;
  uv_os_fd_t fd;
  if ((err = aio_to_sockaddr(L, 2, &ss)) != 0) return aio_raise_os(L, err, "invalid address");
  aio_loop_check_open(L, lp);
  ls = aio_listener_new(L, lp, AIO_TP_TCP);
  if ((err = uv_tcp_init_ex(lp->uv, &ls->u.tcp, ss.ss_family)) != 0) {
    aio_listener_discard(ls);
    return aio_raise_os(L, err, "socket");
  }
  err = uv_fileno(&ls->u.h, &fd);
  if (err == 0 && reuse_address) err = set_flag(fd, SOL_SOCKET, SO_REUSEADDR);
  if (err == 0 && reuse_port) err = set_flag(fd, SOL_SOCKET, SO_REUSEPORT);
  if (err == 0 && ss.ss_family == AF_INET6) err = set_flag(fd, IPPROTO_IPV6, IPV6_V6ONLY);
  if (err == 0 && bind(fd, (struct sockaddr *)&ss,
                       ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                : sizeof(struct sockaddr_in)) != 0)
    err = uv_translate_sys_error(errno);
  if (err) {
    aio_listener_close(L, ls);
    return aio_raise_os(L, err, "error while attempting to bind on address");
  }
  return 1;
}

void aio_tcp_open(lua_State *L, aio_state *S) {
  static const luaL_Reg funcs[] = {
      {"tcp_connect", l_tcp_connect}, {"tcp_listen", l_tcp_listen}, {NULL, NULL}};
  aio_setfuncs(L, S, funcs);
}
