#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Cold image pull: cocoond's CRI PullImage against Debian's containerd 1.6
# (CRI plugin, overlayfs snapshotter), the same ~200 MB image from the same
# local registry in the same run; both pulls are complete (download, verify,
# unpack). Run as root:
#
#   bench/pull/run.sh [BUILDDIR]
#
# BUILDDIR holds cocoond (default: .). See bench/pull/README.md.
# Environment knobs (defaults in brackets):
#   ROUNDS [3]         fresh cocoond + fresh containerd per round
#   SEED ["cocoon-bench-pull-1"]  SCALE [1]   image contents / size factor
#   INTERVAL [0.02]    RSS polling period, seconds
#   PROFILE [""]       "perf" or "strace": one extra cocoond pull under
#                      perf record -g / strace -f -c, report printed at the end
#   CONTAINERD [containerd from PATH]
set -eu -o pipefail

die() { echo "run.sh: $*" >&2; exit 1; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/../lib/cri-env.sh
. "$HERE/../lib/cri-env.sh"

crienv_paths "${1:-.}"
ROUNDS=${ROUNDS:-3}
SEED=${SEED:-cocoon-bench-pull-1}
SCALE=${SCALE:-1}
INTERVAL=${INTERVAL:-0.02}
PROFILE=${PROFILE:-}
REGISTRY_BIN=/usr/bin/docker-registry
SKOPEO=/usr/bin/skopeo
CLIENT=$HERE/pullclient.py

[ "$(id -u)" = 0 ] || die "must run as root (containerd needs it)"
[ -x "$COCOOND" ] || die "$COCOOND not found: build it (make cocoond)"
if [ -z "$CONTAINERD" ] || [ ! -x "$CONTAINERD" ]; then
        die "containerd not found: apt-get install containerd (scripts/setup-debian.sh)"
fi
[ -x "$REGISTRY_BIN" ] || die "$REGISTRY_BIN not found: apt-get install docker-registry"
[ -x "$SKOPEO" ] || die "$SKOPEO not found: apt-get install skopeo"
"$PY" -c 'import grpc, grpc_tools' 2>/dev/null ||
        die "$PY lacks grpc: apt-get install python3-grpcio python3-grpc-tools"
case $PROFILE in
"") ;;
perf) command -v perf >/dev/null || die "perf not found (apt-get install linux-perf)" ;;
strace) command -v strace >/dev/null || die "strace not found" ;;
*) die "PROFILE must be perf or strace" ;;
esac
[ "$ROUNDS" -ge 1 ] 2>/dev/null || die "ROUNDS must be a positive integer"

REG_PID=
PROF_PID=

# Run first by crienv_cleanup (which then stops the daemon, unmounts and
# removes the work dir, and checks the host's containerd directories).
pull_cleanup() {
        [ -z "$PROF_PID" ] || { kill -INT "$PROF_PID" 2>/dev/null || true; wait "$PROF_PID" 2>/dev/null || true; }
        daemons_stop_pid "$REG_PID"
}
crienv_init pullb pull_cleanup
crienv_stubs

get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2];
        else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
maxof() { tr ' ' '\n' | sed '/^$/d' | sort -g | tail -n 1; }
minof() { tr ' ' '\n' | sed '/^$/d' | sort -g | head -n 1; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }

# ---- image and registry ---------------------------------------------------------
echo "== building the image (seed '$SEED', scale $SCALE) ..." >&2
IMG=$("$PY" "$HERE/mkimage.py" "$WORK/layout" --seed "$SEED" --scale "$SCALE")
IMG_CONFIG=$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["config"])' <<<"$IMG")
IMG_LAYERS=$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["layers"])' <<<"$IMG")
IMG_Z=$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["compressed_bytes"])' <<<"$IMG")
IMG_RAW=$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["uncompressed_bytes"])' <<<"$IMG")

