/* Address parsing (src/addr.c): a {host, port} table built from the input,
 * hosts of any bytes and ports of any integer, must either parse or raise a
 * Lua error; a parsed address printed back (aio_push_sockaddr) parses to the
 * same bytes. */
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "fuzz.h"
#include "internal.h"

/* stack: host, port -> the printed address, or nil when it did not parse */
static int round_trip(lua_State *L) {
  struct sockaddr_storage ss, again;
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, 2);
  if (aio_to_sockaddr(L, -1, &ss) != 0) {
    lua_pushnil(L);
    return 1;
  }
  if (lua_type(L, 1) == LUA_TSTRING)
    FUZZ_CHECK(strlen(lua_tostring(L, 1)) == lua_rawlen(L, 1), "a host with a NUL byte parsed");
  aio_push_sockaddr(L, (const struct sockaddr *)&ss);
  FUZZ_CHECK(lua_istable(L, -1), "a parsed address prints as {host, port}");
  FUZZ_CHECK(aio_to_sockaddr(L, -1, &again) == 0, "a printed address parses");
  FUZZ_CHECK(ss.ss_family == again.ss_family, "family survives the round trip");
  FUZZ_CHECK(memcmp(&ss, &again,
                    ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                             : sizeof(struct sockaddr_in)) == 0,
             "bytes survive the round trip");
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = luaL_newstate(); /* one per input: libFuzzer's leak check needs the frees */
  fuzz_in in = {data, size};
  uint8_t kind = fuzz_byte(&in);
  size_t hlen;
  const uint8_t *host;
  lua_pushcfunction(L, round_trip);
  hlen = fuzz_byte(&in) % 64;
  host = fuzz_bytes(&in, hlen, &hlen);
  if (kind & 1)
    lua_pushnil(L);
  else
    lua_pushlstring(L, (const char *)host, hlen);
  switch (kind >> 1 & 3) {
  case 0:
    lua_pushinteger(L, fuzz_u16(&in));
    break;
  case 1:
    lua_pushinteger(L, (lua_Integer)((uint64_t)fuzz_u16(&in) << 48 | fuzz_u16(&in)));
    break;
  case 2:
    lua_pushnumber(L, fuzz_u16(&in) / 3.0);
    break;
  default:
    lua_pushlstring(L, (const char *)host, hlen);
    break;
  }
  (void)lua_pcall(L, 2, 1, 0); /* a bad port or host type raises: a Lua error, not a crash */
  lua_close(L);
  return 0;
}
