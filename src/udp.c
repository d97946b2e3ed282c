/* Datagram endpoints: the UDP transport (uv_udp_t) and the C primitives that
 * datagram.lua's loop:create_datagram_endpoint is built on. */

/***
Datagram transports (`loop:create_datagram_endpoint`).
@module transports
*/

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

#define HIGH_WATER (64 * 1024) /* Python's default write buffer limits */

typedef struct udp_ep {
  uv_udp_t h;
  aio_closable cl;
  aio_loop *lp;
  size_t wbuf; /* bytes in uv_udp_send requests not completed yet */
  size_t high, low;
  int nsend;          /* those requests */
  int keep_ref;       /* the box, from open until the socket closes */
  uint8_t closing;    /* close() or abort() was called, or the loop closed */
  uint8_t uv_closing; /* uv_close started */
  uint8_t lost_sched; /* connection_lost is scheduled */
  uint8_t connected;
  uint8_t has_remote; /* sendto goes to `remote` (connected, or broadcast) */
  uint8_t paused;     /* pause_writing was called */
  uint8_t box_gone, handle_done;
  struct sockaddr_storage remote;
  struct sockaddr_storage sockname; /* last known, for after close */
} udp_ep;

/* Uservalues: 1 = protocol; 2 = in-flight strings keyed by request. */
typedef struct {
  udp_ep *u;
} udp_box;

typedef struct {
  uv_udp_send_t req;
  size_t len;
} send_req;

typedef struct {
  uv_getaddrinfo_t req;
  aio_closable cl;
  aio_loop *lp;
  int fut_ref;
} resolve_req;

/* Registry key of the weak table u -> box: how callbacks find a transport
 * (keep_ref keeps an open one alive). */
static const char boxes_key = 0;

static udp_ep *check_ep(lua_State *L, int idx) {
  udp_box *b = aio_checkudata(L, idx, AIO_T_DATAGRAM, AIO_T_DATAGRAM, "DatagramTransport");
  if (!b->u) luaL_argerror(L, idx, "transport is released");
  return b->u;
}

static int push_box(lua_State *L, udp_ep *u) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &boxes_key);
  lua_rawgetp(L, -1, u);
  lua_remove(L, -2);
  if (!lua_isnil(L, -1)) return 1;
  lua_pop(L, 1);
  return 0;
}

/* proto:name(...) where proto is at 1, name at 2 */
static int call_method(lua_State *L) {
  lua_getfield(L, 1, lua_tostring(L, 2));
  if (lua_isnil(L, -1)) return 0;
  lua_insert(L, 1);
  lua_remove(L, 3);
  lua_call(L, lua_gettop(L) - 1, 0);
  return 0;
}

/* Calls the protocol's method `name` with the nargs values on top (popped);
 * a missing method is skipped, an error goes to the exception handler. */
static void call_proto(lua_State *L, aio_loop *lp, int box, const char *name, int nargs) {
  int base = lua_gettop(L) - nargs;
  lua_getiuservalue(L, box, 1);
  if (lua_isnil(L, -1)) {
    lua_settop(L, base);
    return;
  }
  lua_insert(L, base + 1);
  lua_pushcfunction(L, call_method);
  lua_insert(L, base + 2);
  lua_pushvalue(L, base + 1);
  lua_insert(L, base + 3);
  lua_pushstring(L, name);
  lua_insert(L, base + 4);
  aio_call_reporting(L, lp, base + 2, name, "protocol", base + 1);
  lua_settop(L, base);
}

static void on_close(uv_handle_t *h) {
  udp_ep *u = h->data;
  aio_loop *lp = u->lp;
  u->handle_done = 1;
  if (u->box_gone) free(u);
  aio_loop_handle_closed(lp);
}

/* Shuts the socket: pending sends are cancelled, nothing is read any more. */
static void start_close(lua_State *L, udp_ep *u) {
  if (u->uv_closing) return;
  u->uv_closing = u->closing = 1;
  aio_closable_unlink(&u->cl);
  luaL_unref(L, LUA_REGISTRYINDEX, u->keep_ref);
  u->keep_ref = LUA_NOREF;
  u->lp->nhandles_open++;
  uv_close((uv_handle_t *)&u->h, on_close);
}

