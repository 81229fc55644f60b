#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Pod start: RunPodSandbox + CreateContainer + StartContainer with the image
# present, cocoond (one VM per pod) against Debian's containerd 1.6 + runc in
# the same run, median of ROUNDS; then the host memory of idle pods (PSS of
# each pod's QEMU + virtiofsd, MEM_PODS pods at once). Run as root:
#
#   bench/podstart/run.sh [BUILDDIR]
#
# BUILDDIR holds cocoond, cocoonctl and agent/cocoon-agent (default: .).
# See bench/podstart/README.md. Environment knobs (defaults in brackets):
#   ROUNDS [10]     timed pod starts per daemon (after WARMUP [1] untimed)
#   MEM_PODS [10]   idle pods for the memory figure; SETTLE [10] seconds
#   KERNEL, INITRD  guest images [the test guest built under BUILDDIR, as
#                   tests/integration/test_agent_guest.py builds it]
#   NET [bridge]    bridge: both daemons get a CNI bridge + host-local
#                   network (Debian's plugins); none: cocoond gets no CNI
#                   config (loopback only; containerd keeps the bridge: its
#                   CRI plugin cannot run pods without one)
#   ONLY [""]       cocoond or containerd: run one side only
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
ROUNDS=${ROUNDS:-10}
WARMUP=${WARMUP:-1}
MEM_PODS=${MEM_PODS:-10}
SETTLE=${SETTLE:-10}
NET=${NET:-bridge}
ONLY=${ONLY:-}
PY=/usr/bin/python3
CLIENT=$HERE/podclient.py

[ "$(id -u)" = 0 ] || die "must run as root"
case $ONLY in "" | cocoond | containerd) ;; *) die "ONLY must be cocoond or containerd" ;; esac
case $NET in bridge | none) ;; *) die "NET must be bridge or none" ;; esac
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
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/loopback ] ||
        die "CNI plugins not found in /usr/lib/cni: apt-get install containernetworking-plugins"
"$PY" -c 'import grpc, grpc_tools' 2>/dev/null || die "$PY lacks grpc: apt-get install python3-grpcio python3-grpc-tools"
[ "$ROUNDS" -ge 1 ] 2>/dev/null || die "ROUNDS must be a positive integer"

