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
#   MEM_PODS [10]   idle pods for the memory figure (0: none); SETTLE [10] seconds
#   KERNEL, INITRD  guest images [the test guest built under BUILDDIR, as
#                   tests/integration/test_agent_guest.py builds it]
#   NET [bridge]    bridge: both daemons get a CNI bridge + host-local
#                   network (Debian's plugins); none: cocoond gets no CNI
#                   config (loopback only; containerd keeps the bridge: its
#                   CRI plugin cannot run pods without one)
#   ONLY [""]       cocoond, boot, pooled or containerd: run one only.
#                   cocoond: its default config, [vm] template = true (pods
#                   start as copies of a VM booted once; the warm-up pod
#                   boots and has the template built, the timed rounds wait
#                   for it); boot: [vm] template = false, a VM boot per pod
#   BOOT [1]        0: skip "boot"
#   POOL [1]        0: skip "pooled", cocoond with [vm] pool_size = 1, whose
#                   pods start once a pooled VM waits (no idle-memory part:
#                   its pods are cocoond's)
#   LOGLEVEL [info] cocoond's log level; debug also prints its boot phases
#   CONTAINERD [containerd from PATH]
set -eu -o pipefail

die() { echo "run.sh: $*" >&2; exit 1; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/../lib/cri-env.sh
. "$HERE/../lib/cri-env.sh"

crienv_paths "${1:-.}"
ROUNDS=${ROUNDS:-10}
WARMUP=${WARMUP:-1}
MEM_PODS=${MEM_PODS:-10}
SETTLE=${SETTLE:-10}
NET=${NET:-bridge}
ONLY=${ONLY:-}
CLIENT=$HERE/podclient.py

crienv_check_tools
case $NET in bridge | none) ;; *) die "NET must be bridge or none" ;; esac
[ "$ROUNDS" -ge 1 ] 2>/dev/null || die "ROUNDS must be a positive integer"
crienv_guest_images
crienv_init psb
crienv_stubs
IMAGE_ID=$(crienv_images)

get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

start_cocoond() { # DIR
        [ "$NET" = none ] || crienv_cni_bridge "$1/cni-conf" podbench-pbcc0 pbcc0 10.231.0.0/24 "$1/cni-conf/ipam"
        crienv_start_cocoond "$1" /run/pss.XXXXXX "${LOGLEVEL:-info}"
}

# cocoond with a VM pool of one: each pod starts once a VM waits
start_pooled() { # DIR
        [ "$NET" = none ] || crienv_cni_bridge "$1/cni-conf" podbench-pbcc0 pbcc0 10.231.0.0/24 "$1/cni-conf/ipam"
        CRIENV_VM_EXTRA="pool_size = 1
template = false" crienv_start_cocoond "$1" /run/pss.XXXXXX "${LOGLEVEL:-info}"
}

# cocoond without templates: each pod boots its VM
start_boot() { # DIR
        [ "$NET" = none ] || crienv_cni_bridge "$1/cni-conf" podbench-pbcc0 pbcc0 10.231.0.0/24 "$1/cni-conf/ipam"
        CRIENV_VM_EXTRA="template = false" crienv_start_cocoond "$1" /run/pss.XXXXXX "${LOGLEVEL:-info}"
}

start_containerd() { # DIR
        crienv_cni_bridge "$1/cni-conf" podbench-pbct0 pbct0 10.232.0.0/24 "$1/cni-conf/ipam"
        crienv_start_containerd "$1"
}

declare -A R

bench_one() { # NAME
        local name=$1 d=$WORK/c-$1 out line kind
        mkdir -p "$d"
        "start_$name" "$d"
        echo "== $name: $WARMUP warm-up + $ROUNDS timed pod starts" >&2
        local extra=()
        [ "$name" != pooled ] || extra=(--wait-pool "$d/root")
        [ "$name" != cocoond ] || extra=(--wait-template)
        out=$("$PY" "$CLIENT" podstart --stubs "$STUBS" --rounds "$ROUNDS" --warmup "$WARMUP" --image "$IMAGE" \
                --logdir "$d/logs" "${extra[@]}" "unix://$SOCK" 2>&1) || crienv_fail "$name: pod start" "$out"
        grep -E '^(WARMUP|ROUND)' <<<"$out" | sed "s/^/   $name /" >&2
        # LOGLEVEL=debug: cocoond's own phase times for each boot
        [ "$name" = containerd ] || grep -Eo 'pod=.* (booted|started from the template) in .*' "$LOG" | sed "s/^/   $name /" >&2 || true
        R[$name/accel]=$(sed -n 's/^ACCEL //p' <<<"$out")
        line=$(grep '^RESULT' <<<"$out")
        for k in run_s create_s start_s total_s min_s max_s; do R[$name/$k]=$(get "$k" "$line"); done
        if [ "$name" = pooled ] || [ "$MEM_PODS" = 0 ]; then # pooled: idle pods cost what cocoond's do
                crienv_stop_daemon "$d"
                return
        fi
        kind=cocoon
        [ "$name" = cocoond ] || [ "$name" = boot ] || kind=containerd
        echo "== $name: $MEM_PODS idle pods, PSS after ${SETTLE}s" >&2
        out=$("$PY" "$CLIENT" mem --stubs "$STUBS" --pods "$MEM_PODS" --settle "$SETTLE" --kind "$kind" \
                --image "$IMAGE" --logdir "$d/logs" "unix://$SOCK" 2>&1) || crienv_fail "$name: idle pods" "$out"
        line=$(grep '^RESULT' <<<"$out")
        grep -E '^POD' <<<"$out" | head -n 3 | sed "s/^/   $name /" >&2
        for k in mean_pss_kib min_pss_kib max_pss_kib split_kib; do R[$name/$k]=$(get "$k" "$line"); done
        crienv_stop_daemon "$d"
}

