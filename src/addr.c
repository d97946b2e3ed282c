/* Socket addresses as Lua sees them ({host, port}, or a path for AF_UNIX),
 * and libuv error codes as OSError objects named by their errno. */
#define _GNU_SOURCE /* strerrorname_np */
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "internal.h"

/* {host, port} with a numeric host ("" or nil: any IPv4 address) at idx,
 * for IPv6 optionally {host, port, flowinfo, scope_id} as Python's 4-tuple;
 * returns 0 or a libuv error code for an address that does not parse. */
int aio_to_sockaddr(lua_State *L, int idx, struct sockaddr_storage *ss) {
  const char *host;
  size_t hlen = 0;
  lua_Integer port;
  int isnum;
  idx = lua_absindex(L, idx);
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_rawgeti(L, idx, 1);
  lua_rawgeti(L, idx, 2);
  host = lua_isnil(L, -2) ? "" : lua_tolstring(L, -2, &hlen);
  if (!host) luaL_argerror(L, idx, "address host must be a string");
  port = lua_tointegerx(L, -1, &isnum);
  if (!isnum) luaL_argerror(L, idx, "address port must be an integer");
  lua_pop(L, 2);
  if (port < 0 || port > 65535) return luaL_argerror(L, idx, "port out of range 0-65535");
  /* the C parsers would stop at a NUL: "127.0.0.1\0x" is not 127.0.0.1 */
  if (strlen(host) != hlen) return UV_EINVAL;
  memset(ss, 0, sizeof *ss);
  if (*host == '\0') host = "0.0.0.0";
  if (strchr(host, ':')) {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    lua_Integer flowinfo, scope;
    int err = uv_ip6_addr(host, (int)port, in6);
    lua_rawgeti(L, idx, 3);
    lua_rawgeti(L, idx, 4);
    flowinfo = lua_isnil(L, -2) ? 0 : lua_tointegerx(L, -2, &isnum);
    if (!lua_isnil(L, -2) && (!isnum || flowinfo < 0 || flowinfo > 0xfffff))
      luaL_argerror(L, idx, "flowinfo must be an integer in 0-1048575");
    scope = lua_isnil(L, -1) ? -1 : lua_tointegerx(L, -1, &isnum);
    if (!lua_isnil(L, -1) && (!isnum || scope < 0 || scope > 0xffffffff))
      luaL_argerror(L, idx, "scope_id must be an integer in 0-4294967295");
    lua_pop(L, 2);
    in6->sin6_flowinfo = htonl((uint32_t)flowinfo);
    if (scope >= 0) in6->sin6_scope_id = (uint32_t)scope; /* else the host's %zone, if any */
    return err;
  }
  return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss);
}

void aio_push_sockaddr(lua_State *L, const struct sockaddr *sa) {
  char host[INET6_ADDRSTRLEN];
  int port;
  switch (sa->sa_family) {
  case AF_INET:
    uv_ip4_name((const struct sockaddr_in *)sa, host, sizeof host);
    port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
    break;
  case AF_INET6:
    uv_ip6_name((const struct sockaddr_in6 *)sa, host, sizeof host);
    port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    break;
  case AF_UNIX: {
    const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
    lua_pushlstring(L, un->sun_path, strnlen(un->sun_path, sizeof un->sun_path));
    return;
  }
  default:
    lua_pushnil(L);
    return;
  }
  lua_createtable(L, sa->sa_family == AF_INET6 ? 4 : 2, 0);
  lua_pushstring(L, host);
  lua_rawseti(L, -2, 1);
  lua_pushinteger(L, port);
  lua_rawseti(L, -2, 2);
  if (sa->sa_family == AF_INET6) { /* Python's (host, port, flowinfo, scope_id) */
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    lua_pushinteger(L, ntohl(in6->sin6_flowinfo));
    lua_rawseti(L, -2, 3);
    lua_pushinteger(L, in6->sin6_scope_id);
    lua_rawseti(L, -2, 4);
  }
}

/* An OSError subclass chosen by the errno name (errors.lua's os_error), with
 * the message "<what>: <strerror>". libuv names only the errnos it uses
 * itself; glibc names the others (ECHILD, ESRCH: the process calls). */
void aio_push_os_error(lua_State *L, int uverr, const char *what) {
  /* the _r forms: uv_err_name and uv_strerror leak a string per unknown code */
  char namebuf[64], textbuf[128];
  const char *name = uv_err_name_r(uverr, namebuf, sizeof namebuf);
  const char *text = uv_strerror_r(uverr, textbuf, sizeof textbuf);
  if (strncmp(name, "Unknown", 7) == 0 && uverr < 0 && strerrorname_np(-uverr)) {
    name = strerrorname_np(-uverr);
    text = strerrordesc_np(-uverr);
  }
  aio_push_hook(L, aio_get_state(L), "os_error");
  if (lua_isfunction(L, -1)) {
    lua_pushstring(L, name);
    lua_pushstring(L, text);
    lua_pushstring(L, what);
    lua_call(L, 3, 1);
  } else {
    lua_pop(L, 1);
    lua_pushfstring(L, "OSError: %s: %s", what, text);
  }
}

int aio_raise_os(lua_State *L, int uverr, const char *what) {
  aio_push_os_error(L, uverr, what);
  return lua_error(L);
}

/* A file descriptor: an integer, or a Lua file (io.open) whose fd is used. */
int aio_check_fd(lua_State *L, int idx) {
  luaL_Stream *f = luaL_testudata(L, idx, LUA_FILEHANDLE);
  lua_Integer fd;
  if (f) {
    if (!f->closef || !f->f) luaL_argerror(L, idx, "attempt to use a closed file");
    return fileno(f->f);
  }
  fd = luaL_checkinteger(L, idx);
  luaL_argcheck(L, fd >= 0 && fd <= 0x7fffffff, idx, "invalid file descriptor");
  return (int)fd;
}