static void loop_closing(aio_closable *c) {
  udp_ep *u = (udp_ep *)((char *)c - offsetof(udp_ep, cl));
  start_close(aio_loop_thread(u->lp), u);
}
static const aio_closable_type ep_type = {loop_closing, "transport", "<datagram transport>", NULL};

static void schedule(lua_State *L, aio_loop *lp, lua_CFunction fn, int nargs) {
  int base = lua_gettop(L) - nargs;
  aio_handle *h;
  lua_pushcfunction(L, fn);
  lua_insert(L, base + 1);
  h = aio_handle_new(L, lp, base + 1, nargs, 0);
  aio_handle_schedule(L, lp, h, -1);
  lua_settop(L, base);
}

/* Handle callback (transport) */
static int lost_cb(lua_State *L) {
  udp_box *b = lua_touserdata(L, 1);
  lua_pushnil(L);
  call_proto(L, b->u->lp, 1, "connection_lost", 1);
  lua_pushnil(L);
  lua_setiuservalue(L, 1, 1); /* as Python, the transport forgets its protocol */
  return 0;
}

/* Closes the socket and schedules connection_lost, once. */
static void finish_close(lua_State *L, udp_ep *u, int box) {
  if (u->lost_sched) return;
  u->lost_sched = 1;
  start_close(L, u);
  lua_pushvalue(L, box);
  schedule(L, u->lp, lost_cb, 1);
}

/* ---- receiving --------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  aio_loop_rbuf_take(((udp_ep *)h->data)->lp, buf);
}

typedef struct {
  udp_ep *u;
  ssize_t n;
  const char *data;
  const struct sockaddr *addr;
} recv_ev;

static int deliver_recv(lua_State *L) {
  recv_ev *ev = lua_touserdata(L, 1);
  int box;
  if (!push_box(L, ev->u)) return 0;
  box = lua_gettop(L);
  if (ev->n < 0) {
    aio_push_os_error(L, (int)ev->n, "recvfrom");
    call_proto(L, ev->u->lp, box, "error_received", 1);
  } else {
    lua_pushlstring(L, ev->data, (size_t)ev->n);
    aio_push_sockaddr(L, ev->addr);
    call_proto(L, ev->u->lp, box, "datagram_received", 2);
  }
  return 0;
}

static void on_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *addr,
                    unsigned flags) {
  udp_ep *u = h->data;
  aio_loop *lp = u->lp;
  (void)flags;
  /* n == 0 without an address: nothing was there to read */
  if ((n != 0 || addr) && !u->closing && !lp->closed) {
    recv_ev ev;
    ev.u = u;
    ev.n = n;
    ev.data = buf->base;
    ev.addr = addr;
    /* protocol errors are reported inside deliver_* already */
    aio_loop_pcall(lp, deliver_recv, &ev, NULL);
  }
  aio_loop_rbuf_give(lp, buf);
}

/* ---- sending ----------------------------------------------------------- */

static void maybe_pause(lua_State *L, udp_ep *u, int box) {
  if (u->paused || u->wbuf <= u->high) return;
  u->paused = 1;
  call_proto(L, u->lp, box, "pause_writing", 0);
}

static void maybe_resume(lua_State *L, udp_ep *u, int box) {
  if (!u->paused || u->wbuf > u->low) return;
  u->paused = 0;
  call_proto(L, u->lp, box, "resume_writing", 0);
}

typedef struct {
  send_req *s;
  int status;
} send_ev;

static int deliver_send(lua_State *L) {
  send_ev *ev = lua_touserdata(L, 1);
  udp_ep *u = ev->s->req.handle->data;
  int box;
  if (!push_box(L, u)) return 0;
  box = lua_gettop(L);
  lua_getiuservalue(L, box, 2);
  lua_pushnil(L);
  lua_rawsetp(L, -2, ev->s);
  lua_pop(L, 1);
  if (ev->status < 0 && ev->status != UV_ECANCELED) {
    aio_push_os_error(L, ev->status, "sendto");
    call_proto(L, u->lp, box, "error_received", 1);
  }
  maybe_resume(L, u, box);
  if (u->closing && u->nsend == 0) finish_close(L, u, box);
  return 0;
}

