#!/usr/bin/env bash
# Builds every libFuzzer target with clang (ASan + UBSan) and runs each for a
# bounded time. Usage: tests/fuzz/run.sh BUILDDIR [SECONDS]
# BUILDDIR is a configured build tree where `make` has generated proto/*.pb-c.*.
# Prints "N passed, M failed" (a target fails when libFuzzer finds a crash).
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?usage: run.sh BUILDDIR [SECONDS]}" && pwd)
secs=${2:-30}
out=$(mktemp -d /tmp/cocoon-fuzz.XXXXXX)
trap 'rm -rf "$out"' EXIT
cd "$top"
CFLAGS=(-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -std=gnu11
        -pthread -D_GNU_SOURCE -Ulinux -I. -I"$build" -I"$build/proto"
        -DCOCOON_LIBEXECDIR='"/usr/libexec/cocoon"' -DCOCOON_SHAREDIR='"/usr/share/cocoon"'
        -DCOCOON_SYSCONFDIR='"/etc"')

# target: sources (relative to the tree or the build dir) and libraries
declare -A SRC LIBS
SRC[fuzz-ttrpc]="common/ttrpc-frame.c common/ttrpc-client.c common/ttrpc-server.c common/error.c common/log.c $build/proto/ttrpc.pb-c.c"
LIBS[fuzz-ttrpc]="-lprotobuf-c"
SRC[fuzz-config]="common/toml.c common/config.c common/error.c common/log.c common/fs.c"
LIBS[fuzz-config]=""
# Targets owned by other modules register themselves in tests/fuzz/targets.d/*.sh
# (each sets SRC[name] and LIBS[name]).
for f in tests/fuzz/targets.d/*.sh; do [ -f "$f" ] && . "$f"; done

pass=0 fail=0
for t in $(printf '%s\n' "${!SRC[@]}" | sort); do
  [ -f "tests/fuzz/$t.c" ] || continue
  # shellcheck disable=SC2086
  if ! clang "${CFLAGS[@]}" "tests/fuzz/$t.c" ${SRC[$t]} ${LIBS[$t]} -o "$out/$t" 2>"$out/$t.build"; then
    echo "FAIL: $t (build)"; tail -20 "$out/$t.build"; fail=$((fail + 1)); continue
  fi
  mkdir -p "$out/$t.corpus"
  if "$out/$t" -max_len=65536 -max_total_time="$secs" -timeout=10 -print_final_stats=1 "$out/$t.corpus" >"$out/$t.log" 2>&1; then
    echo "PASS: $t ($(grep -o 'stat::number_of_executed_units: [0-9]*' "$out/$t.log" | awk '{print $2}') runs in ${secs}s)"
    pass=$((pass + 1))
  else
    echo "FAIL: $t"; tail -40 "$out/$t.log"; fail=$((fail + 1))
  fi
done
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
