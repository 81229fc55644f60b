#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# CRI RPC throughput/latency: cocoond against Debian's containerd 1.6, the same
# client binary (bench/cri-rpc/cri-rpc-bench), the same run, both daemons on
# private temporary roots, states and sockets. Run as root:
#
#   bench/cri-rpc/run.sh [BUILDDIR]
#
# BUILDDIR holds cocoond and bench/cri-rpc/cri-rpc-bench (default: .).
# Environment knobs (defaults in brackets):
#   DURATION [5]  WARMUP [1]  seconds measured / warmed up per run
#   CONCURRENCY ["1 16 64"]   METHODS ["Version ListPodSandbox"]
#   IDLE_WAIT [5]             seconds idle before each memory reading
#   REPEAT [1]                rounds per cell, daemons alternating; the round
#                             with the most calls/s is reported (busy machines)
#   CONTAINERD [containerd from PATH]
#   DAEMON_CPUS, CLIENT_CPUS  optional taskset CPU lists (e.g. 1 and 0) to
#                             keep the client off the daemon's core
set -eu -o pipefail

die() { echo "run.sh: $*" >&2; exit 1; }

# shellcheck source=SCRIPTDIR/../lib/cri-env.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/cri-env.sh"

crienv_paths "${1:-.}"
BENCH=$BUILDDIR/bench/cri-rpc/cri-rpc-bench
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
CONCURRENCY=${CONCURRENCY:-"1 16 64"}
METHODS=${METHODS:-"Version ListPodSandbox"}
IDLE_WAIT=${IDLE_WAIT:-5}
REPEAT=${REPEAT:-1}
DAEMON_CPUS=${DAEMON_CPUS:-}
CLIENT_CPUS=${CLIENT_CPUS:-}

[[ "$REPEAT" =~ ^[1-9][0-9]?$ ]] || die "REPEAT must be 1..99"
[ "$(id -u)" = 0 ] || die "must run as root (containerd needs it)"
[ -x "$COCOOND" ] || die "$COCOOND not found: build it (make cocoond)"
[ -x "$BENCH" ] || die "$BENCH not found: build it (make bench/cri-rpc/cri-rpc-bench)"
[ -n "$CONTAINERD" ] && [ -x "$CONTAINERD" ] ||
        die "containerd not found: apt-get install containerd (scripts/setup-debian.sh)"
if [ -n "$DAEMON_CPUS$CLIENT_CPUS" ]; then
        command -v taskset >/dev/null || die "taskset not found (util-linux)"
fi

COCOON_PID=
CTR_PID=

# Run first by crienv_cleanup (which then unmounts and removes the work dir
# and checks the host's containerd directories).
stop_daemons() {
        daemons_stop_pid "$COCOON_PID"
        daemons_stop_pid "$CTR_PID"
}
crienv_init cri-rpc-bench stop_daemons

# Command prefixes that pin to a CPU list (taskset execs, so $! stays the
# daemon's own pid; never background a shell function here: $! would be a
# subshell's).
DAEMON_PIN=()
CLIENT_PIN=()
[ -z "$DAEMON_CPUS" ] || DAEMON_PIN=(taskset -c "$DAEMON_CPUS")
[ -z "$CLIENT_CPUS" ] || CLIENT_PIN=(taskset -c "$CLIENT_CPUS")

# ---- cocoond ---------------------------------------------------------------
COCOON_SOCK=$WORK/cocoon/cocoon.sock
daemons_cocoond_config "$WORK/cocoon" "$COCOON_SOCK"
"${DAEMON_PIN[@]}" "$COCOOND" --config "$WORK/cocoon/cocoon.toml" >"$WORK/cocoon/log" 2>&1 &
COCOON_PID=$!

# ---- containerd 1.6 with the CRI plugin, private everything ----------------
C=$WORK/containerd
CTR_SOCK=$C/containerd.sock
daemons_containerd_config "$C"
"${DAEMON_PIN[@]}" "$CONTAINERD" --config "$C/config.toml" >"$C/log" 2>&1 &
CTR_PID=$!

daemons_wait_ready cocoond "$COCOON_PID" "$COCOON_SOCK" "$WORK/cocoon/log" "$COCOOND" \
        "$BENCH" -n 1 -w 0 -t 1000 "unix://$COCOON_SOCK"