static void on_send(uv_udp_send_t *req, int status) {
  send_req *s = (send_req *)req;
  udp_ep *u = req->handle->data;
  u->wbuf -= s->len;
  u->nsend--;
  if (!u->lp->closed) {
    send_ev ev;
    ev.s = s;
    ev.status = status;
    aio_loop_pcall(u->lp, deliver_send, &ev, NULL);
  }
  free(s);
}

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
  if (a->ss_family != b->ss_family) return 0;
  if (a->ss_family == AF_INET) {
    const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
    return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
  }
  {
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0 &&
           x->sin6_scope_id == y->sin6_scope_id;
  }
}

static void push_addr_string(lua_State *L, const struct sockaddr_storage *ss) {
  aio_push_sockaddr(L, (const struct sockaddr *)ss);
  lua_rawgeti(L, -1, 1);
  lua_rawgeti(L, -2, 2);
  lua_pushfstring(L, "{%s, %s}", lua_tostring(L, -2), lua_tostring(L, -1));
  lua_replace(L, -4);
  lua_pop(L, 2);
}

/* Queues a send the socket could not take at once; the Lua string at 2 is
 * kept in the box until the request completes instead of being copied. */
static int queue_send(lua_State *L, udp_ep *u, const char *p, size_t len,
                      const struct sockaddr *sa) {
  send_req *s;
  uv_buf_t buf = uv_buf_init((char *)p, (unsigned)len);
  int err;
  if (lua_getiuservalue(L, 1, 2) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 2);
  }
  s = malloc(sizeof *s);
  if (!s) return luaL_error(L, "not enough memory");
  lua_pushvalue(L, 2);
  lua_rawsetp(L, -2, s);
  s->len = len;
  if ((err = uv_udp_send(&s->req, &u->h, &buf, 1, sa, on_send)) != 0) {
    lua_pushnil(L);
    lua_rawsetp(L, -2, s);
    free(s);
    return err;
  }
  lua_pop(L, 1);
  u->wbuf += len;
  u->nsend++;
  maybe_pause(L, u, 1);
  return 0;
}

/***
Sends `data` to `addr` (nil: the `remote_addr`); never blocks.
@function DatagramTransport:sendto
@python DatagramTransport.sendto
@tparam string data
@tparam[opt] table addr `{host, port}`
@raise ValueError for an address with a connected endpoint, or none without
*/
static int l_sendto(lua_State *L) {
  udp_ep *u = check_ep(L, 1);
  size_t len;
  const char *p = luaL_checklstring(L, 2, &len);
  struct sockaddr_storage ss;
  const struct sockaddr *sa = NULL;
  int err;
  luaL_argcheck(L, len <= 0x7fffffff, 2, "datagram too large");
  if (!lua_isnoneornil(L, 3)) {
    if (aio_to_sockaddr(L, 3, &ss) != 0)
      return aio_raise(L, "ValueError", "Invalid address: a numeric {host, port} is expected");
    if (u->has_remote && !same_addr(&ss, &u->remote)) {
      push_addr_string(L, &u->remote);
      return aio_raise(L, "ValueError", "Invalid address: must be nil or %s", lua_tostring(L, -1));
    }
    sa = (const struct sockaddr *)&ss;
  }
  if (u->has_remote) sa = u->connected ? NULL : (const struct sockaddr *)&u->remote;
  if (u->closing) return 0; /* as Python: dropped once the transport is closing */
  if (u->nsend == 0) {
    uv_buf_t buf = uv_buf_init((char *)p, (unsigned)len);
    err = uv_udp_try_send(&u->h, &buf, 1, sa);
    if (err >= 0) return 0;
  } else {
    err = UV_EAGAIN;
  }
  if (err == UV_EAGAIN) err = queue_send(L, u, p, len, sa);
  if (err < 0) {
    aio_push_os_error(L, err, "sendto");
    call_proto(L, u->lp, 1, "error_received", 1);
  }
  return 0;
}

/* ---- transport methods ------------------------------------------------- */

/***
Closes after the buffered datagrams are sent.
@function DatagramTransport:close
@python BaseTransport.close
*/
static int l_close(lua_State *L) {
  udp_ep *u = check_ep(L, 1);
  if (u->closing) return 0;
  u->closing = 1;
  uv_udp_recv_stop(&u->h);
  if (u->nsend == 0) finish_close(L, u, 1);
  return 0;
}

/***
Closes at once.
@function DatagramTransport:abort
@python DatagramTransport.abort
*/
static int l_abort(lua_State *L) {
  udp_ep *u = check_ep(L, 1);
  if (u->lost_sched || u->uv_closing) return 0;
  finish_close(L, u, 1);
  return 0;
}