REG_PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
REG_HOST=127.0.0.1:$REG_PORT
mkdir -p "$WORK/registry/storage"
cat >"$WORK/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry/storage
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $REG_HOST
  secret: cocoon-bench-secret
EOF
"$REGISTRY_BIN" serve "$WORK/registry/config.yml" >"$WORK/registry/log" 2>&1 &
REG_PID=$!
for ((i = 0; i < 100; i++)); do
        kill -0 "$REG_PID" 2>/dev/null || { cat "$WORK/registry/log" >&2; die "docker-registry exited"; }
        (exec 3<>"/dev/tcp/127.0.0.1/$REG_PORT") 2>/dev/null && break
        sleep 0.1
done
[ "$i" -lt 100 ] || die "docker-registry does not listen on $REG_HOST"
REF=$REG_HOST/bench/pull:v1
echo "== pushing to $REF with skopeo ..." >&2
HOME=$WORK "$SKOPEO" --insecure-policy copy --quiet --dest-tls-verify=false --dest-no-creds \
        "oci:$WORK/layout:v1" "docker://$REF" ||
        { tail -n 20 "$WORK/registry/log" >&2; die "skopeo push failed"; }
rm -rf "$WORK/layout"

# ---- one cold pull ----------------------------------------------------------------
declare -A R # R[daemon/round/key]

start_cocoond() { # DIR
        local d=$1
        daemons_cocoond_config "$d" "$d/cocoon.sock" \
                "$(printf '[image.registries."%s"]\nplain_http = true\n' "$REG_HOST")"
        "$COCOOND" --config "$d/cocoon.toml" --log-level debug >"$d/log" 2>&1 &
        DAEMON_PID=$!
        daemons_wait_ready cocoond "$DAEMON_PID" "$d/cocoon.sock" "$d/log" "$COCOOND" \
                "$PY" "$CRICLIENT" version --timeout 2 --stubs "$STUBS" "unix://$d/cocoon.sock"
        SOCK=$d/cocoon.sock
}

start_containerd() { # DIR
        local d=$1
        # containerd 1.6's (deprecated but supported) mirror table: the
        # registry host reached over plain HTTP.
        daemons_containerd_config "$d" "$(printf '  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."%s"]\n    endpoint = ["http://%s"]\n' \
                "$REG_HOST" "$REG_HOST")"
        "$CONTAINERD" --config "$d/config.toml" >"$d/log" 2>&1 &
        DAEMON_PID=$!
        daemons_wait_ready containerd "$DAEMON_PID" "$d/containerd.sock" "$d/log" "$CONTAINERD" \
                "$PY" "$CRICLIENT" version --timeout 2 --stubs "$STUBS" "unix://$d/containerd.sock"
        SOCK=$d/containerd.sock
}

pull_one() { # DAEMON ROUND
        local name=$1 round=$2 d=$WORK/r$2-$1 out line k unpacked ph
        mkdir -p "$d"
        sync # earlier runs' dirty pages are not this pull's to write back
        "start_$name" "$d"
        out=$("$PY" "$CLIENT" pull --stubs "$STUBS" --pid "$DAEMON_PID" --image "$REF" \
                --expect-id "$IMG_CONFIG" --interval "$INTERVAL" --timeline "$d/timeline" \
                "unix://$SOCK" 2>&1) || {
                echo "$out" >&2
                tail -n 30 "$d/log" >&2
                die "$name round $round: pull failed (above)"
        }
        line=$(grep '^RESULT' <<<"$out")
        for k in wall_s peak_rss_kib hwm_kib rss_before_kib cpu_s runq_s; do
                R[$name/$round/$k]=$(get "$k" "$line")
        done
        # It really pulled: the unpacked tree is on disk.
        if [ "$name" = cocoond ]; then
                unpacked=$(du -sb "$d/root/layers/sha256" | cut -f1)
                ph=$("$PY" "$CLIENT" phases --timeline "$d/timeline" "$d/log")
                for k in fetch_s commit_s fetch_oncpu_s fetch_runq_s commit_oncpu_s commit_runq_s; do
                        R[$name/$round/$k]=$(get "$k" "$ph")
                done
        else
                unpacked=$(du -sb "$d/root/io.containerd.snapshotter.v1.overlayfs/snapshots" | cut -f1)
        fi
        R[$name/$round/unpacked]=$unpacked
        awk -v u="$unpacked" -v r="$IMG_RAW" 'BEGIN { exit !(u >= 0.95 * r) }' ||
                die "$name round $round: only $(mb "$unpacked") unpacked on disk, the layers hold $(mb "$IMG_RAW")"
        crienv_stop_daemon "$d"
        rm -rf "$d"
}

