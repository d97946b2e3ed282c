# lua-asyncio developer entry points.
#
#   make demo    install missing packages, build, run the examples: hello.lua,
#                crawler.lua, echo_server.lua with echo_client.lua, and the
#                --demo modes of chat_server.lua, http_get.lua, https_get.lua
#                and tls_echo_server.lua (those two make throwaway certificates
#                with the openssl CLI and stay on 127.0.0.1), subprocess.lua,
#                to_thread.lua and socketpair_child.lua
#   make test    install missing packages, build, run every test pass;
#                the last line is "N passed, M failed"
#   make build   luarocks make into the local tree .build/tree
#   make docs    the API reference (ldoc, config.ld) into docs/api/index.html
#   make deps    install the missing Debian packages (apt-get)
#   make fuzz    every libFuzzer harness (fuzz/*.c) for FUZZ_SECS (60) seconds
#   make bench   micro benchmarks against the peers in ../shared/bench
#   make bench-echo  TCP echo servers (bench/echo_*.lua) against the same peers;
#                TLS=1: the same over TLS
#   make bench-floor bench/spawn_floor.lua: create_task against the least a
#                Lua task runtime does per task (bench/spawn_floor.c)
#   make bench-idle  memory per idle connection of the same servers; TLS=1 too
#   make soak    bench/soak.lua: 10,000 connections (SOAK_CONNS) held for 60 s
#                (SOAK_SECS) with resets, half-closes and slow readers, plain
#                then TLS; descriptors, references and memory must come back
#   make clean
#
# make test PASSES="busted ctest" BUSTED_ARGS=spec/smoke_spec.lua  runs a part
# (see spec/support/run-tests.sh). Lua programs can use the built tree with
#   eval $$(luarocks --lua-version 5.4 --tree .build/tree path)

SHELL := /bin/bash
.DEFAULT_GOAL := build

LUA       ?= lua5.4
LUAROCKS  ?= luarocks --lua-version 5.4
ROCKSPEC  := rockspec/asyncio-scm-1.rockspec
BUILD     := $(CURDIR)/.build
TREE      := $(BUILD)/tree
SHARED    ?= $(CURDIR)/../shared
# ON: `make build` builds the rock with ASan + UBSan (lua5.4 then needs the
# sanitizer runtimes in LD_PRELOAD). demo and test always use OFF; `make test`
# builds its own sanitizer variant in .build/asan.
ASYNCIO_SANITIZE ?= OFF

# openssl (the CLI) makes the throwaway certificates of the tests and demos;
# the TLS interop tests talk to /usr/bin/python3's ssl module and to curl
# clang-14 and libfuzzer-14-dev: the fuzz harnesses (make fuzz, and a short
# pass of each in make test); valgrind: make test's memcheck pass; lua-ldoc
# and lua-markdown: make docs and spec/docs_spec.lua
DEPS       := build-essential cmake pkg-config lua5.4 liblua5.4-dev libuv1-dev libssl-dev \
              lua-busted luarocks clang-format cppcheck openssl curl python3 clang-14 libfuzzer-14-dev \
              valgrind lua-ldoc lua-markdown
# lua-luaossl: cqueues' TLS, without which TLS=1 leaves the cqueues peer out
BENCH_DEPS := python3-uvloop lua-luv lua-cqueues lua-luaossl nodejs util-linux time

# sudo only when not root
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# the environment that makes Lua 5.4 load asyncio from $(TREE)
TREE_LPATH := $(TREE)/share/lua/5.4/?.lua;$(TREE)/share/lua/5.4/?/init.lua;;
TREE_CPATH := $(TREE)/lib/lua/5.4/?.so;;
TREE_ENV   := LUA_PATH='$(TREE_LPATH)' LUA_PATH_5_4='$(TREE_LPATH)' \
              LUA_CPATH='$(TREE_CPATH)' LUA_CPATH_5_4='$(TREE_CPATH)'