/***
Whether it is closed or closing.
@function DatagramTransport:is_closing
@python BaseTransport.is_closing
@treturn boolean
*/
static int l_is_closing(lua_State *L) {
  lua_pushboolean(L, check_ep(L, 1)->closing);
  return 1;
}

static void update_sockname(udp_ep *u) {
  int len = sizeof u->sockname;
  uv_udp_getsockname(&u->h, (struct sockaddr *)&u->sockname, &len);
}

/***
`"sockname"`, `"peername"`, `"socket"`.
@function DatagramTransport:get_extra_info
@python BaseTransport.get_extra_info
@tparam string name
@param[opt] default
*/
static int l_get_extra_info(lua_State *L) {
  udp_ep *u = check_ep(L, 1);
  const char *name = luaL_checkstring(L, 2);
  lua_settop(L, 3);
  if (strcmp(name, "sockname") == 0) {
    if (!u->uv_closing) update_sockname(u); /* a first send may have bound it */
    aio_push_sockaddr(L, (const struct sockaddr *)&u->sockname);
  } else if (strcmp(name, "peername") == 0 && u->connected) {
    aio_push_sockaddr(L, (const struct sockaddr *)&u->remote);
  } else if (strcmp(name, "socket") == 0 && !u->uv_closing) {
    uv_os_fd_t fd;
    uv_fileno((const uv_handle_t *)&u->h, &fd);
    lua_pushinteger(L, fd);
  } else {
    lua_pushvalue(L, 3);
  }
  return 1;
}

/***
The protocol.
@function DatagramTransport:get_protocol
@python BaseTransport.get_protocol
@treturn table
*/
static int l_get_protocol(lua_State *L) {
  check_ep(L, 1);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

/***
Switches the protocol.
@function DatagramTransport:set_protocol
@python BaseTransport.set_protocol
@tparam table protocol
*/
static int l_set_protocol(lua_State *L) {
  check_ep(L, 1);
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  lua_setiuservalue(L, 1, 1);
  return 0;
}

/***
Bytes buffered, not yet sent.
@function DatagramTransport:get_write_buffer_size
@python WriteTransport.get_write_buffer_size
@treturn integer
*/
static int l_get_write_buffer_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_ep(L, 1)->wbuf);
  return 1;
}

/***
The flow-control marks.
@function DatagramTransport:get_write_buffer_limits
@python WriteTransport.get_write_buffer_limits
@treturn integer low
@treturn integer high
*/
static int l_get_write_buffer_limits(lua_State *L) {
  udp_ep *u = check_ep(L, 1);
  lua_pushinteger(L, (lua_Integer)u->low);
  lua_pushinteger(L, (lua_Integer)u->high);
  return 2;
}

/***
Sets the flow-control marks.
@function DatagramTransport:set_write_buffer_limits
@python WriteTransport.set_write_buffer_limits
@tparam[opt] integer high
@tparam[opt] integer low
@raise ValueError unless high >= low >= 0
*/
static int l_set_write_buffer_limits(lua_State *L) {
  udp_ep *u = check_ep(L, 1);
  lua_Integer high, low;
  if (lua_isnoneornil(L, 2)) {
    low = luaL_optinteger(L, 3, HIGH_WATER / 4);
    high = lua_isnoneornil(L, 3) ? HIGH_WATER : 4 * low;
  } else {
    high = luaL_checkinteger(L, 2);
    low = luaL_optinteger(L, 3, high / 4);
  }
  if (!(high >= low && low >= 0))
    return aio_raise(L, "ValueError", "high (%d) must be >= low (%d) must be >= 0", (int)high,
                     (int)low);
  u->high = (size_t)high;
  u->low = (size_t)low;
  maybe_pause(L, u, 1);
  return 0;
}

static int l_gc(lua_State *L) {
  udp_box *b = lua_touserdata(L, 1);
  udp_ep *u = b->u;
  if (!u) return 0;
  b->u = NULL;
  start_close(L, u);
  u->box_gone = 1;
  if (u->handle_done) free(u);
  return 0;
}

