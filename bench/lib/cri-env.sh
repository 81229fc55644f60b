# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# The CRI benchmarks' shared setup (bench/podstart, bench/exec, bench/net;
# bench/pull for the work dir and the cleanup): cocoond and Debian's
# containerd 1.6 + runc, one after the other, each on private temporary
# directories (bench/lib/daemons.sh), the same busybox image imported into
# both (bench/lib/criclient.py builds it), a CNI bridge per daemon, and an
# EXIT trap that leaves nothing behind: daemons, pods' processes, mounts,
# netns, state dirs, bridges, and /run/containerd if the run created it.
# Source it from bash (set -eu is fine) after defining die(); it sources
# daemons.sh.
#
# crienv_paths sets BUILDDIR, COCOOND, COCOONCTL, AGENT, CONTAINERD (the
# environment's, else PATH's), CTR, PY (Debian's python3, with grpcio and
# grpc_tools) and IMAGE (the busybox image criclient.py builds); the caller
# sets ONLY ("", cocoond or containerd) and may set KERNEL and INITRD. The
# caller gets WORK (the work dir), STUBS (generated CRI stubs), CRICLIENT
# (bench/lib/criclient.py), DAEMON_PID, SOCK and LOG (the running daemon's
# pid, CRI socket and log).
#
#   crienv_paths BUILDDIR       the variables above
#   crienv_check_tools          root, the binaries of the side(s) ONLY picks,
#                               Debian's CNI plugins, python grpc
#   crienv_guest_images         KERNEL/INITRD default to the test guest
#   crienv_init PREFIX [HOOK]   EXIT/INT/TERM traps (HOOK, a command, runs
#                               first in the cleanup), WORK=/tmp/PREFIX.XXXXXX
#   crienv_stubs                the CRI stubs in STUBS=WORK/stubs
#   crienv_images               busybox + pause stand-in under WORK/img;
#                               prints the image id
#   crienv_cni_bridge DIR NAME BRIDGE SUBNET IPAMDIR [loopback]
#                               writes DIR/10-NAME.conflist: bridge +
#                               host-local (+ loopback); BRIDGE deleted at exit
#   crienv_start_cocoond DIR STATE_TEMPLATE LOGLEVEL
#   crienv_start_containerd DIR imports busybox + pause with ctr
#   crienv_stop_daemon DIR      stops DAEMON_PID, unmounts what is below DIR
#   crienv_fail WHAT OUTPUT     prints OUTPUT and LOG's tail, dies

CRIENV_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/daemons.sh
. "$CRIENV_LIB/daemons.sh"
CRICLIENT=$CRIENV_LIB/criclient.py

WORK=
STUBS=
STATES=
BRIDGES=
DAEMON_PID=
SOCK=
LOG=
CRIENV_HOOK=
HOST_CTR_BEFORE=

crienv_paths() { # BUILDDIR
        BUILDDIR=$(cd "$1" && pwd) || die "no build directory '$1'"
        COCOOND=$BUILDDIR/cocoond
        COCOONCTL=$BUILDDIR/cocoonctl
        AGENT=$BUILDDIR/agent/cocoon-agent
        CONTAINERD=${CONTAINERD:-$(command -v containerd || true)}
        CTR=$(command -v ctr || true)
        PY=/usr/bin/python3
        IMAGE=example.com/bench/busybox:1.0
}

crienv_check_tools() {
        local f p
        [ "$(id -u)" = 0 ] || die "must run as root"
        case $ONLY in "" | cocoond | boot | pooled | containerd) ;;
        *) die "ONLY must be cocoond, boot, pooled or containerd" ;; esac
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
        "$PY" -c 'import grpc, grpc_tools' 2>/dev/null ||
                die "$PY lacks grpc: apt-get install python3-grpcio python3-grpc-tools"
}

