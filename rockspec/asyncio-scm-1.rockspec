-- luarocks --lua-version 5.4 make rockspec/asyncio-scm-1.rockspec   (from the repository root)
--
-- Command-line variables (VAR=VALUE after the rockspec):
--   LIBUV_DIR=/opt/libuv          libuv prefix (or LIBUV_INCDIR= / LIBUV_LIBDIR=)
--   OPENSSL_DIR=/opt/openssl      OpenSSL 3 prefix (or OPENSSL_INCDIR= / OPENSSL_LIBDIR=)
--   ASYNCIO_SANITIZE=ON           build with ASan + UBSan (default OFF; when the
--                                 variable is not given LuaRocks warns
--                                 "unmatched variable ASYNCIO_SANITIZE": harmless).
--                                 lua5.4 then needs the runtimes preloaded:
--                                 LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
rockspec_format = "3.0"
package = "asyncio"
version = "scm-1"
source = {
   url = "git+https://example.invalid/lua-asyncio.git",
}
description = {
   summary = "Python's asyncio for Lua 5.4, with a C core on libuv",
   detailed = [[
Event loop, futures, tasks, timers, streams, subprocesses, TLS and the
synchronisation primitives of Python's asyncio, mapped onto Lua 5.4
coroutines and to-be-closed variables. The loop is written in C on libuv.
]],
}
dependencies = {
   "lua >= 5.4, < 5.5",
}
external_dependencies = {
   LIBUV = {
      header = "uv.h",
      library = "uv",
   },
   OPENSSL = {
      header = "openssl/ssl.h",
      library = "ssl",
   },
}
build = {
   type = "cmake",
   variables = {
      LUA_INCDIR = "$(LUA_INCDIR)",
      LIBUV_INCDIR = "$(LIBUV_INCDIR)",
      LIBUV_LIBDIR = "$(LIBUV_LIBDIR)",
      OPENSSL_INCDIR = "$(OPENSSL_INCDIR)",
      OPENSSL_LIBDIR = "$(OPENSSL_LIBDIR)",
      LUADIR = "$(LUADIR)",
      LIBDIR = "$(LIBDIR)",
      ASYNCIO_SANITIZE = "$(ASYNCIO_SANITIZE)",
   },
   -- the Lua modules (lua/asyncio/*.lua, graph and control included) are
   -- installed by CMakeLists.txt; the command that reads a program's
   -- control socket is installed here
   install = {
      bin = { ["lua-asyncio"] = "bin/lua-asyncio" },
   },
}