static int l_tostring(lua_State *L) {
  udp_ep *u = check_ep(L, 1);
  if (u->uv_closing) {
    lua_pushliteral(L, "<DatagramTransport closed>");
  } else {
    uv_os_fd_t fd;
    uv_fileno((const uv_handle_t *)&u->h, &fd);
    lua_pushfstring(L, "<DatagramTransport fd=%d%s>", (int)fd, u->closing ? " closing" : "");
  }
  return 1;
}

/* ---- creating an endpoint ---------------------------------------------- */

static int check_family(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    const char *s = lua_tostring(L, idx);
    if (strcmp(s, "inet") == 0 || strcmp(s, "AF_INET") == 0) return AF_INET;
    if (strcmp(s, "inet6") == 0 || strcmp(s, "AF_INET6") == 0) return AF_INET6;
    if (strcmp(s, "unspec") == 0 || strcmp(s, "AF_UNSPEC") == 0) return AF_UNSPEC;
  } else {
    lua_Integer f = luaL_optinteger(L, idx, AF_UNSPEC);
    if (f == AF_INET || f == AF_INET6 || f == AF_UNSPEC) return (int)f;
  }
  return luaL_argerror(L, idx, "family must be \"inet\", \"inet6\" or nil");
}

static int numeric_addr(const char *host, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (strchr(host, ':')) return uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss);
  return uv_ip4_addr(host, port, (struct sockaddr_in *)ss);
}

typedef struct {
  resolve_req *r;
  int status;
  const struct addrinfo *res;
} resolve_ev;

static int deliver_resolved(lua_State *L) {
  resolve_ev *ev = lua_touserdata(L, 1);
  const struct addrinfo *ai;
  int n = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ev->r->fut_ref);
  if (((aio_future *)lua_touserdata(L, 2))->state != AIO_PENDING) return 0;
  if (ev->status < 0) {
    aio_push_os_error(L, ev->status, "getaddrinfo");
    aio_future_set_exc(L, 2, -1);
    return 0;
  }
  lua_newtable(L);
  for (ai = ev->res; ai; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    aio_push_sockaddr(L, ai->ai_addr);
    lua_rawseti(L, -2, ++n);
  }
  aio_future_set_results(L, 2, -1, 1);
  return 0;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  resolve_req *r = (resolve_req *)req;
  aio_loop *lp = r->lp;
  aio_closable_unlink(&r->cl);
  if (r->fut_ref != LUA_NOREF) {
    resolve_ev ev;
    ev.r = r;
    ev.status = status;
    ev.res = res;
    aio_loop_pcall(lp, deliver_resolved, &ev, NULL);
    luaL_unref(aio_loop_thread(lp), LUA_REGISTRYINDEX, r->fut_ref);
  }
  uv_freeaddrinfo(res);
  free(r);
  aio_loop_handle_closed(lp);
}

/* loop close: the future is dropped; the request ends as soon as it can */
static void resolve_abandon(aio_closable *c) {
  resolve_req *r = (resolve_req *)((char *)c - offsetof(resolve_req, cl));
  luaL_unref(aio_loop_thread(r->lp), LUA_REGISTRYINDEX, r->fut_ref);
  r->fut_ref = LUA_NOREF;
  uv_cancel((uv_req_t *)&r->req);
}
static const aio_closable_type resolve_type = {resolve_abandon, NULL, NULL, NULL};

/* core._udp_resolve(loop, host, port, family) -> Future of a list of
 * numeric {host, port}; "" or nil is the wildcard address. */
