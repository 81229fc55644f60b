#!/bin/sh
# extract-vmlinux.sh: turn a distribution bzImage (e.g. Debian's
# /boot/vmlinuz-*-cloud-amd64) into the uncompressed ELF vmlinux that QEMU's
# microvm machine boots directly through the PVH entry point.
#
# usage: extract-vmlinux.sh [BZIMAGE] OUTPUT
#   BZIMAGE defaults to the newest /boot/vmlinuz-*-cloud-amd64.
#
# How: the x86 boot protocol (>= 2.08) records where the compressed kernel
# sits inside the bzImage (setup header fields payload_offset at 0x248 and
# payload_length at 0x24c, relative to the protected-mode code that starts
# after (setup_sects + 1) * 512 bytes). The format is recognised by its magic
# bytes. If the header is missing or unusable we scan the file for every known
# magic and try each candidate until one decompresses to an ELF image.
# The result must be an x86-64 ELF carrying the Xen PVH note
# XEN_ELFNOTE_PHYS32_ENTRY (type 18), otherwise QEMU cannot boot it as PVH.
set -eu

me=${0##*/}
die() { echo "$me: $*" >&2; exit 1; }

case $# in
1) out=$1
   img=$(for f in /boot/vmlinuz-*-cloud-amd64; do [ -f "$f" ] && echo "$f"; done | sort -V | tail -n 1)
   [ -n "$img" ] || die "no /boot/vmlinuz-*-cloud-amd64 found (apt-get install linux-image-cloud-amd64)" ;;
2) img=$1; out=$2 ;;
*) echo "usage: $me [BZIMAGE] OUTPUT" >&2; exit 2 ;;
esac
[ -r "$img" ] || die "cannot read '$img'"
for t in od readelf; do
	command -v "$t" >/dev/null 2>&1 || die "'$t' is required"
done

tmpdir=$(mktemp -d "${TMPDIR:-/tmp}/extract-vmlinux.XXXXXX")
trap 'rm -rf "$tmpdir"' EXIT INT TERM HUP

# le_u32/le_u16/u8 FILE OFFSET: print an unsigned little-endian integer.
# (od decodes in host order; this script only ever runs on x86 hosts.)
le_u32() { od -A n -t u4 -j "$2" -N 4 "$1" | tr -d ' '; }
le_u16() { od -A n -t u2 -j "$2" -N 2 "$1" | tr -d ' '; }
u8()     { od -A n -t u1 -j "$2" -N 1 "$1" | tr -d ' '; }
hexbytes() { od -A n -t x1 -j "$2" -N "$3" "$1" | tr -d ' \n'; }

# The decompressor command for a payload whose first bytes are $1 (hex).
format_of() {
	case $1 in
	1f8b08*)       echo gzip ;;
	fd377a585a00*) echo xz ;;
	28b52ffd*)     echo zstd ;;
	02214c18*)     echo lz4 ;;
	5d0000*)       echo lzma ;;
	425a68*)       echo bzip2 ;;
	894c5a4f*)     echo lzop ;;
	*)             echo unknown ;;
	esac
}

# decompress FORMAT: stdin -> stdout. The kernel appends the uncompressed size
# (4 bytes) after the stream and the payload may be followed by padding, so
# decompressors that complain about trailing data are expected to exit
# non-zero; the result is validated afterwards instead.
decompress() {
	case $1 in
	gzip)  gzip -dc ;;
	xz)    xz -dc --single-stream ;;
	zstd)  zstd -dcq ;;
	lz4)   lz4 -dcq ;;
	lzma)  xz -dc --format=lzma ;;
	bzip2) bzip2 -dc ;;
	lzop)  lzop -dc ;;
	*)     return 1 ;;
	esac
}

is_elf() { [ "$(hexbytes "$1" 0 4 2>/dev/null)" = 7f454c46 ]; }

has_pvh_note() {
	# binutils >= 2.41 names the note; older ones print "Unknown note type: (0x00000012)".
	readelf -n "$1" 2>/dev/null |
		grep -E '^[[:space:]]*Xen[[:space:]]' |
		grep -q -E 'XEN_ELFNOTE_PHYS32_ENTRY|\(0x0*12\)'
}

# try OFFSET [LENGTH]: decompress from OFFSET (0-based) and keep the result in
# $tmpdir/vmlinux when it is an ELF image. With LENGTH, the payload's trailing
# 4-byte size must also match the decompressed size.
try() {
	off=$1 len=${2:-}
	fmt=$(format_of "$(hexbytes "$img" "$off" 6)")
	[ "$fmt" != unknown ] || return 1
	tool=$fmt
	[ "$fmt" != lzma ] || tool=xz
	command -v "$tool" >/dev/null 2>&1 ||
		{ echo "$me: payload at $off is $fmt but '$tool' is not installed" >&2; return 1; }
	if [ -n "$len" ]; then
		tail -c +"$((off + 1))" "$img" | head -c "$len" | decompress "$fmt" >"$tmpdir/vmlinux" 2>/dev/null || true
	else
		tail -c +"$((off + 1))" "$img" | decompress "$fmt" >"$tmpdir/vmlinux" 2>/dev/null || true
	fi
	is_elf "$tmpdir/vmlinux" || return 1
	if [ -n "$len" ] && [ "$len" -ge 4 ]; then
		want=$(le_u32 "$img" "$((off + len - 4))")
		got=$(wc -c <"$tmpdir/vmlinux" | tr -d ' ')
		[ "$want" = "$got" ] ||
			{ echo "$me: $fmt payload decompressed to $got bytes, header says $want" >&2; return 1; }
	fi
	echo "$me: $img: $fmt payload at offset $off" >&2
	return 0
}