COCOON_VERSION=$("$COCOOND" --version 2>&1 | head -n 1)
CTR_VERSION=$("$CONTAINERD" --version 2>&1 | head -n 1)
echo "== cold pull benchmark: cocoond vs containerd (CRI PullImage), $ROUNDS rounds"
daemons_host_line
echo "   $COCOON_VERSION"
echo "   $CTR_VERSION (overlayfs snapshotter, Go gzip: no unpigz on PATH: $(command -v unpigz || echo none))"
echo "   image $REF: $IMG_LAYERS gzip layers, $(mb "$IMG_Z") compressed, $(mb "$IMG_RAW") uncompressed" \
        "(id $IMG_CONFIG)"
echo "   registry: Debian docker-registry on $REG_HOST (plain HTTP), blobs warm in the page cache"
echo "   each round: a fresh daemon on an empty temporary root; RSS polled every ${INTERVAL}s;"
echo "   both daemons fetch 3 layers at a time (cocoon image.max_concurrent_downloads, containerd default)"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# Noise check: machine busy ticks minus this script's own and reaped children's
# (daemons, clients) and the registry's = what other processes took.
busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
BUSY0=$(busy_ticks)
SELF0=$(daemons_cpu_ticks $$)
REG0=$(daemons_cpu_ticks "$REG_PID")
T0=$(date +%s.%N)
echo

echo "== rounds"
printf '%-5s %-10s | %8s %10s %10s %6s %6s | %s\n' round daemon "time" "peak RSS" "VmHWM" "CPU s" "runq s" \
        "notes (cocoond phases: wall / on-CPU / waiting for a CPU)"
printf '%s\n' "--------------------------------------------------------------------------------------------------------------"
for ((r = 1; r <= ROUNDS; r++)); do
        # Alternate who goes first, so neither always pulls right after the other.
        if ((r % 2)); then order="cocoond containerd"; else order="containerd cocoond"; fi
        for n in $order; do
                pull_one "$n" "$r"
                note="unpacked $(mb "${R[$n/$r/unpacked]}")"
                if [ "$n" = cocoond ]; then
                        note+="; fetch ${R[$n/$r/fetch_s]}/${R[$n/$r/fetch_oncpu_s]}/${R[$n/$r/fetch_runq_s]}s"
                        note+=", unpack+commit ${R[$n/$r/commit_s]}/${R[$n/$r/commit_oncpu_s]}/${R[$n/$r/commit_runq_s]}s"
                fi
                printf '%-5s %-10s | %7ss %10s %10s %6s %6s | %s\n' "$r" "$n" "${R[$n/$r/wall_s]}" \
                        "$(mib "${R[$n/$r/peak_rss_kib]}")" "$(mib "${R[$n/$r/hwm_kib]}")" \
                        "${R[$n/$r/cpu_s]}" "${R[$n/$r/runq_s]}" "$note"
        done
done
echo

BUSY1=$(busy_ticks)
SELF1=$(daemons_cpu_ticks $$)
REG1=$(daemons_cpu_ticks "$REG_PID")
T1=$(date +%s.%N)