if [ "$ONLY" != containerd ] && { [ -z "${KERNEL:-}" ] || [ -z "${INITRD:-}" ]; }; then
        echo "== guest images (tests/integration/test_agent_guest.py guest_images) ..." >&2
        imgs=$(cd "$SRCDIR/tests/integration" && COCOON_BUILDDIR=$BUILDDIR "$PY" -c \
                'import test_agent_guest as g; print(*g.guest_images())') || die "cannot build the guest images"
        KERNEL=${KERNEL:-${imgs% *}}
        INITRD=${INITRD:-${imgs#* }}
fi

WORK=
STATE=
DAEMON_PID=
BRIDGES=
HOST_CTR_BEFORE=$(daemons_host_ctr_dirs)

cleanup() {
        local rc=$? after b
        trap - EXIT INT TERM
        daemons_stop_pid "$DAEMON_PID"
        if [ -n "$WORK" ] && [ -d "$WORK" ]; then
                # Pods a failed run left: their processes name the work dir.
                for p in $(grep -l -s -F -e "$WORK" ${STATE:+-e "$STATE"} /proc/[0-9]*/cmdline | cut -d/ -f3); do
                        [ "$p" != $$ ] && kill -KILL "$p" 2>/dev/null || true
                done
                daemons_umount_below "$WORK"
                for n in "$WORK"/c*/netns/* "$WORK"/c*/state/netns/*; do
                        [ -e "$n" ] && { umount "$n" 2>/dev/null || true; }
                done
                rm -rf "$WORK"
        fi
        if [ -n "$STATE" ] && [ -d "$STATE" ]; then
                daemons_umount_below "$STATE"
                rm -rf "$STATE"
        fi
        for b in $BRIDGES; do ip link del "$b" 2>/dev/null || true; done
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
WORK=$(mktemp -d /tmp/psb.XXXXXX)
chmod 0711 "$WORK"
STUBS=$WORK/stubs
"$PY" "$CLIENT" stubs "$STUBS"
IMAGE_ID=$("$PY" "$CLIENT" images "$WORK/img")
IMAGE=example.com/bench/busybox:1.0

get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

cni_conf() { # DIR BRIDGE SUBNET
        mkdir -p "$1"
        cat >"$1/10-podbench.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "podbench-$2",
  "plugins": [
    { "type": "bridge", "bridge": "$2", "isGateway": true, "ipMasq": false,
      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "$3" }]], "dataDir": "$1/ipam" } }
  ]
}
EOF
        BRIDGES="$BRIDGES $2"
}

start_cocoond() { # DIR
        local d=$1
        daemons_cocoond_config "$d" "$d/cocoon.sock" "$(printf '[vm]\nkernel = "%s"\ninitrd = "%s"\n[runtime]\nhost_agent = "%s"\n' \
                "$KERNEL" "$INITRD" "$AGENT")"
        # Short state dir: sandbox dirs (named by 64-char ids) hold unix
        # sockets, whose paths must stay under 108 bytes.
        STATE=$(mktemp -d /run/pss.XXXXXX)
        sed -i "s|^state = .*|state = \"$STATE\"|" "$d/cocoon.toml"
        mkdir -p "$d/cni-conf"
        [ "$NET" = none ] || cni_conf "$d/cni-conf" pbcc0 10.231.0.0/24
        "$COCOOND" --config "$d/cocoon.toml" --log-level info >"$d/log" 2>&1 &
        DAEMON_PID=$!
        daemons_wait_ready cocoond "$DAEMON_PID" "$d/cocoon.sock" "$d/log" "$COCOOND" \
                "$PY" "$CLIENT" version --stubs "$STUBS" "unix://$d/cocoon.sock"
        "$COCOONCTL" -a "unix://$d/cocoon.sock" image import --name "${IMAGE%:*}" "$WORK/img/busybox" >/dev/null ||
                die "cocoonctl image import failed"
        SOCK=$d/cocoon.sock
}

start_containerd() { # DIR
        local d=$1
        # runc's state under the work dir; the shim sockets stay in
        # /run/containerd/s (hardcoded in 1.6; removed at exit if new).
        daemons_containerd_config "$d" "$(printf '  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n    runtime_type = "io.containerd.runc.v2"\n  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n    Root = "%s"\n' "$d/runc")"
        # Without CAP_SYS_RESOURCE (a container host) runc cannot lower the
        # pause process's oom_score_adj to -998: keep it >= containerd's own.
        sed -i '/^  sandbox_image = /a\  restrict_oom_score_adj = true' "$d/config.toml"
        ln -s /usr/lib/cni/* "$d/cni-bin/"
        cni_conf "$d/cni-conf" pbct0 10.232.0.0/24
        "$CONTAINERD" --config "$d/config.toml" >"$d/log" 2>&1 &
        DAEMON_PID=$!
        daemons_wait_ready containerd "$DAEMON_PID" "$d/containerd.sock" "$d/log" "$CONTAINERD" \
                "$PY" "$CLIENT" version --stubs "$STUBS" "unix://$d/containerd.sock"
        for t in pause busybox; do
                "$CTR" --address "$d/containerd.sock" -n k8s.io images import "$WORK/img/$t.tar" >/dev/null ||
                        die "ctr images import $t failed"
        done
        SOCK=$d/containerd.sock
}

declare -A R

bench_one() { # NAME
        local name=$1 d=$WORK/c-$1 out line kind
        mkdir -p "$d"
        "start_$name" "$d"
        echo "== $name: $WARMUP warm-up + $ROUNDS timed pod starts" >&2
        out=$("$PY" "$CLIENT" podstart --stubs "$STUBS" --rounds "$ROUNDS" --warmup "$WARMUP" --image "$IMAGE" \
                --logdir "$d/logs" "unix://$SOCK" 2>&1) || {
                echo "$out" >&2
                tail -n 30 "$d/log" >&2
                die "$name: pod start failed (above)"
        }
        grep -E '^(WARMUP|ROUND)' <<<"$out" | sed "s/^/   $name /" >&2
        R[$name/accel]=$(sed -n 's/^ACCEL //p' <<<"$out")
        line=$(grep '^RESULT' <<<"$out")
        for k in run_s create_s start_s total_s min_s max_s; do R[$name/$k]=$(get "$k" "$line"); done
        kind=cocoon
        [ "$name" = cocoond ] || kind=containerd
        echo "== $name: $MEM_PODS idle pods, PSS after ${SETTLE}s" >&2
        out=$("$PY" "$CLIENT" mem --stubs "$STUBS" --pods "$MEM_PODS" --settle "$SETTLE" --kind "$kind" \
                --image "$IMAGE" --logdir "$d/logs" "unix://$SOCK" 2>&1) || {
                echo "$out" >&2
                tail -n 30 "$d/log" >&2
                die "$name: idle pods failed (above)"
        }
        line=$(grep '^RESULT' <<<"$out")
        grep -E '^POD' <<<"$out" | head -n 3 | sed "s/^/   $name /" >&2
        for k in mean_pss_kib min_pss_kib max_pss_kib split_kib; do R[$name/$k]=$(get "$k" "$line"); done
        daemons_stop_pid "$DAEMON_PID"
        DAEMON_PID=
        daemons_umount_below "$d"
}

echo "== pod start benchmark: cocoond (VM per pod) vs containerd 1.6 + runc, CRI"
echo "   $(date -u '+%Y-%m-%d %H:%M:%S UTC')  $(uname -sr)  $(nproc) CPUs" \
        "($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo))"
[ "$ONLY" = containerd ] || echo "   $("$COCOOND" --version 2>&1 | head -n 1); kernel $KERNEL; initrd $INITRD"
[ "$ONLY" = cocoond ] || echo "   $("$CONTAINERD" --version 2>&1 | head -n 1); $(runc --version | head -n 1)"
echo "   image $IMAGE (busybox-static, one layer, id $IMAGE_ID) present before the runs;" \
        "network: $NET; container: sleep 3600"
echo "   load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews TCG boots)"
echo

for n in cocoond containerd; do
        [ -z "$ONLY" ] || [ "$ONLY" = "$n" ] || continue
        bench_one "$n"
done
echo "   load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
printf '%-11s | %9s %9s %9s %9s | %7s %7s | %s\n' daemon "run s" "create s" "start s" "total s" "min s" "max s" \
        "PSS/idle pod MiB (mean, min-max)"
printf '%s\n' "---------------------------------------------------------------------------------------------------"
for n in cocoond containerd; do
        [ -n "${R[$n/total_s]:-}" ] || continue
        printf '%-11s | %9s %9s %9s %9s | %7s %7s | %s (%s-%s)\n' "$n" "${R[$n/run_s]}" "${R[$n/create_s]}" \
                "${R[$n/start_s]}" "${R[$n/total_s]}" "${R[$n/min_s]}" "${R[$n/max_s]}" \
                "$(mib "${R[$n/mean_pss_kib]}")" "$(mib "${R[$n/min_pss_kib]}")" "$(mib "${R[$n/max_pss_kib]}")"
done
echo
echo "   medians of $ROUNDS; PSS: cocoond = QEMU + virtiofsd per pod, containerd = shim + pause + container"
for n in cocoond containerd; do
        [ -n "${R[$n/split_kib]:-}" ] || continue
        echo "   $n PSS per process, mean KiB: ${R[$n/split_kib]}${R[$n/accel]:+; VM accel: ${R[$n/accel]}}"
done
if [ -n "${R[cocoond/total_s]:-}" ]; then
        echo
        echo "== goals (issue 5)"
        if [ -n "${R[containerd/total_s]:-}" ]; then
                r=$(ratio "${R[cocoond/total_s]}" "${R[containerd/total_s]}")
                ok=$(awk -v r="$r" 'BEGIN { print (r <= 4) ? "met" : "NOT met" }')
                printf '   pod start: %ss / %ss = %sx containerd (goal <= 4x under TCG): %s\n' \
                        "${R[cocoond/total_s]}" "${R[containerd/total_s]}" "$r" "$ok"
        fi
        p=$(mib "${R[cocoond/mean_pss_kib]}")
        ok=$(awk -v p="$p" 'BEGIN { print (p <= 120) ? "met" : "NOT met" }')
        printf '   PSS per idle pod: %s MiB = %s of the 120 MiB goal: %s\n' "$p" "$(ratio "$p" 120)" "$ok"
fi