found=
size=$(wc -c <"$img" | tr -d ' ')
if [ "$size" -gt 1024 ] && [ "$(hexbytes "$img" 514 4)" = 48647253 ]; then   # "HdrS"
	version=$(le_u16 "$img" 518)
	setup_sects=$(u8 "$img" 497)
	[ "$setup_sects" -ne 0 ] || setup_sects=4
	if [ "$version" -ge 520 ]; then                                     # 0x0208
		poff=$(le_u32 "$img" 584)
		plen=$(le_u32 "$img" 588)
		start=$(((setup_sects + 1) * 512 + poff))
		if [ "$plen" -gt 0 ] && [ $((start + plen)) -le "$size" ] && try "$start" "$plen"; then
			found=1
		fi
	fi
fi

if [ -z "$found" ]; then
	# Fallback: scan for every magic. grep -b reports byte offsets of matches.
	for magic in '\x1f\x8b\x08' '\xfd7zXZ\x00' '\x28\xb5\x2f\xfd' '\x02\x21\x4c\x18' \
	             '\x5d\x00\x00' 'BZh' '\x89LZO'; do
		for off in $(LC_ALL=C grep -obUaP "$magic" "$img" 2>/dev/null | cut -d: -f1 | head -n 64); do
			if try "$off"; then found=1; break 2; fi
		done
	done
fi
[ -n "$found" ] || die "$img: no compressed ELF kernel found"

has_pvh_note "$tmpdir/vmlinux" ||
	die "$img: kernel has no XEN_ELFNOTE_PHYS32_ENTRY note (built without CONFIG_PVH?): QEMU cannot boot it directly"

# ---- zero tails ----------------------------------------------------------------
# Debian's last PT_LOAD segment carries .bss and .brk as file bytes (filesz ==
# memsz, 11.3 MiB of zeros) because a PROGBITS section (.init.scratch, itself
# all zeros) follows them. QEMU keeps the whole file image of every segment
# mapped for the VM's lifetime (its ROM blobs, re-copied on reset), so those
# zeros cost page cache and mapped memory in every QEMU. Where a segment's
# file image is all zeros from the start of a NOBITS section to its end,
# p_filesz is lowered to that point: the loader zero-fills up to p_memsz, so
# the guest's memory image is the same byte for byte.
le_u64() { od -A n -t u8 -j "$2" -N 8 "$1" | tr -d ' '; }
# put_le64 FILE OFFSET VALUE: overwrite 8 bytes in place
put_le64() {
	pv=$3 pn=0 esc=''
	while [ $pn -lt 8 ]; do
		esc="$esc$(printf '\\%03o' $((pv & 255)))"
		pv=$((pv >> 8)) pn=$((pn + 1))
	done
	# shellcheck disable=SC2059
	printf "$esc" | dd of="$1" bs=1 seek="$2" count=8 conv=notrunc 2>/dev/null
}
trim_zero_tails() {
	f=$1
	phoff=$(le_u64 "$f" 32)
	phentsize=$(le_u16 "$f" 54)
	phnum=$(le_u16 "$f" 56)
	# file offsets of the NOBITS sections, ascending ("[Nr] Name Type Address Off ...")
	nobits=$(readelf -SW "$f" | sed -n 's/^ *\[ *[0-9]*\] *//p' |
		awk '$2 == "NOBITS" { print $4 }' | while read -r h; do echo $((0x$h)); done | sort -n -u)
	i=0
	while [ "$i" -lt "$phnum" ]; do
		ph=$((phoff + i * phentsize))
		i=$((i + 1))
		[ "$(le_u32 "$f" "$ph")" = 1 ] || continue                     # PT_LOAD
		off=$(le_u64 "$f" $((ph + 8)))
		filesz=$(le_u64 "$f" $((ph + 32)))
		end=$((off + filesz))
		for c in $nobits; do
			if [ "$c" -le "$off" ] || [ "$c" -ge "$end" ] || [ $((end - c)) -lt 65536 ]; then
				continue
			fi
			if tail -c +$((c + 1)) "$f" | head -c $((end - c)) | cmp -s -n $((end - c)) - /dev/zero; then
				put_le64 "$f" $((ph + 32)) $((c - off))
				[ "$(le_u64 "$f" $((ph + 32)))" = $((c - off)) ] || die "cannot rewrite p_filesz"
				echo "$me: segment at file offset $off: $((end - c)) zero bytes left to the loader" >&2
				break
			fi
		done
	done
}
trim_zero_tails "$tmpdir/vmlinux"

mv -f "$tmpdir/vmlinux" "$out.tmp.$$"
chmod 0644 "$out.tmp.$$"
mv -f "$out.tmp.$$" "$out"
