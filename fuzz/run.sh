#!/usr/bin/env bash
# fuzz/run.sh [SECS [NAME...]]: builds the libFuzzer harnesses fuzz/*.c with
# clang-14 (ASan + UBSan) in .build/fuzz and runs each for SECS seconds
# (default 60). The corpus kept in the repo, fuzz/corpus/NAME, seeds each run;
# what a run finds new goes to .build/fuzz/corpus/NAME, a crash's input to
# .build/fuzz/crash-NAME-*. Prints one line per harness:
#   PASS NAME runs=... execs/s=... corpus=...   or   FAIL NAME (log: ...)
# and exits 1 if any failed. `make fuzz` and the fuzz pass of `make test`
# call it; `fuzz/run.sh 0 NAME` only replays the corpus.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
shift || true
build=$root/.build/fuzz
log=$build/build.log
mkdir -p "$build"
if ! { CC=${FUZZ_CC:-clang-14} cmake -S "$root" -B "$build" -DASYNCIO_BUILD_FUZZERS=ON \
         -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_C_FLAGS_DEBUG=-O1" &&
       cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)"; } >"$log" 2>&1; then
  tail -n 40 "$log"
  echo "FAIL fuzz build (log: ${log#"$root"/})"
  exit 1
fi
names=("$@")
if ((${#names[@]} == 0)); then
  for src in "$root"/fuzz/*.c; do names+=("$(basename "$src" .c)"); done
fi
rc=0
for name in "${names[@]}"; do
  seeds=$root/fuzz/corpus/$name found=$build/corpus/$name out=$build/$name.log
  mkdir -p "$seeds" "$found"
  if ((secs > 0)); then
    args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
          -artifact_prefix="$build/crash-$name-" "$found" "$seeds")
  else
    args=(-runs=0 -print_final_stats=1 "$seeds")
  fi
  # a harness that hangs or loops past its time is killed, and fails
  if timeout -k 5 $((secs + 120)) "$build/fuzz/$name" "${args[@]}" >"$out" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out")
    echo "PASS $name runs=${runs:-0} execs/s=${rate:-0} corpus=$(find "$found" "$seeds" -type f | wc -l)"
  else
    grep -E "ERROR|SUMMARY|fuzz/.*\.c:[0-9]+" "$out" | head -20
    echo "FAIL $name (log: ${out#"$root"/})"
    rc=1
  fi
done
exit $rc
