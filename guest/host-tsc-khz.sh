#!/bin/sh
# host-tsc-khz.sh: print the host's TSC frequency in kHz (one integer).
#
# Why: under QEMU TCG the guest's RDTSC returns the host's TSC, but a microvm
# guest has no PIT/HPET/PM timer to calibrate it against, so the kernel must be
# told the rate with tsc_early_khz=<kHz> (without it boots stall or hang).
# Under KVM the guest learns it from kvmclock/CPUID and this is not needed.
#
# Sources, most exact first:
#   1. /sys/devices/system/cpu/cpu0/tsc_freq_khz (exported by some kernels)
#   2. the host kernel's own calibration in its log (dmesg, then the journal):
#      "tsc: Refined TSC clocksource calibration: N MHz", else
#      "tsc: Detected N MHz processor"
#   3. /proc/cpuinfo "bogomips" / 2: x86 kernels derive loops_per_jiffy from
#      the TSC rate (bogomips = tsc_khz / 500), so this is the same number to
#      ~10 kHz and is present on every x86 Linux; "cpu MHz" is not used, it is
#      the current core clock on hosts with frequency scaling
# Exits 1 when nothing usable is found. Do not then boot a TCG microvm with
# PIT calibration instead: measured, 4 boots in 10 hang ("tsc: Unable to
# calibrate against PIT", no HPET/PM timer, TSC marked unstable).
set -eu

valid() { case $1 in ''|*[!0-9]*) return 1 ;; esac; [ "$1" -ge 100000 ] && [ "$1" -le 20000000 ]; }

# "2096.037" (MHz) -> "2096037" (kHz), without floating point
mhz_to_khz() {
	awk -v m="$1" 'BEGIN { if (m ~ /^[0-9]+(\.[0-9]+)?$/) printf "%d\n", m * 1000 + 0.5 }'
}

f=/sys/devices/system/cpu/cpu0/tsc_freq_khz
if [ -r "$f" ]; then
	k=$(tr -d ' \n' <"$f" 2>/dev/null || true)
	if valid "$k"; then echo "$k"; exit 0; fi
fi

# the last "Refined" value, else the last "Detected" one
log_khz() {
	lines=$(sed -n 's/.*tsc: Refined TSC clocksource calibration: \([0-9.]*\) MHz.*/R \1/p
	                s/.*tsc: Detected \([0-9.]*\) MHz processor.*/D \1/p')
	m=$(printf '%s\n' "$lines" | sed -n 's/^R //p' | tail -n 1)
	[ -n "$m" ] || m=$(printf '%s\n' "$lines" | sed -n 's/^D //p' | tail -n 1)
	[ -n "$m" ] && mhz_to_khz "$m"
}
for src in "dmesg" "journalctl -k -b 0 -q --no-pager -o cat"; do
	cmd=${src%% *}
	command -v "$cmd" >/dev/null 2>&1 || continue
	k=$($src 2>/dev/null | log_khz || true)
	if valid "$k"; then echo "$k"; exit 0; fi
done

b=$(sed -n 's/^bogomips[[:space:]]*:[[:space:]]*\([0-9.]*\).*/\1/p' /proc/cpuinfo 2>/dev/null | head -n 1)
k=$(awk -v b="$b" 'BEGIN { if (b ~ /^[0-9]+(\.[0-9]+)?$/) printf "%d\n", b * 500 + 0.5 }')
if valid "$k"; then echo "$k"; exit 0; fi
exit 1
