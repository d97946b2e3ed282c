/* Name resolution on libuv's thread pool: getaddrinfo and getnameinfo start a
 * uv request and return a Future, which lua/asyncio/dns.lua awaits. */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* One request in flight. libuv calls its callback exactly once (with
 * UV_EAI_CANCELED after uv_cancel), and that callback frees it. */
typedef struct {
  union {
    uv_req_t req;
    uv_getaddrinfo_t ai;
    uv_getnameinfo_t ni;
  } u;
  aio_closable link; /* loop close cancels the request and drops its future */
  aio_loop *lp;
} dns_req;

/* registry[&inflight_key]: light userdata of each request -> its Future, for
 * as long as the Future waits on it. The Future's cancel callback finds the
 * request here, so it never follows a pointer to a freed one. */
static const char inflight_key = 0;

static void push_inflight(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &inflight_key);
}

/* Done callback of the Future: cancelling it cancels the request, which then
 * completes with UV_EAI_CANCELED (or with its result, if already running). */
static int on_future_done(lua_State *L) {
  dns_req *q = lua_touserdata(L, lua_upvalueindex(1));
  aio_future *f = aio_test_future(L, 1);
  if (!f || f->state != AIO_CANCELLED) return 0;
  push_inflight(L);
  lua_rawgetp(L, -1, q);
  if (lua_rawequal(L, -1, 1)) uv_cancel(&q->u.req);
  return 0;
}

static void close_req(aio_closable *c);
static const aio_closable_type req_type = {close_req, NULL, NULL, NULL};

static void close_req(aio_closable *c) {
  dns_req *q = (dns_req *)((char *)c - offsetof(dns_req, link));
  lua_State *L = aio_loop_thread(q->lp);
  push_inflight(L);
  lua_pushnil(L);
  lua_rawsetp(L, -2, q);
  lua_pop(L, 1);
  uv_cancel(&q->u.req);
}

/* Starts the request (already set up by the caller, which passes libuv's
 * result) and pushes its Future. */
static void start(lua_State *L, aio_loop *lp, dns_req *q, int err, const char *what) {
  if (err != 0) {
    free(q);
    aio_raise_os(L, err, what);
  }
  q->lp = lp;
  lp->nhandles_open++; /* the loop's record must outlive the request */
  aio_closable_link(lp, &q->link, &req_type);
  aio_future_new(L, lp);
  push_inflight(L);
  lua_pushvalue(L, -2);
  lua_rawsetp(L, -2, q);
  lua_pop(L, 1);
  lua_getfield(L, -1, "add_done_callback");
  lua_pushvalue(L, -2);
  lua_pushlightuserdata(L, q);
  lua_pushcclosure(L, on_future_done, 1);
  lua_call(L, 2, 0);
}

/* Pushes the request's Future and forgets it; nil when it is no longer
 * pending (cancelled meanwhile). */
static int take_future(lua_State *L, dns_req *q) {
  push_inflight(L);
  lua_rawgetp(L, -1, q);
  lua_pushnil(L);
  lua_rawsetp(L, -3, q);
  lua_remove(L, -2);
  if (aio_test_future(L, -1) && ((aio_future *)lua_touserdata(L, -1))->state == AIO_PENDING)
    return 1;
  lua_pop(L, 1);
  return 0;
}

/* Runs deliver (a lua_CFunction taking the light userdata args) protected, so
 * that a memory error cannot unwind through libuv's frames. */
static void call_protected(aio_loop *lp, lua_CFunction deliver, void *a, void *b, void *c, int st) {
  lua_State *L = aio_loop_thread(lp);
  int top = lua_gettop(L);
  lua_pushcfunction(L, deliver);
  lua_pushlightuserdata(L, a);
  lua_pushlightuserdata(L, b);
  lua_pushlightuserdata(L, c);
  lua_pushinteger(L, st);
  if (lua_pcall(L, 4, 0, 0) != LUA_OK)
    lua_writestringerror("asyncio: error delivering a DNS result: %s\n",
                         luaL_tolstring(L, -1, NULL));
  lua_settop(L, top);
}

static void fail(lua_State *L, int status, const char *what) {
  aio_push_os_error(L, status, what);
  aio_future_set_exc(L, -2, -1);
}

