#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Pod networking: TCP throughput (host->pod, pod->host) and round-trip
# latency host<->pod over a CNI bridge, cocoond (VM per pod: veth -> tap ->
# virtio-net) against Debian's containerd 1.6 + runc (veth straight into the
# container) on the same bridge configuration in the same run; and network
# setup's share of RunPodSandbox for cocoond. Run as root:
#
#   bench/net/run.sh [BUILDDIR]
#
# BUILDDIR holds cocoond, cocoonctl and agent/cocoon-agent (default: .).
# See bench/net/README.md. Environment knobs (defaults in brackets):
#   SIZE_MIB [64]   bytes per throughput transfer; REPEAT [3] transfers per
#                   direction (best kept); PINGS [2000] 1-byte round trips
#   ROUNDS [5]      timed RunPodSandbox per configuration (after WARMUP [1])
#   KERNEL, INITRD  guest images [built under BUILDDIR as
#                   tests/integration/test_agent_guest.py does]
#   ONLY [""]       cocoond or containerd: run one side only
#   KEEP_LOGS [""]  a directory to copy the daemons' logs to (cc: cocoond
#                   with the bridge, cn: without CNI config, ct: containerd)
#   CONTAINERD [containerd from PATH]
set -eu -o pipefail

die() { echo "run.sh: $*" >&2; exit 1; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/../lib/cri-env.sh
. "$HERE/../lib/cri-env.sh"

crienv_paths "${1:-.}"
SIZE_MIB=${SIZE_MIB:-64}
REPEAT=${REPEAT:-3}
PINGS=${PINGS:-2000}
ROUNDS=${ROUNDS:-5}
WARMUP=${WARMUP:-1}
ONLY=${ONLY:-}
CLIENT=$HERE/netclient.py
BRIDGE=cnbench0
SUBNET=10.233.0.0/24

crienv_check_tools
ip link show "$BRIDGE" >/dev/null 2>&1 && die "bridge $BRIDGE exists already (another run, or a crashed one: ip link del $BRIDGE)"
for v in SIZE_MIB REPEAT PINGS ROUNDS; do
        [ "${!v}" -ge 1 ] 2>/dev/null || die "$v must be a positive integer"
done
crienv_guest_images
crienv_init nb
crienv_stubs
crienv_images >/dev/null

get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# The one network both daemons get: same bridge, same subnet, same IPAM
# directory, no masquerade (nothing leaves the machine); the daemons run one
# after the other.
cni_conf() { # DIR
        crienv_cni_bridge "$1" netbench "$BRIDGE" "$SUBNET" "$WORK/ipam" loopback
}

start_cocoond() { # DIR NET(bridge|none)
        [ "$2" = none ] || cni_conf "$1/cni-conf"
        crienv_start_cocoond "$1" /run/nb.XXXXXX debug
}

start_containerd() { # DIR
        cni_conf "$1/cni-conf"
        crienv_start_containerd "$1"
}

stop_daemon() { # DIR
        crienv_stop_daemon "$1"
        if [ -n "${KEEP_LOGS:-}" ]; then
                mkdir -p "$KEEP_LOGS" && cp "$LOG" "$KEEP_LOGS/$(basename "$1").log"
        fi
}

declare -A R

traffic() { # NAME
        local name=$1 out pod ip line
        echo "== $name: pod serving sink/echo/source; ${SIZE_MIB} MiB x $REPEAT each way, $PINGS pings" >&2
        out=$("$PY" "$CLIENT" pod --stubs "$STUBS" --image "$IMAGE" --logdir "$WORK/logs-$name" \
                --size-mib "$SIZE_MIB" "unix://$SOCK" 2>&1) || crienv_fail "$name: pod" "$out"
        read -r _ pod ip _ <<<"$(grep '^POD ' <<<"$out")"
        out=$("$PY" "$CLIENT" traffic --ip "$ip" --size-mib "$SIZE_MIB" --pings "$PINGS" --repeat "$REPEAT" 2>&1) ||
                crienv_fail "$name: traffic to $ip" "$out"
        line=$(grep '^RESULT' <<<"$out")
        for k in tx_mbit rx_mbit rtt_med_us rtt_p99_us; do R[$name/$k]=$(get "$k" "$line"); done
        echo "   $name $ip: $line" >&2
        "$PY" "$CLIENT" remove --stubs "$STUBS" "unix://$SOCK" "$pod" || die "$name: removing the pod failed"
}

starts() { # NAME KEY
        local name=$1 key=$2 out ids
        echo "== $name: $WARMUP warm-up + $ROUNDS timed RunPodSandbox ($key)" >&2
        out=$("$PY" "$CLIENT" starts --stubs "$STUBS" --rounds "$ROUNDS" --warmup "$WARMUP" \
                --logdir "$WORK/logs-$name" "unix://$SOCK" 2>&1) || crienv_fail "$name: pod starts" "$out"
        R[$name/$key]=$(get run_s "$(grep '^RESULT' <<<"$out")")
        LAST_IDS=$(awk '$1 == "ROUND" { print $2 }' <<<"$out")
}

echo "== pod network benchmark: cocoond (VM per pod) vs containerd 1.6 + runc, same CNI bridge"
daemons_host_line
[ "$ONLY" = containerd ] || echo "   $("$COCOOND" --version 2>&1 | head -n 1); accel: $([ -w /dev/kvm ] && echo auto || echo tcg)"
[ "$ONLY" = cocoond ] || echo "   $("$CONTAINERD" --version 2>&1 | head -n 1); $(runc --version | head -n 1)"
echo "   network: bridge $BRIDGE $SUBNET (bridge + host-local + loopback, ipMasq false), host <-> pod over the bridge"
echo

if [ "$ONLY" != containerd ]; then
        d=$WORK/cc
        start_cocoond "$d" bridge
        traffic cocoond
        starts cocoond run_s
        out=$("$PY" "$CLIENT" logtimes "$LOG" $LAST_IDS 2>&1) || crienv_fail "cocoond: log timings" "$out"
        grep '^POD' <<<"$out" | sed 's/^/   cocoond /' >&2
        line=$(grep '^RESULT' <<<"$out")
        for k in rpc_ms net_host_ms cni_add_ms; do R[cocoond/$k]=$(get "$k" "$line"); done
        stop_daemon "$d"
        d=$WORK/cn
        start_cocoond "$d" none
        starts cocoond run_none_s
        stop_daemon "$d"
fi
if [ "$ONLY" != cocoond ]; then
        d=$WORK/ct
        start_containerd "$d"
        traffic containerd
        starts containerd run_s
        stop_daemon "$d"
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
printf '%-11s | %12s %12s | %12s %12s | %14s\n' daemon "host->pod" "pod->host" "RTT median" "RTT p99" "RunPodSandbox"
printf '%-11s | %12s %12s | %12s %12s | %14s\n' "" "Mbit/s" "Mbit/s" "us" "us" "s (median)"
printf '%s\n' "------------------------------------------------------------------------------------------"
for n in cocoond containerd; do
        [ -n "${R[$n/tx_mbit]:-}" ] || continue
        printf '%-11s | %12s %12s | %12s %12s | %14s\n' "$n" "${R[$n/tx_mbit]}" "${R[$n/rx_mbit]}" \
                "${R[$n/rtt_med_us]}" "${R[$n/rtt_p99_us]}" "${R[$n/run_s]:-}"
done
if [ -n "${R[cocoond/tx_mbit]:-}" ] && [ -n "${R[containerd/tx_mbit]:-}" ]; then
        printf '%-11s | %11sx %11sx | %11sx %11sx | %13sx\n' "cocoon/runc" \
                "$(ratio "${R[cocoond/tx_mbit]}" "${R[containerd/tx_mbit]}")" \
                "$(ratio "${R[cocoond/rx_mbit]}" "${R[containerd/rx_mbit]}")" \
                "$(ratio "${R[cocoond/rtt_med_us]}" "${R[containerd/rtt_med_us]}")" \
                "$(ratio "${R[cocoond/rtt_p99_us]}" "${R[containerd/rtt_p99_us]}")" \
                "$(ratio "${R[cocoond/run_s]}" "${R[containerd/run_s]}")"
fi
echo
echo "   throughput: best of $REPEAT transfers of $SIZE_MIB MiB (python sender/receiver on the host," \
        "busybox nc + cat/head in the pod); RTT: $PINGS 1-byte TCP echoes (TCP_NODELAY)"
if [ -n "${R[cocoond/run_s]:-}" ]; then
        echo
        echo "== network setup's share of cocoond's pod start (medians of $ROUNDS RunPodSandbox, no container)"
        share_ms=$(awk -v a="${R[cocoond/run_s]}" -v b="${R[cocoond/run_none_s]}" 'BEGIN { printf "%.0f", (a - b) * 1000 }')
        printf '   RunPodSandbox with the bridge: %ss; with no CNI config (loopback only): %ss; difference: %s ms\n' \
                "${R[cocoond/run_s]}" "${R[cocoond/run_none_s]}" "$share_ms"
        printf '   from cocoond'"'"'s debug log: RPC %s ms server side; RPC start -> host network ready (netns, CNI ADD, taps): %s ms, of which the CNI plugins'"'"' ADD: %s ms\n' \
                "${R[cocoond/rpc_ms]}" "${R[cocoond/net_host_ms]}" "${R[cocoond/cni_add_ms]}"
        ok=$(awk -v m="${R[cocoond/net_host_ms]}" 'BEGIN { print (m <= 50) ? "met" : "NOT met" }')
        printf '   share of pod start: %s%% (host side), goal network setup <= 50 ms: %s\n' \
                "$(awk -v a="${R[cocoond/net_host_ms]}" -v b="${R[cocoond/rpc_ms]}" 'BEGIN { if (b > 0) printf "%.1f", 100 * a / b; else print "n/a" }')" "$ok"
fi
