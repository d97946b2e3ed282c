#!/usr/bin/env bash
# User-space instructions per echo request of one server, from callgrind:
# repeatable where timings on a shared machine are not (the kernel's part is
# not counted). The server runs under valgrind; ../shared/bench/loadgen
# drives it for a bounded time, and only what runs between a zero and a
# dump around that window counts (connection setup and teardown included,
# a few thousand instructions against some thousand requests).
#   bench/echo_ir.sh 'lua5.4 bench/echo_protocol.lua {port}' [SIZE [CONNS [SECS]]]
# VGARGS adds valgrind options (VGARGS=--cache-sim=yes: cache misses too).
# Prints "RESULT ir=... reqs=... ir_per_req=..."; the callgrind profile is
# left in $OUT (default $TMPDIR/echo_ir.<port>.out.1) for callgrind_annotate.
# Run it with the built tree on LUA_PATH/LUA_CPATH (see the Makefile's
# header). lua5.4 is stripped: for names inside Lua, run the server with a
# host linked to liblua5.4.a instead.
set -eu
cmd=${1:?usage: $0 'server command with {port}' [SIZE [CONNS [SECS]]]}
size=${2:-1024} conns=${3:-10} secs=${4:-5}
here=$(cd "$(dirname "$0")" && pwd)
loadgen=${LOADGEN:-$here/../../shared/bench/loadgen}
port=${PORT:-$((19000 + RANDOM % 1000))}
out=${OUT:-${TMPDIR:-/tmp}/echo_ir.$port.out}
[[ -x $loadgen ]] || { echo "$0: no loadgen at $loadgen (make -C ../shared/bench)" >&2; exit 1; }
rm -f "$out" "$out".*
valgrind --tool=callgrind ${VGARGS:-} --callgrind-out-file="$out" ${cmd//\{port\}/$port} 2> "$out.log" &
vg=$!
trap 'kill $vg 2>/dev/null; wait $vg 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null && break
  kill -0 $vg 2> /dev/null || { echo "$0: server exited (see $out.log)" >&2; exit 1; }
  sleep 0.2
done
# warm: first connections, buffers and caches filled
"$loadgen" -p "$port" -c "$conns" -s "$size" -d 1 -w 0 -T 30 > /dev/null 2>&1
callgrind_control -z $vg > /dev/null 2>&1
res=$("$loadgen" -p "$port" -c "$conns" -s "$size" -d "$secs" -w 0 -T 30 2> /dev/null | grep '^RESULT')
callgrind_control -d $vg > /dev/null 2>&1
reqs=$(sed -n 's/.* reqs=\([0-9]*\).*/\1/p' <<< "$res")
ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$out.1")
[[ -n $reqs && $reqs -gt 0 && -n $ir ]] || { echo "$0: no result (see $out.log)" >&2; exit 1; }
echo "RESULT ir=$ir reqs=$reqs ir_per_req=$((ir / reqs)) size=$size conns=$conns"
