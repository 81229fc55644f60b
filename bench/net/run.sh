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
SRCDIR=$(cd "$HERE/../.." && pwd)
# shellcheck source=SCRIPTDIR/../lib/daemons.sh
. "$SRCDIR/bench/lib/daemons.sh"

BUILDDIR=$(cd "${1:-.}" && pwd) || die "no build directory '${1:-.}'"
COCOOND=$BUILDDIR/cocoond
COCOONCTL=$BUILDDIR/cocoonctl
AGENT=$BUILDDIR/agent/cocoon-agent
CONTAINERD=${CONTAINERD:-$(command -v containerd || true)}
CTR=$(command -v ctr || true)
SIZE_MIB=${SIZE_MIB:-64}
REPEAT=${REPEAT:-3}
PINGS=${PINGS:-2000}
ROUNDS=${ROUNDS:-5}
WARMUP=${WARMUP:-1}
ONLY=${ONLY:-}
PY=/usr/bin/python3
CLIENT=$HERE/netclient.py
PODCLIENT=$SRCDIR/bench/podstart/podclient.py
IMAGE=example.com/bench/busybox:1.0
BRIDGE=cnbench0
SUBNET=10.233.0.0/24

[ "$(id -u)" = 0 ] || die "must run as root"
case $ONLY in "" | cocoond | containerd) ;; *) die "ONLY must be cocoond or containerd" ;; esac
if [ "$ONLY" != containerd ]; then
        for f in "$COCOOND" "$COCOONCTL" "$AGENT"; do
                [ -x "$f" ] || die "$f not found: build it (make)"
        done
fi
if [ "$ONLY" != cocoond ]; then
        [ -n "$CONTAINERD" ] && [ -x "$CONTAINERD" ] || die "containerd not found: apt-get install containerd"
        [ -n "$CTR" ] || die "ctr not found (Debian's containerd package)"
        command -v runc >/dev/null || die "runc not found: apt-get install runc"
fi
for p in bridge host-local loopback; do
        [ -x /usr/lib/cni/$p ] || die "/usr/lib/cni/$p not found: apt-get install containernetworking-plugins"
done
"$PY" -c 'import grpc, grpc_tools' 2>/dev/null || die "$PY lacks grpc: apt-get install python3-grpcio python3-grpc-tools"
ip link show "$BRIDGE" >/dev/null 2>&1 && die "bridge $BRIDGE exists already (another run, or a crashed one: ip link del $BRIDGE)"
for v in SIZE_MIB REPEAT PINGS ROUNDS; do
        [ "${!v}" -ge 1 ] 2>/dev/null || die "$v must be a positive integer"
done

