#!/bin/sh
# Guest boot smoke test: builds guest/test-init.c (static), extracts the PVH
# vmlinux from Debian's cloud kernel, packs an initrd with guest/mkinitrd.sh,
# then boots it in QEMU microvm RUNS times (default 10) with boot.py: each boot
# must print its ready marker, answer the echo over the virtio-serial port
# agent.0 and power off so that QEMU exits. KVM is used when /dev/kvm is
# usable, TCG otherwise.
#
# usage: tests/integration/guest-boot/run.sh [boot.py options...]
#   env: RUNS=N, KEEP=1 (keep the temp dir), COCOON_GUEST_KVER=<release>
# Exits 0 if every boot passed, 1 if one failed, 77 (skip) when a prerequisite
# (qemu-system-x86_64, gcc static libc, linux-image-cloud-amd64) is missing.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../../.." && pwd)
runs=${RUNS:-10}

skip() { echo "SKIP: $*" >&2; exit 77; }
command -v qemu-system-x86_64 >/dev/null 2>&1 || skip "qemu-system-x86_64 not installed (apt-get install qemu-system-x86)"
command -v gcc >/dev/null 2>&1 || skip "gcc not installed"
[ -x /usr/bin/python3 ] || skip "/usr/bin/python3 not installed"

kver=${COCOON_GUEST_KVER:-$(for d in /lib/modules/*-cloud-amd64; do [ -d "$d" ] && echo "${d##*/}"; done | sort -V | tail -n 1)}
{ [ -n "$kver" ] && [ -r "/boot/vmlinuz-$kver" ]; } ||
	skip "no Debian cloud kernel (apt-get install linux-image-cloud-amd64)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cocoon-guest-test.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then
	echo "keeping $tmp"
else
	trap 'rm -rf "$tmp"' EXIT INT TERM HUP
fi

gcc -static -O2 -Wall -Wextra -o "$tmp/test-init" "$top/guest/test-init.c" ||
	skip "cannot link a static binary (libc6-dev static libc missing?)"
sh "$top/guest/extract-vmlinux.sh" "/boot/vmlinuz-$kver" "$tmp/vmlinux"
sh "$top/guest/mkinitrd.sh" -k "$kver" "$tmp/test-init" "$tmp/initrd.img"
echo "kernel $kver: vmlinux $(wc -c <"$tmp/vmlinux") bytes, initrd $(wc -c <"$tmp/initrd.img") bytes"

status=0
/usr/bin/python3 "$here/boot.py" --kernel "$tmp/vmlinux" --initrd "$tmp/initrd.img" \
	--runs "$runs" "$@" || status=$?
[ "$status" -eq 0 ] || exit 1
