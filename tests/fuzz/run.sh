#!/usr/bin/env bash
# Builds tests/fuzz/fuzz_attach.c with clang (libFuzzer, ASan, UBSan) and
# runs it over the committed seed corpus for a fixed budget.  Exits non-zero
# on a build failure, a crash, a sanitizer report or a timeout (a hang),
# and when it leaves an entry in /dev/shm.  New inputs found during the run
# go to a scratch folder, never into tests/fuzz/corpus.
#
# Usage: tests/fuzz/run.sh                 (200000 runs, 10 s per input)
#        ZDFUZZ_RUNS=20000 tests/fuzz/run.sh
# Needs clang with the compiler-rt fuzzer library (Debian/Ubuntu: apt-get
# install clang, which pulls in libclang-rt-<version>-dev).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

runs="${ZDFUZZ_RUNS:-200000}"
cc="${ZDFUZZ_CC:-clang}"
out=build/fuzz
mkdir -p "$out/artifacts"

if ! command -v "$cc" >/dev/null 2>&1; then
  echo "fuzz: $cc not found (apt-get install clang)" >&2
  exit 2
fi

echo "== fuzz: build $out/fuzz_attach"
"$cc" -std=gnu11 -g -O1 -D_GNU_SOURCE \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -fno-omit-frame-pointer -Wall -Wextra -Werror \
  -Icsrc/include -Icsrc/core \
  csrc/core/*.c tests/fuzz/fuzz_attach.c \
  -o "$out/fuzz_attach" -lpthread -lrt

name="zdfuzz-$$"
scratch="$(mktemp -d)"
cleanup() {
  rm -rf "$scratch"
  rm -f "/dev/shm/$name"
}
trap cleanup EXIT

echo "== fuzz: $runs runs over tests/fuzz/corpus"
start=$(date +%s)
rc=0
ZDFUZZ_NAME="$name" \
ASAN_OPTIONS="abort_on_error=0:detect_leaks=1" \
UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
  "$out/fuzz_attach" -runs="$runs" -timeout=10 -max_len=11520 -seed=1 \
    -print_final_stats=1 -artifact_prefix="$out/artifacts/" \
    "$scratch" tests/fuzz/corpus || rc=$?
echo "== fuzz: $(( $(date +%s) - start )) s, exit $rc"
if [ -e "/dev/shm/$name" ]; then
  echo "fuzz: /dev/shm/$name left behind by the target" >&2
  [ "$rc" -ne 0 ] || rc=1
fi
exit "$rc"