if [ "$ONLY" != containerd ] && { [ -z "${KERNEL:-}" ] || [ -z "${INITRD:-}" ]; }; then
        echo "== guest images (tests/integration/test_agent_guest.py guest_images) ..." >&2
        imgs=$(cd "$SRCDIR/tests/integration" && COCOON_BUILDDIR=$BUILDDIR "$PY" -c \
                'import test_agent_guest as g; print(*g.guest_images())') || die "cannot build the guest images"
        KERNEL=${KERNEL:-${imgs% *}}
        INITRD=${INITRD:-${imgs#* }}
fi

WORK=
STATES=
DAEMON_PID=
HOST_CTR_BEFORE=$(daemons_host_ctr_dirs)

cleanup() {
        local rc=$? after
        trap - EXIT INT TERM
        daemons_stop_pid "$DAEMON_PID"
        if [ -n "$WORK" ] && [ -d "$WORK" ]; then
                for p in $(grep -l -s -F -e "$WORK" ${STATES:+$(printf -- '-e %s ' $STATES)} /proc/[0-9]*/cmdline | cut -d/ -f3); do
                        [ "$p" != $$ ] && kill -KILL "$p" 2>/dev/null || true
                done
                daemons_umount_below "$WORK"
                rm -rf "$WORK"
        fi
        for s in $STATES; do
                daemons_umount_below "$s"
                rm -rf "$s"
        done
        ip link del "$BRIDGE" 2>/dev/null || true
        if [ -z "$HOST_CTR_BEFORE" ] && [ -d /run/containerd ]; then
                find /run/containerd -depth -type d -empty -delete 2>/dev/null || true
        fi
        after=$(daemons_host_ctr_dirs)
        [ "$after" = "$HOST_CTR_BEFORE" ] ||
                echo "run.sh: WARNING: host containerd directories changed: '$HOST_CTR_BEFORE' -> '$after'" >&2
        exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Short: unix socket paths (pod dirs are named by 64-char ids) must fit in 107 bytes.
WORK=$(mktemp -d /tmp/nb.XXXXXX)
chmod 0711 "$WORK"
STUBS=$WORK/stubs
"$PY" "$PODCLIENT" stubs "$STUBS"
"$PY" "$PODCLIENT" images "$WORK/img" >/dev/null

get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# The one network both daemons get: same bridge, same subnet, no masquerade
# (nothing leaves the machine); the daemons run one after the other.
cni_conf() { # DIR
        mkdir -p "$1"
        cat >"$1/10-netbench.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "netbench",
  "plugins": [
    { "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false,
      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "$SUBNET" }]], "dataDir": "$WORK/ipam" } },
    { "type": "loopback" }
  ]
}
EOF
}

start_cocoond() { # DIR NET(bridge|none)
        local d=$1
        daemons_cocoond_config "$d" "$d/cocoon.sock" "$(printf '[vm]\nkernel = "%s"\ninitrd = "%s"\n[runtime]\nhost_agent = "%s"\n' \
                "$KERNEL" "$INITRD" "$AGENT")"
        # Short state dir: sandbox dirs hold unix sockets (virtiofsd's, the
        # agent's) under 64-character pod ids.
        local s
        s=$(mktemp -d /run/nb.XXXXXX)
        STATES="$STATES $s"
        sed -i "s|^state = .*|state = \"$s\"|" "$d/cocoon.toml"
        mkdir -p "$d/cni-conf"
        [ "$2" = none ] || cni_conf "$d/cni-conf"
        "$COCOOND" --config "$d/cocoon.toml" --log-level debug >"$d/log" 2>&1 &
        DAEMON_PID=$!
        wait_exec "$DAEMON_PID" "$COCOOND"
        daemons_wait_ready cocoond "$DAEMON_PID" "$d/cocoon.sock" "$d/log" "$COCOOND" \
                "$PY" "$PODCLIENT" version --stubs "$STUBS" "unix://$d/cocoon.sock"
        "$COCOONCTL" -a "unix://$d/cocoon.sock" image import --name "${IMAGE%:*}" "$WORK/img/busybox" >/dev/null ||
                die "cocoonctl image import failed"
        SOCK=$d/cocoon.sock
        LOG=$d/log
}

