#!/usr/bin/env bash
# run-tests.sh - the test passes behind `make test` (run `make build` first).
#
# Passes, in this order (choose with PASSES="..."):
#   busted       the busted suite (spec/) against the LuaRocks tree $TREE
#   ctest        the test/*.c programs and the guides' C host programs
#                (docs/guide/*.md), plain build in $BUILD/ctest
#   asan-busted  the same busted suite against an ASan+UBSan build of the core
#                ($BUILD/asan, installed into $BUILD/asan/tree), with the
#                sanitizer runtimes preloaded into lua5.4
#   asan-ctest   the test/*.c programs built with ASan+UBSan ($BUILD/asan)
#   tsan-ctest   the test/*.c programs built with ThreadSanitizer ($BUILD/tsan):
#                the executor, the threadsafe posts, loops in several
#                threads. Not busted: lua5.4 cannot preload the TSan
#                runtime into the programs the specs start (sh, ls
#                crash with it), and the programs are instrumented whole.
#   valgrind     the core specs (VALGRIND_SPECS) under valgrind memcheck, plain
#                build: invalid accesses, uninitialised reads, definite leaks;
#                watchdogs ASYNCIO_TEST_SLOWDOWN (20) times longer
#   fuzz         each libFuzzer harness fuzz/*.c for FUZZ_SECS (10) seconds,
#                clang-14 with ASan+UBSan (fuzz/run.sh); one result each
#
# The last line printed is "N passed, M failed": every busted test of every
# pass (busted failures and errors count as failed) plus every C program
# run. A step that goes wrong outside a test (a build fails, busted dies or
# times out, a sanitizer report appears in a log even with exit status 0)
# is listed as FAILED and counts as one more failure. Exit status 0 only
# when M = 0. Logs are kept in $BUILD/logs/.
#
# Environment: PASSES, BUSTED_ARGS (extra busted arguments, e.g. a spec
# file), BUSTED_OUTPUT (busted output handler, default utfTerminal, gtest when
# CI is set), BUSTED_TIMEOUT (s per busted process, 600), CTEST_TIMEOUT (s
# per C program, 300), LUA (lua5.4), CC (compiler of the sanitizer builds).
set -u
set -o pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 2

BUILD=${BUILD:-$root/.build}
TREE=${TREE:-$BUILD/tree}
LUA=${LUA:-lua5.4}
PASSES=${PASSES:-busted ctest asan-busted asan-ctest tsan-ctest valgrind fuzz}
# the core of the runtime, where memcheck sees what ASan does not
# (uninitialised reads); the network specs stay with the ASan pass
VALGRIND_SPECS=${VALGRIND_SPECS:-spec/futures_spec.lua spec/tasks_spec.lua spec/cancel_spec.lua
  spec/loop_spec.lua spec/gather_spec.lua spec/timeouts_spec.lua spec/locks_spec.lua
  spec/queues_spec.lua spec/taskgroups_spec.lua spec/streamreader_spec.lua spec/control_spec.lua
  spec/coroutine_spec.lua}
FUZZ_SECS=${FUZZ_SECS:-10}
BUSTED_TIMEOUT=${BUSTED_TIMEOUT:-600}
CTEST_TIMEOUT=${CTEST_TIMEOUT:-300}
BUSTED_ARGS=${BUSTED_ARGS:-}
if [[ -n "${CI:-}" ]]; then
  # one line per test: a hang shows which test was running
  export BUSTED_OUTPUT=${BUSTED_OUTPUT:-gtest}
fi
LOGS=$BUILD/logs
JOBS=$(nproc 2>/dev/null || echo 2)
SANITIZER_REPORT='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|WARNING: ThreadSanitizer'

# Sanitizer settings, for both the preloaded lua5.4 and the C programs.
# detect_leaks=1: lua5.4 and busted themselves leave no leak reports. Child
# processes a test starts inherit LD_PRELOAD and these options, and some
# common programs (bash, perl, python3) leak at exit by design; their reports
# are suppressed by module name in lsan.supp. Options already in the
# environment come last and win.
san_env=(
  "ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
  "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
  "LSAN_OPTIONS=suppressions=$root/spec/support/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
)

mkdir -p "$LOGS"
passed=0
failed=0
problems=()

problem() { # one failure that is not a test
  problems+=("$1")
  failed=$((failed + 1))
  echo "FAILED: $1"
}

header() { printf '\n==> %s\n' "$1"; }

tree_env() { # sets tree_env_vars: the assignments that make Lua load asyncio from tree $1
  local lp="$1/share/lua/5.4/?.lua;$1/share/lua/5.4/?/init.lua;;" cp="$1/lib/lua/5.4/?.so;;"
  tree_env_vars=("LUA_PATH=$lp" "LUA_PATH_5_4=$lp" "LUA_CPATH=$cp" "LUA_CPATH_5_4=$cp")
}

