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
# abort.  handle_segv/handle_sigbus=0: tests make children fault on purpose
# (a write through a read-only sample) and expect the signal itself; a fault
# anywhere else still kills the process and fails its test.
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

# --capture=sys: pytest captures sys.stdout/stderr but not the process's
# file descriptors, so a sanitizer report written to fd 2 by the process
# that aborts is not lost with pytest's capture; it lands in out.log too.
LD_PRELOAD="$asan $ubsan" \
PYTHONMALLOC=malloc \
ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:handle_segv=0:handle_sigbus=0:abort_on_error=1:log_path=$logdir/asan" \
UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$logdir/ubsan" \
  "$python" -m pytest --capture=sys tests/python "$@" 2>&1 | tee "$logdir/out.log"
rc=${PIPESTATUS[0]}

# A log holds errors or only warnings (a refused huge allocation); errors
# are what fail the run.  Reports may also have gone to stderr (out.log).
reports=$(grep -l -E 'ERROR: [A-Za-z]+Sanitizer|runtime error:' "$logdir"/* 2>/dev/null | wc -l)
if [ "$(find "$logdir" -type f ! -name out.log | wc -l)" -gt 0 ]; then
  echo "run_asan_python: sanitizer output:" >&2
  find "$logdir" -type f ! -name out.log -exec cat {} + >&2
fi
if [ "$reports" -gt 0 ]; then
  echo "run_asan_python: $reports sanitizer error report(s)" >&2
  [ $rc -eq 0 ] && rc=1
else
  echo "run_asan_python: 0 sanitizer error reports"
fi
exit $rc