crienv_guest_images() {
        local imgs
        [ "$ONLY" != containerd ] || return 0
        [ -z "${KERNEL:-}" ] || [ -z "${INITRD:-}" ] || return 0
        echo "== guest images (tests/integration/test_agent_guest.py guest_images) ..." >&2
        imgs=$(cd "$CRIENV_LIB/../../tests/integration" && COCOON_BUILDDIR=$BUILDDIR "$PY" -c \
                'import test_agent_guest as g; print(*g.guest_images())') || die "cannot build the guest images"
        KERNEL=${KERNEL:-${imgs% *}}
        INITRD=${INITRD:-${imgs#* }}
}

crienv_cleanup() {
        local rc=$? after b p n s pat
        trap - EXIT INT TERM
        [ -z "$CRIENV_HOOK" ] || $CRIENV_HOOK
        daemons_stop_pid "$DAEMON_PID"
        if [ -n "$WORK" ] && [ -d "$WORK" ]; then
                # Pods a failed run left: their processes name the work dir
                # or a state dir.
                pat=(-e "$WORK")
                for s in $STATES; do pat+=(-e "$s"); done
                for p in $(grep -l -s -F "${pat[@]}" /proc/[0-9]*/cmdline | cut -d/ -f3); do
                        [ "$p" = $$ ] || kill -KILL "$p" 2>/dev/null || true
                done
                daemons_umount_below "$WORK"
                # KEEP_LOG=FILE: cocoond's log of the run, for reading the phases
                [ -z "${KEEP_LOG:-}" ] || [ -z "${LOG:-}" ] || cp "$LOG" "$KEEP_LOG" 2>/dev/null || true
                for n in "$WORK"/c*/netns/* "$WORK"/c*/state/netns/*; do
                        [ -e "$n" ] && { umount "$n" 2>/dev/null || true; }
                done
                rm -rf "$WORK"
        fi
        for s in $STATES; do
                daemons_umount_below "$s"
                rm -rf "$s"
        done
        for b in $BRIDGES; do ip link del "$b" 2>/dev/null || true; done
        if [ -z "$HOST_CTR_BEFORE" ] && [ -d /run/containerd ]; then
                find /run/containerd -depth -type d -empty -delete 2>/dev/null || true
        fi
        after=$(daemons_host_ctr_dirs)
        [ "$after" = "$HOST_CTR_BEFORE" ] ||
                echo "run.sh: WARNING: host containerd directories changed: '$HOST_CTR_BEFORE' -> '$after'" >&2
        exit "$rc"
}

crienv_init() { # PREFIX [HOOK]
        CRIENV_HOOK=${2:-}
        HOST_CTR_BEFORE=$(daemons_host_ctr_dirs)
        trap crienv_cleanup EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        # Short: unix socket paths (pod dirs are named by 64-char ids) must
        # fit in 107 bytes.
        WORK=$(mktemp -d "/tmp/$1.XXXXXX")
        chmod 0711 "$WORK"
}

crienv_stubs() {
        STUBS=$WORK/stubs
        "$PY" "$CRICLIENT" stubs "$STUBS"
}

crienv_images() {
        "$PY" "$CRICLIENT" images "$WORK/img"
}

crienv_cni_bridge() { # DIR NAME BRIDGE SUBNET IPAMDIR [loopback]
        local lo=
        [ "${6:-}" != loopback ] || lo=$',\n    { "type": "loopback" }'
        mkdir -p "$1"
        cat >"$1/10-$2.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$2",
  "plugins": [
    { "type": "bridge", "bridge": "$3", "isGateway": true, "ipMasq": false,
      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "$4" }]], "dataDir": "$5" } }$lo
  ]
}
EOF
        case " $BRIDGES " in *" $3 "*) ;; *) BRIDGES="$BRIDGES $3" ;; esac
}

crienv_start_cocoond() { # DIR STATE_TEMPLATE LOGLEVEL
        local d=$1 s
        # CRIENV_VM_EXTRA: more [vm] settings (e.g. "pool_size = 1")
        daemons_cocoond_config "$d" "$d/cocoon.sock" "$(printf '[vm]\nkernel = "%s"\ninitrd = "%s"\n%s\n[runtime]\nhost_agent = "%s"\n' \
                "$KERNEL" "$INITRD" "${CRIENV_VM_EXTRA:-}" "$AGENT")"
        # Short state dir (/run/XX.XXXXXX): sandbox dirs, named by 64-char
        # pod ids, hold unix sockets (virtiofsd's, the agent's) whose paths
        # must stay under 108 bytes.
        s=$(mktemp -d "$2")
        STATES="$STATES $s"
        sed -i "s|^state = .*|state = \"$s\"|" "$d/cocoon.toml"
        mkdir -p "$d/cni-conf"
        "$COCOOND" --config "$d/cocoon.toml" --log-level "$3" >"$d/log" 2>&1 &
        DAEMON_PID=$!
        SOCK=$d/cocoon.sock
        LOG=$d/log
        daemons_wait_ready cocoond "$DAEMON_PID" "$SOCK" "$LOG" "$COCOOND" \
                "$PY" "$CRICLIENT" version --stubs "$STUBS" "unix://$SOCK"
        "$COCOONCTL" -a "unix://$SOCK" image import --name "${IMAGE%:*}" "$WORK/img/busybox" >/dev/null ||
                die "cocoonctl image import failed"
}

crienv_start_containerd() { # DIR
        local d=$1 t
        # runc's state under DIR; the shim sockets stay in /run/containerd/s
        # (hardcoded in 1.6; removed at exit if new).
        daemons_containerd_config "$d" "$(printf '  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n    runtime_type = "io.containerd.runc.v2"\n  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n    Root = "%s"\n' "$d/runc")"
        # Without CAP_SYS_RESOURCE (a container host) runc cannot lower the
        # pause process's oom_score_adj to -998: keep it >= containerd's own.
        sed -i '/^  sandbox_image = /a\  restrict_oom_score_adj = true' "$d/config.toml"
        ln -s /usr/lib/cni/* "$d/cni-bin/"
        "$CONTAINERD" --config "$d/config.toml" >"$d/log" 2>&1 &
        DAEMON_PID=$!
        SOCK=$d/containerd.sock
        LOG=$d/log
        daemons_wait_ready containerd "$DAEMON_PID" "$SOCK" "$LOG" "$CONTAINERD" \
                "$PY" "$CRICLIENT" version --stubs "$STUBS" "unix://$SOCK"
        for t in pause busybox; do
                "$CTR" --address "$SOCK" -n k8s.io images import "$WORK/img/$t.tar" >/dev/null ||
                        die "ctr images import $t failed"
        done
}

crienv_stop_daemon() { # DIR
        daemons_stop_pid "$DAEMON_PID"
        DAEMON_PID=
        daemons_umount_below "$1"
}

crienv_fail() { # WHAT OUTPUT
        echo "$2" >&2
        tail -n 30 "$LOG" >&2
        die "$1 failed (above)"
}