static int l_udp_resolve(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  const char *host = luaL_optstring(L, 2, "");
  lua_Integer port = luaL_checkinteger(L, 3);
  int family = check_family(L, 4), fut, err;
  struct sockaddr_storage ss;
  struct addrinfo hints;
  char service[8];
  resolve_req *r;
  luaL_argcheck(L, port >= 0 && port <= 65535, 3, "port out of range 0-65535");
  aio_loop_check_open(L, lp);
  if (*host == '\0') host = family == AF_INET6 ? "::" : "0.0.0.0";
  aio_future_new(L, lp);
  fut = lua_gettop(L);
  if (numeric_addr(host, (int)port, &ss) == 0) {
    lua_newtable(L);
    if (family == AF_UNSPEC || family == ss.ss_family) {
      aio_push_sockaddr(L, (const struct sockaddr *)&ss);
      lua_rawseti(L, -2, 1);
    }
    aio_future_set_results(L, fut, -1, 1);
    lua_settop(L, fut);
    return 1;
  }
  lua_pushvalue(L, fut);
  err = luaL_ref(L, LUA_REGISTRYINDEX);
  r = malloc(sizeof *r);
  if (!r) {
    luaL_unref(L, LUA_REGISTRYINDEX, err);
    return luaL_error(L, "not enough memory");
  }
  r->fut_ref = err;
  r->lp = lp;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = family;
  hints.ai_socktype = SOCK_DGRAM;
  snprintf(service, sizeof service, "%d", (int)port);
  if ((err = uv_getaddrinfo(lp->uv, &r->req, on_resolved, host, service, &hints)) != 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, r->fut_ref);
    free(r);
    return aio_raise_os(L, err, "getaddrinfo");
  }
  aio_closable_link(lp, &r->cl, &resolve_type);
  lp->nhandles_open++; /* an owned uv loop closes only once the request is back */
  return 1;
}

/* Sets the socket up as asked; returns 0 or a libuv error, naming the step. */
static int configure(udp_ep *u, const struct sockaddr *local, const struct sockaddr *remote,
                     int reuse_port, int broadcast, const char **what) {
  uv_os_fd_t fd;
  int one = 1, err;
  if (reuse_port) {
    *what = "setsockopt SO_REUSEPORT";
    uv_fileno((const uv_handle_t *)&u->h, &fd);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) return -errno;
  }
  if (broadcast) {
    *what = "setsockopt SO_BROADCAST";
    if ((err = uv_udp_set_broadcast(&u->h, 1)) != 0) return err;
  }
  if (local) {
    *what = "bind";
    if ((err = uv_udp_bind(&u->h, local, 0)) != 0) return err;
  }
  if (remote) {
    memcpy(&u->remote, remote,
           remote->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                         : sizeof(struct sockaddr_in));
    u->has_remote = 1;
    if (!broadcast) { /* as Python: a broadcasting socket sends to remote_addr unconnected */
      *what = "connect";
      if ((err = uv_udp_connect(&u->h, remote)) != 0) return err;
      u->connected = 1;
    }
  }
  return 0;
}

static const struct sockaddr *opt_sockaddr(lua_State *L, int idx, struct sockaddr_storage *ss) {
  if (lua_isnoneornil(L, idx)) return NULL;
  if (aio_to_sockaddr(L, idx, ss) != 0) luaL_argerror(L, idx, "numeric {host, port} expected");
  return (const struct sockaddr *)ss;
}

/* Pushes a new endpoint whose handle is initialised for family; the box's
 * __gc releases the handle from then on. */
static udp_ep *new_endpoint(lua_State *L, aio_loop *lp, int family, const char *what) {
  udp_box *b = lua_newuserdatauv(L, sizeof *b, 2);
  udp_ep *u;
  int err;
  b->u = NULL;
  aio_setmetatable(L, lp->S, AIO_T_DATAGRAM);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &boxes_key);
  u = calloc(1, sizeof *u);
  if (!u) luaL_error(L, "not enough memory");
  if ((err = uv_udp_init_ex(lp->uv, &u->h, (unsigned)family)) != 0) {
    free(u);
    aio_raise_os(L, err, what);
  }
  u->h.data = u;
  u->lp = lp;
  u->keep_ref = LUA_NOREF;
  u->high = HIGH_WATER;
  u->low = HIGH_WATER / 4;
  aio_closable_link(lp, &u->cl, &ep_type);
  aio_debug_note_closable(L, lp, &u->cl);
  b->u = u;
  lua_pushvalue(L, -2);
  lua_rawsetp(L, -2, u);
  lua_pop(L, 1);
  /* as in Python, where the selector holds it, an open endpoint is kept by
   * the loop: a server nobody refers to goes on serving */
  lua_pushvalue(L, -1);
  u->keep_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return u;
}

/* core._udp_open(loop, local, remote, family, reuse_port, allow_broadcast)
 * -> transport, without a protocol yet; raises OSError. */