export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: build deps deps-bench demo test lint api-index docs fuzz bench bench-echo bench-floor bench-idle soak clean

# Install only what is missing; apt-get update only when something is.
define apt_install_missing
@if ! command -v dpkg-query >/dev/null; then \
  echo "deps: no dpkg-query (not Debian?); make sure these are installed: $(1)"; \
else \
  missing=; \
  for p in $(1); do \
    dpkg-query -W -f='$${db:Status-Abbrev}' "$$p" 2>/dev/null | grep -q '^ii' || missing="$$missing $$p"; \
  done; \
  if [ -n "$$missing" ]; then \
    echo "deps: installing$$missing"; \
    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
  fi; \
fi
endef

deps:
	$(call apt_install_missing,$(DEPS))

deps-bench: deps
	$(call apt_install_missing,$(BENCH_DEPS))

# luarocks make in the repository root: CMake builds in build.luarocks/, which
# is thrown away when its cache belongs to another checkout (copied tree).
build: deps
	@if [ -f build.luarocks/CMakeCache.txt ] && \
	   ! grep -qxF 'CMAKE_HOME_DIRECTORY:INTERNAL=$(CURDIR)' build.luarocks/CMakeCache.txt; then \
	  rm -rf build.luarocks; \
	fi
	env -u MAKEFLAGS -u MAKELEVEL $(LUAROCKS) --tree '$(TREE)' make $(ROCKSPEC) \
	  ASYNCIO_SANITIZE=$(ASYNCIO_SANITIZE)

demo test: override ASYNCIO_SANITIZE = OFF

demo: deps build
	@if [ ! -f examples/hello.lua ]; then \
	  echo "make demo: examples/hello.lua does not exist yet" >&2; exit 1; \
	fi
	@echo "$(LUA) examples/hello.lua"
	@$(TREE_ENV) $(LUA) examples/hello.lua
	@echo
	@echo "$(LUA) examples/crawler.lua"
	@$(TREE_ENV) $(LUA) examples/crawler.lua
	@echo
	@echo "$(LUA) examples/echo_server.lua 0 3  (in the background) + 3 x $(LUA) examples/echo_client.lua PORT"
	@$(TREE_ENV) bash -c "$$ECHO_DEMO"
	@echo
	@echo "$(LUA) examples/chat_server.lua --demo"
	@$(TREE_ENV) $(LUA) examples/chat_server.lua --demo
	@echo
	@echo "$(LUA) examples/http_get.lua --demo"
	@$(TREE_ENV) $(LUA) examples/http_get.lua --demo
	@echo
	@echo "$(LUA) examples/https_get.lua --demo"
	@$(TREE_ENV) $(LUA) examples/https_get.lua --demo
	@echo
	@echo "$(LUA) examples/tls_echo_server.lua --demo"
	@$(TREE_ENV) $(LUA) examples/tls_echo_server.lua --demo
	@echo
	@echo "$(LUA) examples/subprocess.lua"
	@$(TREE_ENV) $(LUA) examples/subprocess.lua
	@echo
	@echo "$(LUA) examples/to_thread.lua"
	@$(TREE_ENV) $(LUA) examples/to_thread.lua
	@echo
	@echo "$(LUA) examples/socketpair_child.lua"
	@$(TREE_ENV) $(LUA) examples/socketpair_child.lua

# The echo server in the background on a free port, which it prints when
# ready; three clients against it; the server stops by itself after the
# third connection. timeout bounds each process, and the EXIT trap kills the
# server when anything fails; the server's log is shown at the end.
define ECHO_DEMO
set -eu
log=$$(mktemp)
timeout 30 $(LUA) examples/echo_server.lua 0 3 > "$$log" 2>&1 &
server=$$!
trap 'kill $$server 2>/dev/null || true; rm -f "$$log"' EXIT
port=
for _ in $$(seq 100); do
  port=$$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$$log")
  if [ -n "$$port" ] || ! kill -0 $$server 2>/dev/null; then break; fi
  sleep 0.1