start_containerd() { # DIR
        local d=$1
        daemons_containerd_config "$d" "$(printf '  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n    runtime_type = "io.containerd.runc.v2"\n  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n    Root = "%s"\n' "$d/runc")"
        sed -i '/^  sandbox_image = /a\  restrict_oom_score_adj = true' "$d/config.toml"
        ln -s /usr/lib/cni/* "$d/cni-bin/"
        cni_conf "$d/cni-conf"
        "$CONTAINERD" --config "$d/config.toml" >"$d/log" 2>&1 &
        DAEMON_PID=$!
        wait_exec "$DAEMON_PID" "$CONTAINERD"
        daemons_wait_ready containerd "$DAEMON_PID" "$d/containerd.sock" "$d/log" "$CONTAINERD" \
                "$PY" "$PODCLIENT" version --stubs "$STUBS" "unix://$d/containerd.sock"
        for t in pause busybox; do
                "$CTR" --address "$d/containerd.sock" -n k8s.io images import "$WORK/img/$t.tar" >/dev/null ||
                        die "ctr images import $t failed"
        done
        SOCK=$d/containerd.sock
        LOG=$d/log
}

# daemons_wait_ready checks /proc/PID/exe at once; right after "&" the child
# may not have exec'd yet (still bash): wait for the exec first (5 s).
wait_exec() { # PID BINARY
        local i
        for ((i = 0; i < 50; i++)); do
                [ "$(readlink "/proc/$1/exe" || true)" = "$(readlink -f "$2")" ] && return 0
                kill -0 "$1" 2>/dev/null || return 0
                sleep 0.1
        done
}

stop_daemon() { # DIR
        daemons_stop_pid "$DAEMON_PID"
        if [ -n "${KEEP_LOGS:-}" ]; then
                mkdir -p "$KEEP_LOGS" && cp "$LOG" "$KEEP_LOGS/$(basename "$1").log"
        fi
        DAEMON_PID=
        daemons_umount_below "$1"
}

fail() { # NAME OUTPUT
        echo "$2" >&2
        tail -n 30 "$LOG" >&2
        die "$1 failed (above)"
}

declare -A R

traffic() { # NAME
        local name=$1 out pod ip line
        echo "== $name: pod serving sink/echo/source; ${SIZE_MIB} MiB x $REPEAT each way, $PINGS pings" >&2
        out=$("$PY" "$CLIENT" pod --stubs "$STUBS" --image "$IMAGE" --logdir "$WORK/logs-$name" \
                --size-mib "$SIZE_MIB" "unix://$SOCK" 2>&1) || fail "$name: pod" "$out"
        read -r _ pod ip _ <<<"$(grep '^POD ' <<<"$out")"
        out=$("$PY" "$CLIENT" traffic --ip "$ip" --size-mib "$SIZE_MIB" --pings "$PINGS" --repeat "$REPEAT" 2>&1) ||
                fail "$name: traffic to $ip" "$out"
        line=$(grep '^RESULT' <<<"$out")
        for k in tx_mbit rx_mbit rtt_med_us rtt_p99_us; do R[$name/$k]=$(get "$k" "$line"); done
        echo "   $name $ip: $line" >&2
        "$PY" "$CLIENT" remove --stubs "$STUBS" "unix://$SOCK" "$pod" || die "$name: removing the pod failed"
}

starts() { # NAME KEY
        local name=$1 key=$2 out ids
        echo "== $name: $WARMUP warm-up + $ROUNDS timed RunPodSandbox ($key)" >&2
        out=$("$PY" "$CLIENT" starts --stubs "$STUBS" --rounds "$ROUNDS" --warmup "$WARMUP" \
                --logdir "$WORK/logs-$name" "unix://$SOCK" 2>&1) || fail "$name: pod starts" "$out"
        R[$name/$key]=$(get run_s "$(grep '^RESULT' <<<"$out")")
        LAST_IDS=$(awk '$1 == "ROUND" { print $2 }' <<<"$out")
}

echo "== pod network benchmark: cocoond (VM per pod) vs containerd 1.6 + runc, same CNI bridge"
echo "   $(date -u '+%Y-%m-%d %H:%M:%S UTC')  $(uname -sr)  $(nproc) CPUs" \
        "($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo))"
[ "$ONLY" = containerd ] || echo "   $("$COCOOND" --version 2>&1 | head -n 1); accel: $([ -w /dev/kvm ] && echo auto || echo tcg)"
[ "$ONLY" = cocoond ] || echo "   $("$CONTAINERD" --version 2>&1 | head -n 1); $(runc --version | head -n 1)"
echo "   network: bridge $BRIDGE $SUBNET (bridge + host-local + loopback, ipMasq false), host <-> pod over the bridge"
echo

if [ "$ONLY" != containerd ]; then
        d=$WORK/cc
        start_cocoond "$d" bridge
        traffic cocoond
        starts cocoond run_s
        out=$("$PY" "$CLIENT" logtimes "$LOG" $LAST_IDS 2>&1) || fail "cocoond: log timings" "$out"
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