/* ---- getaddrinfo ----------------------------------------------------- */

static const struct {
  const char *name;
  int af;
} families[] = {
    {"unspec", AF_UNSPEC}, {"inet", AF_INET}, {"inet6", AF_INET6}, {"unix", AF_UNIX}, {NULL, 0}};

static void push_family(lua_State *L, int af) {
  int i;
  for (i = 0; families[i].name; i++) {
    if (families[i].af == af && af != AF_UNSPEC) {
      lua_pushstring(L, families[i].name);
      return;
    }
  }
  lua_pushinteger(L, af);
}

static int deliver_addrinfo(lua_State *L) {
  dns_req *q = lua_touserdata(L, 1);
  struct addrinfo *res = lua_touserdata(L, 2), *ai;
  int status = (int)lua_tointeger(L, 4), n = 0;
  if (!take_future(L, q)) return 0;
  if (status != 0) {
    fail(L, status, "getaddrinfo");
    return 0;
  }
  lua_newtable(L);
  for (ai = res; ai; ai = ai->ai_next) {
    lua_createtable(L, 0, 5);
    push_family(L, ai->ai_family);
    lua_setfield(L, -2, "family");
    lua_pushinteger(L, ai->ai_socktype);
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, ai->ai_protocol);
    lua_setfield(L, -2, "proto");
    lua_pushstring(L, ai->ai_canonname ? ai->ai_canonname : "");
    lua_setfield(L, -2, "canonname");
    aio_push_sockaddr(L, ai->ai_addr);
    lua_setfield(L, -2, "addr");
    lua_rawseti(L, -2, ++n);
  }
  aio_future_set_results(L, -2, -1, 1);
  return 0;
}

static void on_addrinfo(uv_getaddrinfo_t *r, int status, struct addrinfo *res) {
  dns_req *q = r->data;
  aio_loop *lp = q->lp;
  aio_closable_unlink(&q->link);
  if (!lp->closed) call_protected(lp, deliver_addrinfo, q, res, NULL, status);
  uv_freeaddrinfo(res);
  free(q);
  aio_loop_handle_closed(lp);
}

static int opt_int(lua_State *L, int opts, const char *key, int dflt) {
  int isnum, v;
  if (lua_getfield(L, opts, key) == LUA_TNIL) {
    lua_pop(L, 1);
    return dflt;
  }
  v = (int)lua_tointegerx(L, -1, &isnum);
  if (!isnum) luaL_argerror(L, opts, lua_pushfstring(L, "option '%s' must be an integer", key));
  lua_pop(L, 1);
  return v;
}

static int opt_family(lua_State *L, int opts) {
  if (lua_getfield(L, opts, "family") == LUA_TSTRING) {
    const char *name = lua_tostring(L, -1);
    int i;
    for (i = 0; families[i].name; i++)
      if (strcmp(families[i].name, name) == 0) break;
    if (!families[i].name)
      luaL_argerror(L, opts, lua_pushfstring(L, "unknown address family '%s'", name));
    lua_pop(L, 1);
    return families[i].af;
  }
  lua_pop(L, 1);
  return opt_int(L, opts, "family", AF_UNSPEC);
}

/* (host, port, opts, loop): the loop comes last so that argument errors
 * number the arguments as the Loop method's caller wrote them. */
static int l_getaddrinfo(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 4);
  const char *host = luaL_optstring(L, 1, NULL), *service = NULL;
  char portbuf[16];
  struct addrinfo hints;
  dns_req *q;
  if (lua_type(L, 2) == LUA_TSTRING) {
    service = lua_tostring(L, 2);
  } else if (!lua_isnoneornil(L, 2)) {
    lua_Integer port = luaL_checkinteger(L, 2);
    luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port out of range 0-65535");
    snprintf(portbuf, sizeof portbuf, "%d", (int)port);
    service = portbuf;
  }
  memset(&hints, 0, sizeof hints);
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    hints.ai_family = opt_family(L, 3);
    hints.ai_socktype = opt_int(L, 3, "type", 0);
    hints.ai_protocol = opt_int(L, 3, "proto", 0);
    hints.ai_flags = opt_int(L, 3, "flags", 0);
  }
  aio_loop_check_open(L, lp);
  if (!(q = malloc(sizeof *q))) return luaL_error(L, "not enough memory");
  q->u.ai.data = q;
  start(L, lp, q, uv_getaddrinfo(lp->uv, &q->u.ai, on_addrinfo, host, service, &hints),
        "getaddrinfo");
  return 1;
}