done
if [ -z "$$port" ]; then echo "make demo: the echo server did not start" >&2; cat "$$log" >&2; exit 1; fi
for n in 3 10 1000; do timeout 20 $(LUA) examples/echo_client.lua $$port $$n; done
wait $$server
cat "$$log"
endef
export ECHO_DEMO

C_FILES := $(wildcard src/*.c src/*.h src/core/*.c src/core/*.h include/*.h test/*.c test/*.h fuzz/*.c fuzz/*.h \
             bench/*.c bench/*.h)

# formatting drift and cppcheck findings fail the build like a test does
lint: deps
	clang-format --dry-run --Werror $(C_FILES)
	cppcheck --quiet --error-exitcode=1 --inline-suppr --enable=warning,style,performance,portability \
	  --suppress=toomanyconfigs --std=c11 -I src -I include -I /usr/include/lua5.4 src test bench fuzz

# README's table of Python's asyncio names, from spec/api_index_spec.lua's data
api-index:
	$(LUA) spec/api_index_spec.lua

# the API reference from the doc comments (config.ld lists the files);
# --fatalwarnings: an undocumented argument or a bad tag fails the target
docs: deps
	@rm -rf docs/api
	ldoc --fatalwarnings .
	@echo "make docs: docs/api/index.html"

test: deps lint build
	@env -u MAKEFLAGS -u MAKELEVEL BUILD='$(BUILD)' TREE='$(TREE)' LUA='$(LUA)' \
	  bash spec/support/run-tests.sh

# every libFuzzer harness fuzz/*.c for FUZZ_SECS seconds (fuzz/run.sh)
FUZZ_SECS ?= 60
fuzz: deps
	@bash fuzz/run.sh $(FUZZ_SECS)

bench: deps-bench build
	@if [ ! -f bench/micro.lua ]; then echo "bench: bench/micro.lua does not exist yet" >&2; fi
	@echo "$(SHARED)/bench/run_micro.sh  (EXTRA peer lasync: $(LUA) bench/micro.lua)"
	@$(TREE_ENV) EXTRA='lasync=$(LUA) $(CURDIR)/bench/micro.lua {bench}' \
	  bash $(SHARED)/bench/run_micro.sh

clean:
	rm -rf .build build.luarocks

# Each of the soak's two processes (client, server) holds a descriptor per
# connection: the soft limit goes up to the hard one. Both run on jemalloc:
# under glibc's malloc the heap of a long soak fragments, and its RSS keeps
# growing under a steady load (some 40 MB in 30 s at 10,000 connections, no
# Lua object or descriptor more), which would hide a leak of the program's
# own; under jemalloc RSS levels off. spec/soak_spec.lua runs the short
# version on glibc, where it stays within the script's tolerances.
SOAK_CONNS ?= 10000
SOAK_SECS  ?= 60
SOAK_DEPS  := libjemalloc2
soak: deps build
	$(call apt_install_missing,$(SOAK_DEPS))
	@jemalloc=$$(ldconfig -p | awk '/libjemalloc\.so\.2 /{print $$NF; exit}'); \
	if [ -z "$$jemalloc" ]; then echo "make soak: no libjemalloc.so.2 ($(SOAK_DEPS))" >&2; exit 1; fi; \
	ulimit -n "$$(ulimit -Hn)" && rc=0 && for tls in "" --tls; do \
	  echo "LD_PRELOAD=$$jemalloc $(LUA) bench/soak.lua --conns $(SOAK_CONNS) --seconds $(SOAK_SECS) $$tls"; \
	  $(TREE_ENV) LD_PRELOAD="$$jemalloc" $(LUA) bench/soak.lua --conns $(SOAK_CONNS) --seconds $(SOAK_SECS) $$tls || rc=1; \
	done; exit $$rc

# TLS=1 runs the shared benchmarks over TLS: their scripts make the
# certificate and append " --tls CERT KEY" to every peer's command, which
# bench/echo_*.lua understand. Off when unset or 0, as the scripts read it.
TLS    ?=
TLS_ON := $(if $(filter-out 0,$(strip $(TLS))),1)

# both echo servers as EXTRA peers of the shared echo and idle benchmarks
# (knobs such as PEERS, SIZES, CONNS, DURATION, REPS pass through to
# run_echo.sh / run_idle.sh)
define LASYNC_PEERS
lasync-proto=$(LUA) $(CURDIR)/bench/echo_protocol.lua {port}
lasync-streams=$(LUA) $(CURDIR)/bench/echo_streams.lua {port}
endef
export LASYNC_PEERS
# and in the echo benchmark uv-copy: raw libuv plus the copy into a Lua
# string, their ceiling; uv-lua: that plus the Lua callback of
# echo_protocol.lua, unchecked and unprotected, the floor of a Lua protocol
# server. Plain TCP only (no TLS in them): left out with TLS=1, where uv-tls,
# the scripts' own raw libuv + OpenSSL server, is the reference.
define UV_FLOOR_PEERS
uv-copy=$(BUILD)/echo_uv_copy {port}
uv-lua=$(BUILD)/echo_uv_lua {port}
endef
export UV_FLOOR_PEERS

$(BUILD)/echo_uv_copy: bench/echo_uv_copy.c bench/echo_uv.h
	@mkdir -p $(BUILD)
	$(CC) -std=gnu11 -O2 -Wall -Wextra -Werror -o $@ $< -luv

$(BUILD)/echo_uv_lua: bench/echo_uv_lua.c bench/echo_uv.h
	@mkdir -p $(BUILD)
	$(CC) -std=gnu11 -O2 -Wall -Wextra -Werror -I/usr/include/lua5.4 -o $@ $< -luv -llua5.4

# bench/spawn_floor.lua: asyncio.create_task against bench/spawn_floor.c,
# the least a Lua task runtime does per spawned task
$(BUILD)/spawn_floor.so: bench/spawn_floor.c
	@mkdir -p $(BUILD)
	$(CC) -std=gnu11 -O2 -Wall -Wextra -Werror -shared -fPIC -I/usr/include/lua5.4 -o $@ $<

bench-floor: build $(BUILD)/spawn_floor.so
	@$(TREE_ENV) LUA_CPATH_5_4='$(BUILD)/?.so;$(TREE_CPATH)' $(LUA) bench/spawn_floor.lua

bench-echo: deps-bench build $(if $(TLS_ON),,$(BUILD)/echo_uv_copy $(BUILD)/echo_uv_lua)
	@echo "$(SHARED)/bench/run_echo.sh $(if $(TLS_ON),over TLS )(EXTRA peers lasync-proto, lasync-streams:"
	@echo "  bench/echo_*.lua$(if $(TLS_ON),,; uv-copy, uv-lua: bench/echo_uv_copy.c, bench/echo_uv_lua.c))"
	@extra=$$LASYNC_PEERS; $(if $(TLS_ON),,extra+=$$'\n'$$UV_FLOOR_PEERS;) \
	  $(TREE_ENV) TLS='$(TLS_ON)' EXTRA="$$extra" bash $(SHARED)/bench/run_echo.sh

# memory per idle connection (run_idle.sh: N connections that each echoed
# once, held idle; CONNS, REPS, PEERS pass through), the same two servers
bench-idle: deps-bench build
	@echo "$(SHARED)/bench/run_idle.sh $(if $(TLS_ON),over TLS )(EXTRA peers lasync-proto, lasync-streams:"
	@echo "  bench/echo_*.lua)"
	@$(TREE_ENV) TLS='$(TLS_ON)' EXTRA="$$LASYNC_PEERS" bash $(SHARED)/bench/run_idle.sh