# ---- optional profile of one more cocoond pull -------------------------------------
PROF_OUT=
if [ -n "$PROFILE" ]; then
        d=$WORK/profile-cocoond
        mkdir -p "$d"
        sync
        start_cocoond "$d"
        if [ "$PROFILE" = perf ]; then
                perf record -q -g -F 999 -p "$DAEMON_PID" -o "$d/perf.data" >"$d/prof.log" 2>&1 &
        else
                strace -f -c -p "$DAEMON_PID" -o "$d/strace.txt" >"$d/prof.log" 2>&1 &
        fi
        PROF_PID=$!
        sleep 1
        out=$("$PY" "$CLIENT" pull --stubs "$STUBS" --pid "$DAEMON_PID" --image "$REF" \
                --expect-id "$IMG_CONFIG" "unix://$SOCK" 2>&1) || { echo "$out" >&2; die "profiled pull failed"; }
        kill -INT "$PROF_PID" 2>/dev/null || true
        wait "$PROF_PID" 2>/dev/null || true
        PROF_PID=
        PROF_OUT="== profile ($PROFILE) of one more cocoond pull ($(get wall_s "$(grep '^RESULT' <<<"$out")")s under the profiler)"$'\n'
        if [ "$PROFILE" = perf ]; then
                PROF_OUT+="-- samples by library (self time)"$'\n'
                PROF_OUT+=$(perf report -i "$d/perf.data" --stdio --no-children --sort dso \
                        --percent-limit 0.5 -g none 2>/dev/null | grep -v '^#' | sed '/^$/d' | head -n 12)
                PROF_OUT+=$'\n'"-- system calls, inclusive (children) time"$'\n'
                PROF_OUT+=$(perf report -i "$d/perf.data" --stdio --children --sort sym -g none \
                        2>/dev/null | grep -E '\[k\] __x64_sys_' | head -n 12)
                PROF_OUT+=$'\n'"-- hottest kernel symbols (self time)"$'\n'
                PROF_OUT+=$(perf report -i "$d/perf.data" --stdio --no-children --sort sym -g none \
                        2>/dev/null | grep -F '[k]' | head -n 8)
        else
                PROF_OUT+=$(head -n 30 "$d/strace.txt")
        fi
        daemons_stop_pid "$DAEMON_PID"
        DAEMON_PID=
        rm -rf "$d"
fi

# ---- summary and goals --------------------------------------------------------------
col() { # DAEMON KEY -> "v1 v2 v3"
        local s="" i
        for ((i = 1; i <= ROUNDS; i++)); do s+="${R[$1/$i/$2]} "; done
        echo "$s"
}
C_T=$(col cocoond wall_s | median)
K_T=$(col containerd wall_s | median)
C_RSS=$(col cocoond peak_rss_kib | maxof)
K_RSS=$(col containerd peak_rss_kib | maxof)
C_RSSM=$(col cocoond peak_rss_kib | median)
K_RSSM=$(col containerd peak_rss_kib | median)
C_CPU=$(col cocoond cpu_s | median)
K_CPU=$(col containerd cpu_s | median)
C_RUNQ=$(col cocoond runq_s | median)
K_RUNQ=$(col containerd runq_s | median)
C_FETCH=$(col cocoond fetch_s | median)
C_COMMIT=$(col cocoond commit_s | median)
RATIO=$(awk -v a="$C_T" -v b="$K_T" 'BEGIN { printf "%.2f", a / b }')
UNPACK=$(awk -v b="$IMG_RAW" -v s="$C_COMMIT" 'BEGIN { printf "%.0f", b / 1e6 / s }')
FETCH_RATE=$(awk -v b="$IMG_Z" -v s="$C_FETCH" 'BEGIN { printf "%.0f", b / 1e6 / s }')

read -r OTHER_PCT OTHER_S <<<"$(awk -v b="$BUSY0 $BUSY1" -v s="$SELF0 $SELF1" -v g="$REG0 $REG1" \
        -v t0="$T0" -v t1="$T1" -v n="$(nproc)" -v hz="$(getconf CLK_TCK)" 'BEGIN {
        split(b, B, " "); split(s, S, " "); split(g, G, " ")
        o = ((B[2] - B[1]) - (S[2] - S[1]) - (G[2] - G[1])) / hz; if (o < 0) o = 0
        printf "%.0f %.1f", 100 * o / ((t1 - t0) * n), o }')"
