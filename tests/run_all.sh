#!/usr/bin/env bash
# The whole test suite: the C suites (tests/run_c_suites.sh: plain, ASan+UBSan
# and TSan builds of tests/c under ctest), then pytest over tests/ (the
# installed zdshm package; pytest's summary line comes last).
#
# Usage: bash tests/run_all.sh [pytest arguments]
#        ZD_SKIP_C_SUITES=1 bash tests/run_all.sh     (Python tests only)
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python}"
status=0

if [ "${ZD_SKIP_C_SUITES:-0}" = 1 ]; then
  echo "== C suites skipped (ZD_SKIP_C_SUITES=1)"
elif [ -f tests/run_c_suites.sh ]; then
  bash tests/run_c_suites.sh || status=1
else
  echo "== tests/run_c_suites.sh not found: C suites skipped"
fi

echo "== pytest"
"$python" -m pytest "$@"
rc=$?
if [ $rc -ne 0 ]; then
  status=$rc
fi
if [ $status -ne 0 ]; then
  echo "== FAILED (C suites and/or pytest): exit $status"
fi
exit $status