describe_rc() {
  case $1 in
    124) echo "timed out" ;;
    137) echo "killed (timeout)" ;;
    *) if (($1 > 128)); then echo "killed by signal $(($1 - 128))"; else echo "exit status $1"; fi ;;
  esac
}

# cmake_build NAME DIR ARGS...: configure and build DIR; output to a log.
cmake_build() {
  local name=$1 dir=$2 log=$LOGS/build-$1.log
  shift 2
  # a cache written for another source tree (copied checkout) cannot be reused
  if [[ -f "$dir/CMakeCache.txt" ]] &&
     ! grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$root" "$dir/CMakeCache.txt"; then
    rm -rf "$dir"
  fi
  echo "building $name in ${dir#"$root"/} (log: ${log#"$root"/})"
  if ! { cmake -S "$root" -B "$dir" "$@" && cmake --build "$dir" -j "$JOBS"; } >"$log" 2>&1; then
    tail -n 40 "$log"
    problem "$name: build failed"
    return 1
  fi
}

built_ctest=
build_ctest() {
  [[ -n $built_ctest ]] && return "$built_ctest"
  built_ctest=0
  cmake_build ctest "$BUILD/ctest" -DASYNCIO_BUILD_TESTS=ON \
    -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_C_FLAGS_DEBUG=-O2 -g" || built_ctest=1
  return "$built_ctest"
}

built_asan=
build_asan() {
  [[ -n $built_asan ]] && return "$built_asan"
  built_asan=0
  local dir=$BUILD/asan
  if cmake_build asan "$dir" -DASYNCIO_SANITIZE=ON -DASYNCIO_BUILD_TESTS=ON \
       -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_C_FLAGS_DEBUG=-O1 -g" \
       "-DLUADIR=$dir/tree/share/lua/5.4" "-DLIBDIR=$dir/tree/lib/lua/5.4"; then
    rm -rf "$dir/tree" # no stale modules from deleted files
    if ! cmake --install "$dir" >>"$LOGS/build-asan.log" 2>&1; then
      tail -n 20 "$LOGS/build-asan.log"
      problem "asan: install failed"
      built_asan=1
    fi
  else
    built_asan=1
  fi
  return "$built_asan"
}

built_tsan=
build_tsan() {
  [[ -n $built_tsan ]] && return "$built_tsan"
  built_tsan=0
  cmake_build tsan "$BUILD/tsan" -DASYNCIO_TSAN=ON -DASYNCIO_BUILD_TESTS=ON \
    -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_C_FLAGS_DEBUG=-O1 -g" || built_tsan=1
  return "$built_tsan"
}