echo "== other load: processes outside this benchmark used ${OTHER_S} CPU-s (${OTHER_PCT}% of the" \
        "$(nproc) CPUs) during the rounds; load average $(cut -d' ' -f1-3 /proc/loadavg) (start $LOAD_START)"
if [ "$OTHER_PCT" -ge 10 ]; then
        echo "WARNING: other work competed with this benchmark: times are noisy (and the daemon with"
        echo "         fewer runnable threads loses more to it); CPU seconds much less so"
fi
echo

echo "== summary (median of $ROUNDS rounds; peak RSS: highest round, median in brackets)"
printf '%-34s %16s %16s %8s\n' "" cocoond containerd ratio
printf '%s\n' "-----------------------------------------------------------------------------"
printf '%-34s %15ss %15ss %7sx\n' "cold PullImage time" "$C_T" "$K_T" "$RATIO"
printf '%-34s %16s %16s\n' "  (fastest-slowest round)" \
        "($(col cocoond wall_s | minof)-$(col cocoond wall_s | maxof))" \
        "($(col containerd wall_s | minof)-$(col containerd wall_s | maxof))"
printf '%-34s %16s %16s %7sx\n' "peak RSS during the pull" "$(mib "$C_RSS")" "$(mib "$K_RSS")" \
        "$(awk -v a="$C_RSS" -v b="$K_RSS" 'BEGIN { printf "%.2f", a / b }')"
printf '%-34s %16s %16s\n' "  (median peak)" "($(mib "$C_RSSM"))" "($(mib "$K_RSSM"))"
printf '%-34s %15ss %15ss %7sx\n' "CPU time, user+sys (daemon)" "$C_CPU" "$K_CPU" \
        "$(awk -v a="$C_CPU" -v b="$K_CPU" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')"
printf '%-34s %15ss %15ss\n' "waiting for a CPU (sum of threads)" "$C_RUNQ" "$K_RUNQ"
printf '%-34s %16s %16s\n' "cocoond fetch phase" "${C_FETCH}s" ""
printf '%-34s %16s %16s\n' "  = compressed MB/s" "$FETCH_RATE MB/s" ""
printf '%-34s %16s %16s\n' "cocoond unpack+commit phase" "${C_COMMIT}s" ""
printf '%-34s %16s %16s\n' "  = unpack MB/s (uncompressed)" "$UNPACK MB/s" ""
echo "(unpack MB/s: the image's $(mb "$IMG_RAW") of uncompressed layer data over the time from"
echo " cocoond's last 'layer ...: downloaded' debug line to its 'rpc=PullImage image=' line, i.e."
echo " image_commit(): gunzip + diff-id sha256 + file writes + per-layer syncfs, layers in order)"
echo

met() { if [ "$1" = 1 ]; then echo "MET"; else echo "NOT MET"; fi; }
echo "== goals"
ok=$(awk -v a="$C_T" -v b="$K_T" 'BEGIN { print (a <= 0.7 * b) ? 1 : 0 }') # unrounded
echo "cocoond time <= 0.7x containerd's: ${C_T}s vs ${K_T}s = $(awk -v a="$C_T" -v b="$K_T" \
        'BEGIN { printf "%.3f", a / b }')x -> $(met "$ok")"
ok=$(awk -v k="$C_RSS" 'BEGIN { print (k <= 32768) ? 1 : 0 }')
echo "cocoond RSS during the pull <= 32 MiB: peak $(mib "$C_RSS") (highest of $ROUNDS rounds) -> $(met "$ok")"
if [ -n "$PROF_OUT" ]; then
        echo
        echo "$PROF_OUT"
fi
