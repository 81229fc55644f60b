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
SRCDIR=$(cd "$HERE/../.." && pwd)
# shellcheck source=SCRIPTDIR/../lib/daemons.sh
. "$SRCDIR/bench/lib/daemons.sh"

BUILDDIR=$(cd "${1:-.}" && pwd) || die "no build directory '${1:-.}'"
COCOOND=$BUILDDIR/cocoond
COCOONCTL=$BUILDDIR/cocoonctl
AGENT=$BUILDDIR/agent/cocoon-agent
CONTAINERD=${CONTAINERD:-$(command -v containerd || true)}
CTR=$(command -v ctr || true)
ROUNDS=${ROUNDS:-20}
SIZE=${SIZE:-100000000}
REPEAT=${REPEAT:-2}
NET=${NET:-bridge}
ONLY=${ONLY:-}
PY=/usr/bin/python3
CLIENT=$SRCDIR/bench/podstart/podclient.py
EXECCLIENT=$HERE/execclient.py

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
                for p in $(grep -l -s -F "$WORK" /proc/[0-9]*/cmdline | cut -d/ -f3); do
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
WORK=$(mktemp -d /tmp/exb.XXXXXX)
chmod 0711 "$WORK"
STUBS=$WORK/stubs
"$PY" "$CLIENT" stubs "$STUBS"
IMAGE_ID=$("$PY" "$CLIENT" images "$WORK/img")
IMAGE=example.com/bench/busybox:1.0

get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

cni_conf() { # DIR BRIDGE SUBNET
        mkdir -p "$1"
        cat >"$1/10-execbench.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "execbench-$2",
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
        # Short state dir: sandbox dirs hold unix sockets.
        # (sandbox dir + virtiofsd.sock must fit in 107 bytes: /run/xb.XXXX).
        STATE=$(mktemp -d /run/xb.XXXX)
        sed -i "s|^state = .*|state = \"$STATE\"|" "$d/cocoon.toml"
        mkdir -p "$d/cni-conf"
        [ "$NET" = none ] || cni_conf "$d/cni-conf" exbcc0 10.233.0.0/24
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
        cni_conf "$d/cni-conf" exbct0 10.234.0.0/24
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
        local name=$1 d=$WORK/c-$1 out line
        mkdir -p "$d"
        "start_$name" "$d"
        echo "== $name: $ROUNDS x ExecSync true, $ROUNDS x Exec true (SPDY), $REPEAT x $SIZE bytes of stdout" >&2
        out=$("$PY" "$EXECCLIENT" --stubs "$STUBS" --rounds "$ROUNDS" --size "$SIZE" --repeat "$REPEAT" \
                --image "$IMAGE" --logdir "$d/logs" "unix://$SOCK" 2>&1) || {
                echo "$out" >&2
                tail -n 30 "$d/log" >&2
                die "$name: exec benchmark failed (above)"
        }
        grep -E '^THROUGHPUT' <<<"$out" | sed "s/^/   $name /" >&2
        line=$(grep '^RESULT' <<<"$out")
        for k in sync_ms sync_min_ms sync_max_ms stream_ms stream_min_ms stream_max_ms mbs; do
                R[$name/$k]=$(get "$k" "$line")
        done
        daemons_stop_pid "$DAEMON_PID"
        DAEMON_PID=
        daemons_umount_below "$d"
}

echo "== exec benchmark: cocoond (VM per pod, exec through the agent) vs containerd 1.6 + runc, CRI"
echo "   $(date -u '+%Y-%m-%d %H:%M:%S UTC')  $(uname -sr)  $(nproc) CPUs" \
        "($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo))"
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
