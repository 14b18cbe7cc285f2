#!/usr/bin/env bash
# Runs the Python tests (tests/python) against an extension built with
# AddressSanitizer and UndefinedBehaviorSanitizer:
#
#   pip install '.[test]' -C cmake.define.ZD_SANITIZE=address
#   bash tests/run_asan_python.sh [pytest arguments]
#
# The sanitizer runtimes are preloaded (the interpreter itself is not
# instrumented), PYTHONMALLOC=malloc lets ASan see every allocation, and any
# report aborts the process, so a report fails the test that caused it; the
# log directory is checked at the end as well.  Leak detection is off: the
# interpreter does not free everything at exit.  allocator_may_return_null:
# tests ask for segments too large to allocate and expect the error, not an
# abort.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python}"

# Found without importing it: an ASan build cannot load without the preload.
so="$("$python" -c 'import glob, importlib.util, os
spec = importlib.util.find_spec("zdshm")
print(glob.glob(os.path.join(os.path.dirname(spec.origin), "_zdshm*.so"))[0])')" || exit 1
if ! nm -D "$so" | grep __asan_init >/dev/null; then   # not -q: pipefail
  echo "run_asan_python: $so is not an ASan build" >&2
  echo "  (pip install '.[test]' -C cmake.define.ZD_SANITIZE=address)" >&2
  exit 2
fi

logdir="$(mktemp -d)"
trap 'rm -rf "$logdir"' EXIT
asan="$(gcc -print-file-name=libasan.so)"
ubsan="$(gcc -print-file-name=libubsan.so)"

LD_PRELOAD="$asan $ubsan" \
PYTHONMALLOC=malloc \
ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:abort_on_error=1:log_path=$logdir/asan" \
UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$logdir/ubsan" \
  "$python" -m pytest tests/python "$@"
rc=$?

# A log holds errors or only warnings (a refused huge allocation); errors
# are what fail the run.
reports=$(grep -l -E 'ERROR: [A-Za-z]+Sanitizer|runtime error:' "$logdir"/* 2>/dev/null | wc -l)
if [ "$(find "$logdir" -type f | wc -l)" -gt 0 ]; then
  echo "run_asan_python: sanitizer output:" >&2
  cat "$logdir"/* >&2
fi
if [ "$reports" -gt 0 ]; then
  echo "run_asan_python: $reports sanitizer error report(s)" >&2
  [ $rc -eq 0 ] && rc=1
else
  echo "run_asan_python: 0 sanitizer error reports"
fi
exit $rc
