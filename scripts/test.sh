#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root), builds cocoon, and runs every
# test: cmocka unit tests (make check), the proto check, and the Python
# integration tests against the real daemon. Prints "N passed, M failed" last
# and exits non-zero if anything failed.
#   COCOON_SKIP_SETUP=1   don't run apt (packages already present)
#   COCOON_DISTCHECK=0    skip `make distcheck`
#   COCOON_FUZZ_SECONDS=N run each libFuzzer target for N seconds (default 20, 0 = skip)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

if [ "${COCOON_SKIP_SETUP:-0}" != 1 ]; then
  bash scripts/setup-debian.sh all
fi

jobs=$(nproc 2>/dev/null || echo 2)
autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure -q
make -j"$jobs" >/dev/null || make  # re-run serially to show the error
# The guest the VM tests boot: cocoon's lean kernel (built from Debian's
# linux-source-6.1 the first time, ~8 min on 2 cores; kept in build/guest/kbuild)
# and the initrd with this build's agent. A failure here fails the run: the
# tests would otherwise quietly boot Debian's kernel instead.
guest_fail=0
echo "test: make guest (the lean guest kernel; the first build takes minutes)"
if ! make guest >guest.out 2>&1; then
  tail -40 guest.out
  guest_fail=1
fi

unit_pass=0 unit_fail=0
if make -j"$jobs" check >check.out 2>&1; then unit_rc=0; else unit_rc=$?; fi
grep -E '^(PASS|FAIL|XFAIL|XPASS|SKIP|ERROR):' check.out || true
if [ -f test-suite.log ]; then
  unit_pass=$(sed -n 's/^# PASS: *//p' test-suite.log | head -1)
  unit_fail=$(( $(sed -n 's/^# FAIL: *//p' test-suite.log | head -1) + $(sed -n 's/^# ERROR: *//p' test-suite.log | head -1) ))
fi
if [ "$unit_rc" != 0 ]; then
  cat check.out | tail -50
  [ -f test-suite.log ] && cat test-suite.log | tail -100
  unit_fail=$(( unit_fail > 0 ? unit_fail : 1 ))
fi
cd "$top"

# Integration tests drive the real daemon with Debian's grpcio (use Debian's
# python, not a pyenv/venv one that lacks the packages).
py=/usr/bin/python3
it_rc=0
COCOON_BUILDDIR="$top/build" "$py" -m pytest -q -p no:cacheprovider \
  --junitxml="$top/build/integration.xml" tests/integration || it_rc=$?
it_pass=0 it_fail=0
if [ -f build/integration.xml ]; then
  read -r it_pass it_fail < <("$py" - "$top/build/integration.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
s = r if r.tag == "testsuite" else r.find("testsuite")
t, f, e, sk = (int(s.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
print(t - f - e - sk, f + e)
PY
)
fi
[ "$it_rc" != 0 ] && [ "$it_fail" = 0 ] && it_fail=1

# libFuzzer targets for every parser fed from outside, a bounded run each.
fuzz_pass=0 fuzz_fail=0
fuzz_secs=${COCOON_FUZZ_SECONDS:-20}
if [ "$fuzz_secs" -gt 0 ] && command -v clang >/dev/null; then
  if bash tests/fuzz/run.sh build "$fuzz_secs" >build/fuzz.out 2>&1; then :; fi
  grep -E '^(PASS|FAIL):' build/fuzz.out || true
  read -r fuzz_pass fuzz_fail < <(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' build/fuzz.out | tail -1)
  fuzz_pass=${fuzz_pass:-0} fuzz_fail=${fuzz_fail:-1}
fi

dist_fail=0
if [ "${COCOON_DISTCHECK:-1}" = 1 ]; then
  (cd build && make -j"$jobs" distcheck >distcheck.out 2>&1) || { tail -40 build/distcheck.out; dist_fail=1; }
fi

passed=$(( unit_pass + it_pass + fuzz_pass ))
failed=$(( unit_fail + it_fail + dist_fail + fuzz_fail + guest_fail ))
echo
[ "$guest_fail" = 0 ] || echo "make guest FAILED (build/guest.out)"
echo "unit: ${unit_pass} passed, ${unit_fail} failed; integration: ${it_pass} passed, ${it_fail} failed; fuzz: ${fuzz_pass} passed, ${fuzz_fail} failed"
echo "${passed} passed, ${failed} failed"
[ "$failed" = 0 ]