daemons_wait_ready containerd "$CTR_PID" "$CTR_SOCK" "$C/log" "$CONTAINERD" \
        "$BENCH" -n 1 -w 0 -t 1000 "unix://$CTR_SOCK"

declare -A R  # R[daemon/method/conc/key] = value from the client's RESULT line
declare -A MEM

read_mem() { # WHEN
        local d pid
        for d in cocoond containerd; do
                pid=$COCOON_PID
                [ $d = containerd ] && pid=$CTR_PID
                kill -0 "$pid" 2>/dev/null || die "$d (pid $pid) died"
                MEM[$d/$1/rss]=$(daemons_mem_kib "$pid" VmRSS)
                MEM[$d/$1/pss]=$(daemons_mem_kib "$pid" Pss)
                MEM[$d/$1/anon]=$(daemons_mem_kib "$pid" RssAnon)
                MEM[$d/$1/file]=$(daemons_mem_kib "$pid" RssFile)
                MEM[$d/$1/threads]=$(daemons_mem_kib "$pid" Threads)
        done
}

COCOON_VERSION=$("$COCOOND" --version 2>&1 | head -n 1)
CTR_VERSION=$("$CONTAINERD" --version 2>&1 | head -n 1)
echo "== CRI RPC benchmark: cocoond vs containerd, same client ($BENCH)"
daemons_host_line
echo "   $COCOON_VERSION (pid $COCOON_PID)"
echo "   $CTR_VERSION (pid $CTR_PID)"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "   load average at start: $LOAD_START"
echo "   per run: ${WARMUP}s warmup + ${DURATION}s measured; closed loop, one connection per client thread"
[ "$REPEAT" = 1 ] || echo "   $REPEAT rounds per cell, daemons alternating; best round (most calls/s) reported"
[ -z "$DAEMON_CPUS$CLIENT_CPUS" ] ||
        echo "   pinned: daemons on CPUs '${DAEMON_CPUS:-any}', client on CPUs '${CLIENT_CPUS:-any}'"
[ -n "$DAEMON_CPUS$CLIENT_CPUS" ] ||
        echo "   not pinned: client and daemon share all CPUs"
echo

sleep "$IDLE_WAIT"
read_mem start

get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

run_one() { # DAEMON METHOD CONC ROUND
        local d=$1 m=$2 c=$3 round=$4 pid sock out rc=0 line k tag=$1
        if [ "$d" = cocoond ]; then pid=$COCOON_PID sock=$COCOON_SOCK; else pid=$CTR_PID sock=$CTR_SOCK; fi
        [ "$REPEAT" = 1 ] || tag="$d round $round"
        # A method already known to be UNIMPLEMENTED is not asked again.
        [ "${R[$d/$m/$c/status]:-}" != unimplemented ] || return 0
        out=$("${CLIENT_PIN[@]}" "$BENCH" -m "$m" -c "$c" -d "$DURATION" -w "$WARMUP" -p "$pid" \
                "unix://$sock" 2>&1) || rc=$?
        printf '[%s] %s\n' "$tag" "$(grep -v '^RESULT' <<<"$out" | sed '2,$s/^/    /')"
        if [ "$rc" = 3 ] && [ "$m" != Version ]; then
                R[$d/$m/$c/status]=unimplemented
                return 0
        fi
        if [ "$rc" != 0 ]; then
                kill -0 "$pid" 2>/dev/null || echo "run.sh: $d (pid $pid) is no longer running" >&2
                die "$d $m concurrency $c FAILED (client exit $rc): see above"
        fi
        line=$(grep '^RESULT' <<<"$out")
        # With REPEAT > 1 keep the round with the most calls/s (the one least
        # disturbed by other work), all of its figures together.
        if [ "${R[$d/$m/$c/status]:-}" = ok ] &&
                awk -v new="$(get rps "$line")" -v old="${R[$d/$m/$c/rps]}" 'BEGIN { exit !(new <= old) }'; then
                return 0
        fi
        R[$d/$m/$c/status]=ok
        for k in rps p50_us p99_us max_us server_us_per_call client_us_per_call; do
                R[$d/$m/$c/$k]=$(get "$k" "$line")
        done
}

