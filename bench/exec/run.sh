#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Exec: round trip of `true` (ExecSync, and Exec through the streaming URL)
# and stdout throughput through Exec (`head -c SIZE /dev/zero` over SPDY/3.1),
# cocoond (one VM per pod, the exec goes through the in-guest agent) against
# Debian's containerd 1.6 + runc and its streaming server, same client, same
# run. Run as root:
#
#   bench/exec/run.sh [BUILDDIR]
#
# BUILDDIR holds cocoond, cocoonctl and agent/cocoon-agent (default: .).
# See bench/exec/README.md. Environment knobs (defaults in brackets):
#   ROUNDS [20]         timed round trips per kind
#   SIZE [100000000]    bytes of stdout for the throughput figure
#   REPEAT [2]          throughput runs (best kept)
#   KERNEL, INITRD      guest images [the test guest built under BUILDDIR]
#   NET [bridge]        as bench/podstart (none: cocoond without CNI config)
#   ONLY [""]           cocoond or containerd: run one side only
#   CONTAINERD [containerd from PATH]
set -eu -o pipefail

die() { echo "run.sh: $*" >&2; exit 1; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/../lib/cri-env.sh
. "$HERE/../lib/cri-env.sh"

crienv_paths "${1:-.}"
ROUNDS=${ROUNDS:-20}
SIZE=${SIZE:-100000000}
REPEAT=${REPEAT:-2}
NET=${NET:-bridge}
ONLY=${ONLY:-}
EXECCLIENT=$HERE/execclient.py

crienv_check_tools
case $NET in bridge | none) ;; *) die "NET must be bridge or none" ;; esac
[ "$ROUNDS" -ge 1 ] 2>/dev/null || die "ROUNDS must be a positive integer"
crienv_guest_images
crienv_init exb
crienv_stubs
crienv_images >/dev/null

get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

start_cocoond() { # DIR
        [ "$NET" = none ] || crienv_cni_bridge "$1/cni-conf" execbench-exbcc0 exbcc0 10.233.0.0/24 "$1/cni-conf/ipam"
        # /run/xb.XXXX: the sandbox dir + virtiofsd.sock must fit in 107 bytes.
        crienv_start_cocoond "$1" /run/xb.XXXX info
}

start_containerd() { # DIR
        crienv_cni_bridge "$1/cni-conf" execbench-exbct0 exbct0 10.234.0.0/24 "$1/cni-conf/ipam"
        crienv_start_containerd "$1"
}

declare -A R

bench_one() { # NAME
        local name=$1 d=$WORK/c-$1 out line
        mkdir -p "$d"
        "start_$name" "$d"
        echo "== $name: $ROUNDS x ExecSync true, $ROUNDS x Exec true (SPDY), $REPEAT x $SIZE bytes of stdout" >&2
        out=$("$PY" "$EXECCLIENT" --stubs "$STUBS" --rounds "$ROUNDS" --size "$SIZE" --repeat "$REPEAT" \
                --image "$IMAGE" --logdir "$d/logs" "unix://$SOCK" 2>&1) || crienv_fail "$name: exec benchmark" "$out"
        grep -E '^THROUGHPUT' <<<"$out" | sed "s/^/   $name /" >&2
        line=$(grep '^RESULT' <<<"$out")
        for k in sync_ms sync_min_ms sync_max_ms stream_ms stream_min_ms stream_max_ms mbs; do
                R[$name/$k]=$(get "$k" "$line")
        done
        crienv_stop_daemon "$d"
}

echo "== exec benchmark: cocoond (VM per pod, exec through the agent) vs containerd 1.6 + runc, CRI"
daemons_host_line
[ "$ONLY" = containerd ] || echo "   $("$COCOOND" --version 2>&1 | head -n 1); accel: $([ -w /dev/kvm ] && echo kvm || echo tcg);" \
        "kernel $KERNEL; initrd $INITRD"
[ "$ONLY" = cocoond ] || echo "   $("$CONTAINERD" --version 2>&1 | head -n 1); $(runc --version | head -n 1)"
echo "   client: bench/exec/execclient.py (grpcio + tests/integration/spdy_client.py); container: sleep 3600"
echo

for n in cocoond containerd; do
        [ -z "$ONLY" ] || [ "$ONLY" = "$n" ] || continue
        bench_one "$n"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
printf '%-11s | %-24s | %-24s | %s\n' daemon "ExecSync true ms" "Exec true (SPDY) ms" "stdout MB/s"
printf '%-11s | %-24s | %-24s | %s\n' "" "median (min-max)" "median (min-max)" "(best of $REPEAT)"
printf '%s\n' "------------------------------------------------------------------------------------"
for n in cocoond containerd; do
        [ -n "${R[$n/mbs]:-}" ] || continue
        printf '%-11s | %-24s | %-24s | %s\n' "$n" \
                "${R[$n/sync_ms]} (${R[$n/sync_min_ms]}-${R[$n/sync_max_ms]})" \
                "${R[$n/stream_ms]} (${R[$n/stream_min_ms]}-${R[$n/stream_max_ms]})" "${R[$n/mbs]}"
done
echo
if [ -n "${R[cocoond/mbs]:-}" ]; then
        echo "== goal (issue 7)"
        ok=$(awk -v m="${R[cocoond/mbs]}" 'BEGIN { print (m >= 50) ? "met" : "NOT met" }')
        printf '   stdout through exec: %s MB/s (goal >= 50 MB/s under TCG): %s\n' "${R[cocoond/mbs]}" "$ok"
        if [ -n "${R[containerd/mbs]:-}" ]; then
                printf '   vs containerd: %sx its throughput, %sx its ExecSync round trip\n' \
                        "$(ratio "${R[cocoond/mbs]}" "${R[containerd/mbs]}")" \
                        "$(ratio "${R[cocoond/sync_ms]}" "${R[containerd/sync_ms]}")"
        fi
fi
