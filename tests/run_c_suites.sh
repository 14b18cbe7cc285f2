#!/usr/bin/env bash
# Builds and runs the C test programs (tests/c) three times: a plain
# RelWithDebInfo build, an ASan+UBSan build and a TSan build, each in its
# own CMake tree under build/.  The plain and the ASan+UBSan builds also build
# the benchmark's C floors (benchmarks/c, -DZD_BUILD_BENCH=ON) with the same
# warnings as errors and run their self-checks.  Fails if any build or any
# test fails, or if a test left an entry in /dev/shm.
#
# Usage: tests/run_c_suites.sh            (from anywhere)
#        ZD_C_SUITES="release asan"  tests/run_c_suites.sh   (a subset)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

suites="${ZD_C_SUITES:-release asan tsan}"
jobs="${ZD_C_JOBS:-2}"

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export TSAN_OPTIONS="halt_on_error=1"

generator=()
if command -v ninja >/dev/null 2>&1; then
  generator=(-G Ninja)
fi

log() { printf '== %s\n' "$*"; }

# TSan needs a memory layout it knows; on kernels with many mmap random
# bits the runtime aborts with "unexpected memory mapping" (or similar) and
# the programs must run without address randomisation (setarch -R).
tsan_prefix=()
tsan_probe() {
  local dir="$1" probe="$1/tsan_probe"
  printf 'int main(void){return 0;}\n' > "$dir/tsan_probe.c"
  if ! cc -fsanitize=thread "$dir/tsan_probe.c" -o "$probe" 2>/dev/null; then
    echo "tsan probe did not compile" >&2
    return 0
  fi
  if ! "$probe" >/dev/null 2>"$dir/tsan_probe.err"; then
    if command -v setarch >/dev/null 2>&1 && setarch "$(uname -m)" -R "$probe" >/dev/null 2>&1; then
      log "TSan needs a fixed layout here: running its tests under setarch -R"
      tsan_prefix=(setarch "$(uname -m)" -R)
    else
      echo "TSan runtime fails on this machine:" >&2
      cat "$dir/tsan_probe.err" >&2
    fi
  fi
}

shm_snapshot() { ls -1 /dev/shm 2>/dev/null | grep '^zdtest-' | sort || true; }

failed=()
start_all=$(date +%s)

for suite in $suites; do
  case "$suite" in
    release) dir=build/c-release; opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DZD_BUILD_BENCH=ON) ;;
    asan)    dir=build/c-asan;    opts=(-DCMAKE_BUILD_TYPE=Debug -DZD_SANITIZE=address -DZD_BUILD_BENCH=ON) ;;
    tsan)    dir=build/c-tsan;    opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DZD_SANITIZE=thread) ;;
    *) echo "unknown suite '$suite' (release, asan, tsan)" >&2; exit 2 ;;
  esac
  t0=$(date +%s)
  mkdir -p "$dir"
  log "$suite: configure $dir"
  if ! cmake -S . -B "$dir" ${generator[@]+"${generator[@]}"} -DZD_BUILD_TESTS=ON -DZD_WERROR=ON "${opts[@]}" >"$dir/configure.log" 2>&1; then
    cat "$dir/configure.log" >&2
    failed+=("$suite (configure)"); continue
  fi
  log "$suite: build"
  if ! cmake --build "$dir" -j "$jobs"; then
    failed+=("$suite (build)"); continue
  fi
  before="$(shm_snapshot)"
  prefix=()
  if [ "$suite" = tsan ]; then
    tsan_probe "$dir"
    prefix=(${tsan_prefix[@]+"${tsan_prefix[@]}"})
  fi
  log "$suite: ctest"
  if ! ${prefix[@]+"${prefix[@]}"} ctest --test-dir "$dir" --output-on-failure --timeout 180; then
    failed+=("$suite (tests)")
  fi
  after="$(shm_snapshot)"
  if [ "$before" != "$after" ]; then
    echo "$suite: tests left entries in /dev/shm:" >&2
    comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after") >&2
    failed+=("$suite (/dev/shm not clean)")
  fi
  log "$suite: done in $(( $(date +%s) - t0 )) s"
done

log "all suites: $(( $(date +%s) - start_all )) s"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
log "all C suites passed ($suites)"