echo "== pod start benchmark: cocoond (VM per pod) vs containerd 1.6 + runc, CRI"
daemons_host_line
[ "$ONLY" = containerd ] || echo "   $("$COCOOND" --version 2>&1 | head -n 1); kernel $KERNEL; initrd $INITRD"
[ "$ONLY" = cocoond ] || echo "   $("$CONTAINERD" --version 2>&1 | head -n 1); $(runc --version | head -n 1)"
echo "   image $IMAGE (busybox-static, one layer, id $IMAGE_ID) present before the runs;" \
        "network: $NET; container: sleep 3600"
echo "   load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews TCG boots)"
echo

for n in cocoond boot pooled containerd; do
        [ -z "$ONLY" ] || [ "$ONLY" = "$n" ] || continue
        [ "$n" != pooled ] || [ "${POOL:-1}" = 1 ] || continue
        [ "$n" != boot ] || [ "${BOOT:-1}" = 1 ] || continue
        bench_one "$n"
done
echo "   load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
printf '%-11s | %9s %9s %9s %9s | %7s %7s | %s\n' daemon "run s" "create s" "start s" "total s" "min s" "max s" \
        "PSS/idle pod MiB (mean, min-max)"
printf '%s\n' "---------------------------------------------------------------------------------------------------"
for n in cocoond boot pooled containerd; do
        [ -n "${R[$n/total_s]:-}" ] || continue
        mem="(as boot)"
        [ -z "${R[$n/mean_pss_kib]:-}" ] ||
                mem="$(mib "${R[$n/mean_pss_kib]}") ($(mib "${R[$n/min_pss_kib]}")-$(mib "${R[$n/max_pss_kib]}"))"
        printf '%-11s | %9s %9s %9s %9s | %7s %7s | %s\n' "$n" "${R[$n/run_s]}" "${R[$n/create_s]}" \
                "${R[$n/start_s]}" "${R[$n/total_s]}" "${R[$n/min_s]}" "${R[$n/max_s]}" "$mem"
done
echo
echo "   medians of $ROUNDS; PSS: cocoond = QEMU + virtiofsd per pod, containerd = shim + pause + container"
for n in cocoond boot containerd; do
        [ -n "${R[$n/split_kib]:-}" ] || continue
        echo "   $n PSS per process, mean KiB: ${R[$n/split_kib]}${R[$n/accel]:+; VM accel: ${R[$n/accel]}}"
done
if [ -n "${R[cocoond/total_s]:-}" ]; then
        echo
        echo "== goals (issue 5)"
        if [ -n "${R[containerd/total_s]:-}" ]; then
                r=$(ratio "${R[cocoond/total_s]}" "${R[containerd/total_s]}")
                ok=$(awk -v r="$r" 'BEGIN { print (r <= 4) ? "met" : "NOT met" }')
                printf '   pod start (default config: from the template): %ss / %ss = %sx containerd (goal <= 4x under TCG): %s\n' \
                        "${R[cocoond/total_s]}" "${R[containerd/total_s]}" "$r" "$ok"
                if [ -n "${R[boot/total_s]:-}" ]; then
                        r=$(ratio "${R[boot/total_s]}" "${R[containerd/total_s]}")
                        ok=$(awk -v r="$r" 'BEGIN { print (r <= 4) ? "met" : "NOT met" }')
                        printf '   pod start booting a VM (template = false): %ss / %ss = %sx containerd: %s\n' \
                                "${R[boot/total_s]}" "${R[containerd/total_s]}" "$r" "$ok"
                fi
                if [ -n "${R[pooled/total_s]:-}" ]; then
                        r=$(ratio "${R[pooled/total_s]}" "${R[containerd/total_s]}")
                        ok=$(awk -v r="$r" 'BEGIN { print (r <= 4) ? "met" : "NOT met" }')
                        printf '   pod start from the VM pool (pool_size = 1): %ss / %ss = %sx containerd: %s\n' \
                                "${R[pooled/total_s]}" "${R[containerd/total_s]}" "$r" "$ok"
                fi
        fi
        if [ -n "${R[cocoond/mean_pss_kib]:-}" ]; then
                p=$(mib "${R[cocoond/mean_pss_kib]}")
                ok=$(awk -v p="$p" 'BEGIN { print (p <= 120) ? "met" : "NOT met" }')
                printf '   PSS per idle pod: %s MiB = %s of the 120 MiB goal: %s\n' "$p" "$(ratio "$p" 120)" "$ok"
        fi
        if [ -n "${R[boot/mean_pss_kib]:-}" ]; then
                p=$(mib "${R[boot/mean_pss_kib]}")
                ok=$(awk -v p="$p" 'BEGIN { print (p <= 120) ? "met" : "NOT met" }')
                printf '   PSS per idle pod that booted its VM: %s MiB: %s\n' "$p" "$ok"
        fi
fi