# run_busted NAME TREE [PRELOAD [ENV...]]: ENV are more assignments for busted
run_busted() {
  local name=$1 tree=$2 preload=${3:-} log=$LOGS/$1.log counts=$LOGS/$1.counts rc
  local -a env=()
  [[ -n $preload ]] && env=("ASYNCIO_PRELOAD=$preload" "${san_env[@]}")
  env+=("${@:4}")
  rm -f "$counts"
  # shellcheck disable=SC2086  # BUSTED_ARGS is a word list on purpose
  env "${env[@]}" TREE="$tree" LUA="$LUA" ASYNCIO_TEST_COUNTS="$counts" \
    timeout -k 10 "$BUSTED_TIMEOUT" bash spec/support/busted \
    -o spec/support/tally_output.lua $BUSTED_ARGS 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  local p=0 f=0
  if [[ -s $counts ]]; then
    read -r p f _ <"$counts"
  fi
  passed=$((passed + p))
  failed=$((failed + f))
  echo "$name: $p passed, $f failed"
  local why=()
  if [[ ! -s $counts ]]; then
    why+=("busted produced no results ($(describe_rc "$rc"))")
  elif ((rc == 124 || rc == 137)); then
    why+=("busted $(describe_rc "$rc") after ${BUSTED_TIMEOUT} s")
  elif ((rc > 1 || (rc == 1 && f == 0))); then
    # busted itself exits with 0, or 1 when a test failed
    why+=("busted ended with $(describe_rc "$rc") after $((p + f)) tests")
  fi
  if grep -qE "$SANITIZER_REPORT" "$log"; then
    why+=("sanitizer report in ${log#"$root"/}")
  fi
  if ((${#why[@]})); then
    local msg
    msg=$(printf '%s; ' "${why[@]}")
    problem "$name: ${msg%; }"
  fi
}

# run_ctests NAME BINDIR TREE [sanitized]
run_ctests() {
  local name=$1 bin=$2 tree=$3 sanitized=${4:-} src t log rc
  local -a env tree_env_vars
  tree_env "$tree"
  env=("${tree_env_vars[@]}")
  [[ $sanitized == asan ]] && env+=("${san_env[@]}")
  [[ $sanitized == tsan ]] && env+=("TSAN_OPTIONS=halt_on_error=1:suppressions=$root/spec/support/tsan.supp${TSAN_OPTIONS:+:$TSAN_OPTIONS}")
  for src in $(ctest_sources); do
    t=$(basename "$src" .c)
    log=$LOGS/$name-$t.log
    if [[ ! -x "$bin/$t" ]]; then
      echo "FAIL $t (not built)"
      failed=$((failed + 1))
      continue
    fi
    env "${env[@]}" timeout -k 5 "$CTEST_TIMEOUT" "$bin/$t" >"$log" 2>&1
    rc=$?
    if grep -qE "$SANITIZER_REPORT" "$log"; then
      ((rc == 0)) && rc=1
    fi
    if ((rc == 0)); then
      passed=$((passed + 1))
      echo "PASS $t"
    else
      failed=$((failed + 1))
      cat "$log"
      echo "FAIL $t ($(describe_rc "$rc"); log: ${log#"$root"/})"
    fi
  done
}

# test/*.c, then the host programs of the guides (```c file=NAME.c blocks of
# docs/guide/*.md, which CMake extracts and builds as test programs)
ctest_sources() {
  compgen -G "test/*.c"
  sed -n 's/^```c .*file=\([A-Za-z0-9_]*\.c\).*/\1/p' docs/guide/*.md 2>/dev/null
}

have_ctests() { compgen -G "test/*.c" >/dev/null; }

timings=()
for pass in $PASSES; do
  pass_start=$SECONDS
  case $pass in
    busted)
      header "busted (LuaRocks build, $TREE)"
      run_busted busted "$TREE"
      ;;
    ctest)
      header "C tests (plain build)"
      if ! have_ctests; then
        echo "no test/*.c"
      elif build_ctest; then
        run_ctests ctest "$BUILD/ctest/tests" "$TREE"
      fi
      ;;
    asan-busted)
      header "busted (AddressSanitizer + UndefinedBehaviorSanitizer build)"
      if build_asan; then
        cc=${CC:-cc}
        asan=$("$cc" -print-file-name=libasan.so)
        ubsan=$("$cc" -print-file-name=libubsan.so)
        if [[ $asan != /* || $ubsan != /* ]]; then
          problem "asan-busted: $cc has no libasan.so/libubsan.so"
        else
          run_busted asan-busted "$BUILD/asan/tree" "$asan $ubsan"
        fi
      fi
      ;;
    asan-ctest)
      header "C tests (AddressSanitizer + UndefinedBehaviorSanitizer build)"
      if ! have_ctests; then
        echo "no test/*.c"
      elif build_asan; then
        run_ctests asan-ctest "$BUILD/asan/tests" "$BUILD/asan/tree" asan
      fi
      ;;
    valgrind)
      header "busted under valgrind memcheck (core specs, LuaRocks build)"
      if ! command -v valgrind >/dev/null; then
        problem "valgrind: not installed (make deps)"
      else
        # malloc for every Lua block, so that memcheck sees each one (the
        # slab's own checks are the ASan passes')
        # shellcheck disable=SC2086  # word lists on purpose
        BUSTED_ARGS="${BUSTED_ARGS:-$(echo $VALGRIND_SPECS)}" run_busted valgrind "$TREE" "" \
          "ASYNCIO_WRAP=valgrind -q --error-exitcode=97 --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite" \
          "ASYNCIO_TEST_SLOWDOWN=${ASYNCIO_TEST_SLOWDOWN:-20}" "LUA_ASYNCIO_MALLOC=malloc"
      fi
      ;;
    tsan-ctest)
      header "C tests (ThreadSanitizer build)"
      if ! have_ctests; then
        echo "no test/*.c"
      elif ! echo 'int main(void){return 0;}' | "${CC:-cc}" -fsanitize=thread -x c - -o "$LOGS/tsan-probe" 2>/dev/null; then
        echo "skipped: ${CC:-cc} cannot build with -fsanitize=thread"
      elif build_tsan; then
        run_ctests tsan-ctest "$BUILD/tsan/tests" "$TREE" tsan
      fi
      ;;
    fuzz)
      header "libFuzzer harnesses, ${FUZZ_SECS} s each (fuzz/run.sh)"
      if ! command -v "${FUZZ_CC:-clang-14}" >/dev/null; then
        problem "fuzz: no ${FUZZ_CC:-clang-14} (make deps installs it)"
      else
        while read -r line; do
          echo "$line"
          case $line in
            PASS\ *) passed=$((passed + 1)) ;;
            FAIL\ *) failed=$((failed + 1)) ;;
          esac
        done < <(bash fuzz/run.sh "$FUZZ_SECS" 2>&1)
      fi
      ;;
    *)
      problem "unknown pass '$pass' (PASSES: busted ctest asan-busted asan-ctest tsan-ctest valgrind fuzz)"
      ;;
  esac
  # builds included: what each pass costs of the 15 minutes make test has
  timings+=("$pass $((SECONDS - pass_start)) s")
done

echo
echo "pass times: $(IFS=,; echo "${timings[*]}" | sed 's/,/, /g')"
for p in "${problems[@]}"; do
  echo "FAILED: $p"
done
echo "$passed passed, $failed failed"
((failed == 0))