# CPU accounting for the noise check: machine busy ticks (steal included) vs.
# ticks of the daemons and of this script's children (the clients).
cpu_snapshot() {
        local own=0 pid
        for pid in "$COCOON_PID" "$CTR_PID"; do
                own=$((own + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
        done
        own=$((own + $(awk '{ print $16 + $17 }' "/proc/$$/stat")))
        echo "$(date +%s%N) $(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat) $own"
}
OTHER_START=$(cpu_snapshot)

echo "== runs"
for m in $METHODS; do
        for c in $CONCURRENCY; do
                for ((round = 1; round <= REPEAT; round++)); do
                        run_one cocoond "$m" "$c" "$round"
                        run_one containerd "$m" "$c" "$round"
                done
        done
done
echo

sleep "$IDLE_WAIT"
read_mem load

# ---- report ------------------------------------------------------------------
OTHER_END=$(cpu_snapshot)
read -r other_pct other_s <<<"$(awk -v a="$OTHER_START" -v b="$OTHER_END" -v n="$(nproc)" -v hz="$(getconf CLK_TCK)" '
        BEGIN { split(a, x, " "); split(b, y, " ")
                wall = (y[1] - x[1]) / 1e9; other = ((y[2] - x[2]) - (y[3] - x[3])) / hz
                if (other < 0) other = 0
                printf "%.0f %.1f", 100 * other / (wall * n), other }')"
echo "== other load: processes outside this benchmark used ${other_s} CPU-s (${other_pct}% of the" \
        "$(nproc) CPUs) during the runs; load average $(cut -d' ' -f1-3 /proc/loadavg) (start $LOAD_START)"
if [ "$other_pct" -ge 10 ]; then
        echo "WARNING: other work competed with this benchmark: calls/s and latencies are noisy;" \
                "CPU per call much less so"
fi
echo
lat() { # microseconds -> "123us" / "1.23ms"
        awk -v u="$1" 'BEGIN { if (u < 1000) printf "%.0fus", u; else printf "%.2fms", u / 1000 }'
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

echo "== throughput and latency (closed loop, calls/s over ${DURATION}s; p50/p99 per call)"
printf '%-15s %5s | %9s %8s %8s | %9s %8s %8s | %6s\n' method clients \
        "cocoon/s" p50 p99 "ctrd/s" p50 p99 ratio
printf '%s\n' "---------------------------------------------------------------------------------------"
NOTES=()
for m in $METHODS; do
        for c in $CONCURRENCY; do
                row=()
                for d in cocoond containerd; do
                        if [ "${R[$d/$m/$c/status]}" = ok ]; then
                                row+=("$(printf '%.0f' "${R[$d/$m/$c/rps]}")"
                                        "$(lat "${R[$d/$m/$c/p50_us]}")" "$(lat "${R[$d/$m/$c/p99_us]}")")
                        else
                                row+=(n/a n/a n/a)
                        fi
                done
                ratio=n/a
                if [ "${R[cocoond/$m/$c/status]}" = ok ] && [ "${R[containerd/$m/$c/status]}" = ok ]; then
                        ratio=$(awk -v a="${R[cocoond/$m/$c/rps]}" -v b="${R[containerd/$m/$c/rps]}" \
                                'BEGIN { printf "%.2fx", a / b }')
                fi
                printf '%-15s %5s | %9s %8s %8s | %9s %8s %8s | %6s\n' "$m" "$c" "${row[@]}" "$ratio"
        done
        for d in cocoond containerd; do
                for c in $CONCURRENCY; do
                        if [ "${R[$d/$m/$c/status]}" = unimplemented ]; then
                                NOTES+=("$m: $d answers UNIMPLEMENTED (a fast error path, not comparable); row skipped for $d until pods exist")
                                break
                        fi
                done
        done
done
for n in "${NOTES[@]}"; do echo "note: $n"; done
echo

echo "== CPU per call (user+system time of the daemon / of the client in the window, divided by its calls)"
printf '%-15s %5s | %13s %13s | %13s %13s\n' method clients "cocoond srv" "client" "ctrd srv" "client"
printf '%s\n' "-------------------------------------------------------------------------------"
for m in $METHODS; do
        for c in $CONCURRENCY; do
                row=()
                for d in cocoond containerd; do
                        if [ "${R[$d/$m/$c/status]}" = ok ]; then
                                row+=("$(printf '%.1fus' "${R[$d/$m/$c/server_us_per_call]}")"
                                        "$(printf '%.1fus' "${R[$d/$m/$c/client_us_per_call]}")")
                        else
                                row+=(n/a n/a)
                        fi
                done
                printf '%-15s %5s | %13s %13s | %13s %13s\n' "$m" "$c" "${row[@]}"
        done
done
echo

echo "== memory (idle ${IDLE_WAIT}s: after startup, and after the load above;"
echo "   RssFile is mapped library/binary text, RssAnon the process's own heap and stacks)"
printf '%-22s %14s %14s\n' "" cocoond containerd
for w in start load; do
        printf '%-22s %14s %14s\n' "VmRSS ($w)" "$(mib "${MEM[cocoond/$w/rss]}")" "$(mib "${MEM[containerd/$w/rss]}")"
        printf '%-22s %14s %14s\n' "PSS ($w)" "$(mib "${MEM[cocoond/$w/pss]}")" "$(mib "${MEM[containerd/$w/pss]}")"
        printf '%-22s %14s %14s\n' "  RssAnon ($w)" "$(mib "${MEM[cocoond/$w/anon]}")" "$(mib "${MEM[containerd/$w/anon]}")"
        printf '%-22s %14s %14s\n' "  RssFile ($w)" "$(mib "${MEM[cocoond/$w/file]}")" "$(mib "${MEM[containerd/$w/file]}")"
        printf '%-22s %14s %14s\n' "threads ($w)" "${MEM[cocoond/$w/threads]}" "${MEM[containerd/$w/threads]}"
done
echo

# ---- goals --------------------------------------------------------------------
met() { if [ "$1" = 1 ]; then echo "MET"; else echo "NOT MET"; fi; }
echo "== goals"
ok=1 n=0 detail=""
for m in $METHODS; do
        for c in $CONCURRENCY; do
                [ "${R[cocoond/$m/$c/status]}" = ok ] && [ "${R[containerd/$m/$c/status]}" = ok ] || continue
                r=$(awk -v a="${R[cocoond/$m/$c/rps]}" -v b="${R[containerd/$m/$c/rps]}" 'BEGIN { printf "%.2f", a / b }')
                awk -v r="$r" 'BEGIN { exit !(r >= 2) }' || ok=0
                detail+=" $m/$c=${r}x"
                n=$((n + 1))
        done
done
[ "$n" -gt 0 ] || ok=0
echo "throughput >= 2x containerd (every comparable row):$detail -> $(met $ok)"

ok=1 n=0 detail=""
for m in $METHODS; do
        [ "${R[cocoond/$m/64/status]:-}" = ok ] || continue
        p=${R[cocoond/$m/64/p99_us]}
        awk -v p="$p" 'BEGIN { exit !(p < 2000) }' || ok=0
        detail+=" $m=$(lat "$p")"
        n=$((n + 1))
done
if [ "$n" = 0 ]; then
        echo "cocoond p99 < 2 ms at 64 clients: no measured row at 64 clients -> NOT MEASURED"
else
        echo "cocoond p99 < 2 ms at 64 clients:$detail -> $(met $ok)"
fi

detail=""
for m in $METHODS; do
        for c in $CONCURRENCY; do
                [ "${R[cocoond/$m/$c/status]}" = ok ] && [ "${R[containerd/$m/$c/status]}" = ok ] || continue
                detail+=" $m/$c=$(awk -v a="${R[containerd/$m/$c/server_us_per_call]}" \
                        -v b="${R[cocoond/$m/$c/server_us_per_call]}" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }')"
        done
done
echo "(informational) server CPU per call, containerd / cocoond:${detail:- n/a}"

ok=1
for w in start load; do
        [ "${MEM[cocoond/$w/rss]}" -le 10240 ] || ok=0
done
echo "cocoond idle RSS <= 10 MiB: $(mib "${MEM[cocoond/start/rss]}") after startup," \
        "$(mib "${MEM[cocoond/load/rss]}") after load -> $(met $ok)"