/* ---- getnameinfo ----------------------------------------------------- */

static int deliver_nameinfo(lua_State *L) {
  dns_req *q = lua_touserdata(L, 1);
  int status = (int)lua_tointeger(L, 4);
  if (!take_future(L, q)) return 0;
  if (status != 0) {
    fail(L, status, "getnameinfo");
    return 0;
  }
  lua_pushstring(L, lua_touserdata(L, 2));
  lua_pushstring(L, lua_touserdata(L, 3));
  aio_future_set_results(L, -3, -2, 2);
  return 0;
}

static void on_nameinfo(uv_getnameinfo_t *r, int status, const char *host, const char *service) {
  dns_req *q = r->data;
  aio_loop *lp = q->lp;
  aio_closable_unlink(&q->link);
  if (!lp->closed) call_protected(lp, deliver_nameinfo, q, (void *)host, (void *)service, status);
  free(q);
  aio_loop_handle_closed(lp);
}

/* (addr, flags, loop), for the reason given at l_getaddrinfo */
static int l_getnameinfo(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 3);
  struct sockaddr_storage ss;
  int flags = (int)luaL_optinteger(L, 2, 0), err;
  dns_req *q;
  if ((err = aio_to_sockaddr(L, 1, &ss)) != 0) return aio_raise_os(L, err, "getnameinfo");
  aio_loop_check_open(L, lp);
  if (!(q = malloc(sizeof *q))) return luaL_error(L, "not enough memory");
  q->u.ni.data = q;
  start(L, lp, q, uv_getnameinfo(lp->uv, &q->u.ni, on_nameinfo, (struct sockaddr *)&ss, flags),
        "getnameinfo");
  return 1;
}

void aio_dns_open(lua_State *L, aio_state *S) {
  static const luaL_Reg funcs[] = {
      {"getaddrinfo", l_getaddrinfo}, {"getnameinfo", l_getnameinfo}, {NULL, NULL}};
  static const struct {
    const char *name;
    int value;
  } consts[] = {{"AF_UNSPEC", AF_UNSPEC},
                {"AF_INET", AF_INET},
                {"AF_INET6", AF_INET6},
                {"AF_UNIX", AF_UNIX},
                {"SOCK_STREAM", SOCK_STREAM},
                {"SOCK_DGRAM", SOCK_DGRAM},
                {"SOCK_RAW", SOCK_RAW},
                {"IPPROTO_TCP", IPPROTO_TCP},
                {"IPPROTO_UDP", IPPROTO_UDP},
                {"AI_PASSIVE", AI_PASSIVE},
                {"AI_CANONNAME", AI_CANONNAME},
                {"AI_NUMERICHOST", AI_NUMERICHOST},
                {"AI_NUMERICSERV", AI_NUMERICSERV},
                {"AI_ADDRCONFIG", AI_ADDRCONFIG},
                {"AI_V4MAPPED", AI_V4MAPPED},
                {"AI_ALL", AI_ALL},
                {"NI_NUMERICHOST", NI_NUMERICHOST},
                {"NI_NUMERICSERV", NI_NUMERICSERV},
                {"NI_NAMEREQD", NI_NAMEREQD},
                {"NI_NOFQDN", NI_NOFQDN},
                {"NI_DGRAM", NI_DGRAM},
                {NULL, 0}};
  int i;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &inflight_key);
  if (lua_isnil(L, -1)) {
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &inflight_key);
  }
  lua_pop(L, 1);
  lua_newtable(L);
  aio_setfuncs(L, S, funcs);
  for (i = 0; consts[i].name; i++) {
    lua_pushinteger(L, consts[i].value);
    lua_setfield(L, -2, consts[i].name);
  }
  lua_setfield(L, -2, "dns");
}