static int l_udp_open(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  struct sockaddr_storage lss, rss;
  const struct sockaddr *local = opt_sockaddr(L, 2, &lss);
  const struct sockaddr *remote = opt_sockaddr(L, 3, &rss);
  int family = check_family(L, 4), err;
  const char *what = "socket";
  udp_ep *u;
  aio_loop_check_open(L, lp);
  if (local)
    family = local->sa_family;
  else if (remote)
    family = remote->sa_family;
  if (family == AF_UNSPEC) return aio_raise(L, "ValueError", "unexpected address family");
  if (local && remote && local->sa_family != remote->sa_family)
    return aio_raise(L, "ValueError", "local and remote addresses of different families");
  u = new_endpoint(L, lp, family, what);
  if ((err = configure(u, local, remote, lua_toboolean(L, 5), lua_toboolean(L, 6), &what)) != 0) {
    start_close(L, u);
    return aio_raise_os(L, err, what);
  }
  update_sockname(u);
  return 1;
}

/* core._udp_adopt(loop, fd, api) -> transport over an open UDP socket (opts.sock),
 * which it owns from then on; a connected one sends to its peer. */
static int l_udp_adopt(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  lua_Integer fd = luaL_checkinteger(L, 2);
  const char *api = luaL_checkstring(L, 3);
  socklen_t len = sizeof(struct sockaddr_storage);
  udp_ep *u;
  int err;
  luaL_argcheck(L, fd >= 0 && fd <= 0x7fffffff, 2, "invalid file descriptor");
  aio_loop_check_open(L, lp);
  (void)aio_sock_probe(L, (int)fd, api, SOCK_DGRAM, AF_UNSPEC, 0);
  u = new_endpoint(L, lp, AF_UNSPEC, api);
  if ((err = aio_fd_owned(lp, (int)fd) ? UV_EEXIST : uv_udp_open(&u->h, (uv_os_sock_t)fd)) != 0) {
    start_close(L, u);
    if (err == UV_EEXIST)
      return aio_raise(L, "RuntimeError", "%s: file descriptor %d is already watched by the loop",
                       api, (int)fd);
    return aio_raise_os(L, err, api);
  }
  if (getpeername((int)fd, (struct sockaddr *)&u->remote, &len) == 0)
    u->has_remote = u->connected = 1;
  update_sockname(u);
  return 1;
}

/* Handle callback (transport, waiter) */
static int made_cb(lua_State *L) {
  udp_ep *u = ((udp_box *)lua_touserdata(L, 1))->u;
  int err;
  lua_pushvalue(L, 1);
  call_proto(L, u->lp, 1, "connection_made", 1);
  if (!u->closing && (err = uv_udp_recv_start(&u->h, on_alloc, on_recv)) != 0) {
    aio_push_os_error(L, err, "recvfrom");
    call_proto(L, u->lp, 1, "error_received", 1);
  }
  lua_pushvalue(L, 1);
  aio_future_set_results(L, 2, -1, 1);
  return 0;
}

/* core._udp_start(transport, protocol) -> Future done once connection_made ran */
static int l_udp_start(lua_State *L) {
  udp_ep *u = check_ep(L, 1);
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  lua_setiuservalue(L, 1, 1);
  aio_loop_check_open(L, u->lp);
  aio_future_new(L, u->lp);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  schedule(L, u->lp, made_cb, 2);
  return 1;
}

void aio_udp_open(lua_State *L, aio_state *S) {
  static const luaL_Reg methods[] = {{"sendto", l_sendto},
                                     {"close", l_close},
                                     {"abort", l_abort},
                                     {"is_closing", l_is_closing},
                                     {"get_extra_info", l_get_extra_info},
                                     {"get_protocol", l_get_protocol},
                                     {"set_protocol", l_set_protocol},
                                     {"get_write_buffer_size", l_get_write_buffer_size},
                                     {"get_write_buffer_limits", l_get_write_buffer_limits},
                                     {"set_write_buffer_limits", l_set_write_buffer_limits},
                                     {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", l_gc}, {"__tostring", l_tostring}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"_udp_resolve", l_udp_resolve},
                                   {"_udp_open", l_udp_open},
                                   {"_udp_adopt", l_udp_adopt},
                                   {"_udp_start", l_udp_start},
                                   {NULL, NULL}};
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &boxes_key) == LUA_TNIL) {
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &boxes_key);
  }
  lua_pop(L, 1);
  aio_newclass(L, S, AIO_T_DATAGRAM, "asyncio.DatagramTransport", methods, meta);
  lua_setfield(L, -2, "DatagramTransport");
  aio_setfuncs(L, S, funcs);
}
