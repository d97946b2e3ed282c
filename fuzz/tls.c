/* The TLS input path (src/tls.c) after a real handshake, under the Lua
 * driver fuzz/tls.lua: records altered, cut, dropped or mixed with random
 * bytes must fail with an SSLError or a connection error, never reach the
 * reader as data, never crash or leak. */
#define FUZZ_DRIVER "tls"
#include "lua_driver.h"
