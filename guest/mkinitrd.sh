#!/bin/sh
# mkinitrd.sh: build the cocoon guest initrd, an uncompressed newc cpio archive
# holding
#   /init                              the given static binary (cocoon-agent)
#   /dev/console                       char 5:1, so the kernel can give init stdio
#   /dev /proc /sys /run /tmp          empty mount points
#   /lib/modules/<kver>/<name>.ko      the guest's kernel modules, signatures stripped
#   /lib/modules/load-order            absolute paths of those modules, one per
#                                      line, dependencies first: the agent loads
#                                      them in this order with finit_module(2)
#                                      (EEXIST means built in or already loaded)
#
# usage: mkinitrd.sh [-k KVER] [-d MODDIR] [-m MODULES] [-a MODULES] INIT OUTPUT
#        mkinitrd.sh -N INIT OUTPUT
#   -N          no modules at all (a kernel with everything built in, such as
#               cocoon's lean kernel from build-kernel.sh): no /lib/modules
#   -k KVER     kernel release (default: newest *-cloud-amd64 in /lib/modules)
#   -d MODDIR   module tree root (default /lib/modules/KVER)
#   -m MODULES  replace the default module list (space separated names)
#   -a MODULES  add modules to the default list
#
# The archive is written without cpio(1) and without mknod, so it needs no
# root, and it is reproducible (fixed inode numbers, uid/gid 0, mtime 0).
# Modules already built into the kernel (modules.builtin) are skipped.
set -eu

me=${0##*/}
die() { echo "$me: $*" >&2; exit 1; }

# Order matters: cocoon-agent loads the prefix of the load order up to
# virtio_console (its host channel) before it serves, the rest on a thread.
# microvm has no PCI bus, so virtio_pci (and its two helpers) comes after
# virtio_console: 4 modules before the agent answers instead of 7.
DEFAULT_MODULES="virtio_mmio virtio_console virtio_pci vsock vmw_vsock_virtio_transport
virtiofs virtio_net virtio_blk overlay"

kver='' moddir='' modules=$DEFAULT_MODULES nomods=0
while getopts Nk:d:m:a: opt; do
	case $opt in
	N) nomods=1 ;;
	k) kver=$OPTARG ;;
	d) moddir=$OPTARG ;;
	m) modules=$OPTARG ;;
	a) modules="$modules $OPTARG" ;;
	*) echo "usage: $me [-k KVER] [-d MODDIR] [-m MODULES] [-a MODULES] INIT OUTPUT" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 2 ] || { echo "usage: $me [-k KVER] [-d MODDIR] [-m MODULES] [-a MODULES] INIT OUTPUT" >&2; exit 2; }
init=$1 out=$2

if [ "$nomods" -eq 1 ]; then
	[ -z "$kver$moddir" ] || die "-N takes no -k or -d"
elif [ -z "$kver" ]; then
	if [ -n "$moddir" ]; then
		kver=${moddir%/}; kver=${kver##*/}
	else
		kver=$(for d in /lib/modules/*-cloud-amd64; do [ -d "$d" ] && echo "${d##*/}"; done | sort -V | tail -n 1)
		[ -n "$kver" ] || die "no /lib/modules/*-cloud-amd64 (apt-get install linux-image-cloud-amd64), use -k"
	fi
fi
if [ "$nomods" -eq 0 ]; then
	case $kver in */*|.*|'') die "bad kernel release '$kver'" ;; esac
	[ -n "$moddir" ] || moddir=/lib/modules/$kver
	[ -r "$moddir/modules.dep" ] || die "no $moddir/modules.dep"
fi

{ [ -f "$init" ] && [ -r "$init" ]; } || die "cannot read init binary '$init'"
command -v readelf >/dev/null 2>&1 || die "'readelf' is required"
[ "$(od -A n -t x1 -N 4 "$init" | tr -d ' \n')" = 7f454c46 ] || die "'$init' is not an ELF binary"
if readelf -lW "$init" 2>/dev/null | grep -q 'program interpreter'; then
	die "'$init' is dynamically linked; the initrd has no libc: link it with -static"
fi

tmpdir=$(mktemp -d "${TMPDIR:-/tmp}/mkinitrd.XXXXXX")
trap 'rm -rf "$tmpdir"' EXIT INT TERM HUP

# The init binary goes in without its symbols and debug sections (a debug
# build of cocoon-agent is 2.4 MB, 1.3 MB of it DWARF): every byte of the
# initrd is copied into guest RAM by QEMU, then unpacked by the kernel, and
# both copies stay resident on the host. Debug with the build's own binary.
# STRIP=: keeps the binary as it is.
strip_tool=${STRIP:-strip}
if [ "$strip_tool" != : ] && command -v "$strip_tool" >/dev/null 2>&1 &&
	"$strip_tool" --strip-all -o "$tmpdir/init" "$init" 2>/dev/null; then
	init=$tmpdir/init
fi

# ---- module resolution -------------------------------------------------------
# Print the modules.dep paths of MODULES and of everything they depend on
# (hard dependencies, plus "pre:" soft dependencies when they exist), each once,
# every module after all of its dependencies.
# shellcheck disable=SC2086
if [ "$nomods" -eq 1 ]; then
	: >"$tmpdir/modlist"
else
awk -v want="$modules" -v builtin="$moddir/modules.builtin" -v softdep="$moddir/modules.softdep" '
function norm(s) { sub(/^.*\//, "", s); sub(/\.ko(\.[a-z0-9]+)?$/, "", s); gsub(/-/, "_", s); return s }
function visit(name,    n, i, parts) {
	if (name in state) {
		if (state[name] == 1) { print "dependency cycle through " name > "/dev/stderr"; err = 1 }
		return
	}
	if (!(name in path)) {
		if (name in isbuiltin) { print "note: " name " is built in" > "/dev/stderr"; state[name] = 2; return }
		print "module not found: " name > "/dev/stderr"; err = 1; state[name] = 2; return
	}
	state[name] = 1
	n = split(pre[name], parts, " ")
	for (i = 1; i <= n; i++) if (parts[i] in path) visit(parts[i])
	n = split(deps[path[name]], parts, " ")
	for (i = 1; i <= n; i++) visit(norm(parts[i]))
	state[name] = 2
	print path[name]
}
BEGIN {
	while ((getline line < builtin) > 0) isbuiltin[norm(line)] = 1
	while ((getline line < softdep) > 0) {
		n = split(line, f, /[ \t]+/)
		if (f[1] != "softdep" || n < 3) continue
		inpre = 0
		for (i = 3; i <= n; i++) {
			if (f[i] == "pre:") { inpre = 1; continue }
			if (f[i] == "post:") { inpre = 0; continue }
			if (inpre) pre[norm(f[2])] = pre[norm(f[2])] " " norm(f[i])
		}
	}
}
{
	p = $1; sub(/:$/, "", p)
	path[norm(p)] = p
	d = ""
	for (i = 2; i <= NF; i++) d = d " " $i
	deps[p] = d
}
END {
	n = split(want, w, /[ \t\n]+/)
	for (i = 1; i <= n; i++) if (w[i] != "") { x = w[i]; gsub(/-/, "_", x); visit(x) }
	exit err
}' "$moddir/modules.dep" >"$tmpdir/modlist" || die "cannot resolve modules in $moddir"
fi

# ---- signature stripping -------------------------------------------------------
# A signed module ends with: PKCS#7 blob, struct module_signature (12 bytes:
# algo, hash, id_type, signer_len, key_id_len, pad[3], be32 sig_len), and the
# 28-byte magic "~Module signature appended~\n". Dropping them skips the RSA
# verification at load time (the kernel only taints itself, CONFIG_MODULE_SIG_FORCE
# is off in Debian) and saves space.
SIG_MAGIC='~Module signature appended~'
strip_sig() { # SRC DST
	src=$1 dst=$2
	size=$(wc -c <"$1" | tr -d ' ')
	if [ "$size" -gt 40 ] && [ "$(tail -c 28 "$1" | head -c 27)" = "$SIG_MAGIC" ]; then
		# the 12 bytes of struct module_signature
		# shellcheck disable=SC2046
		set -- "$1" "$2" $(od -A n -t u1 -j $((size - 40)) -N 12 "$1")
		id_type=$5
		shift 10
		siglen=$(( ($1 << 24) | ($2 << 16) | ($3 << 8) | $4 ))
		[ "$id_type" -eq 2 ] || die "$src: unexpected signature id_type $id_type"
		keep=$((size - 40 - siglen))
		[ "$keep" -gt 0 ] || die "$src: bad signature length $siglen"
		head -c "$keep" "$src" >"$dst"
		[ "$(od -A n -t x1 -N 4 "$dst" | tr -d ' \n')" = 7f454c46 ] || die "$src: not an ELF object after stripping"
	else
		cat "$1" >"$2"
	fi
}

# ---- newc writer -----------------------------------------------------------------
ino=300000
cpio_pad() { # N: pad to a multiple of 4 after N bytes
	r=$(( (4 - $1 % 4) % 4 ))
	[ "$r" -eq 0 ] || head -c "$r" /dev/zero
}
cpio_hdr() { # NAME MODE FILESIZE RDEVMAJ RDEVMIN NLINK
	ino=$((ino + 1))
	namesize=$(( ${#1} + 1 ))
	printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
		"$ino" "$2" 0 0 "$6" 0 "$3" 0 0 "$4" "$5" "$namesize" 0
	printf '%s\0' "$1"
	cpio_pad $((110 + namesize))
}
cpio_dir()  { cpio_hdr "$1" $((0040000 | 0755)) 0 0 0 2; }
cpio_node() { cpio_hdr "$1" $((0020000 | 0600)) 0 "$2" "$3" 1; } # NAME MAJ MIN
cpio_file() { # NAME MODE SRC
	fsize=$(wc -c <"$3" | tr -d ' ')
	cpio_hdr "$1" $((0100000 | $2)) "$fsize" 0 0 1
	cat "$3"
	cpio_pad "$fsize"
}

mkdir "$tmpdir/mods"
: >"$tmpdir/load-order"
orig_total=0 total=0 count=0
exec 3>"$tmpdir/initrd"
{
	for d in dev proc sys run tmp; do cpio_dir "$d"; done
	[ "$nomods" -eq 1 ] || for d in lib lib/modules "lib/modules/$kver"; do cpio_dir "$d"; done
	cpio_node dev/console 5 1
	cpio_file init 0755 "$init"
	while IFS= read -r rel; do
		name=${rel##*/}; name=${name%.ko}
		case $rel in *.ko) ;; *) die "$rel: compressed modules are not supported" ;; esac
		strip_sig "$moddir/$rel" "$tmpdir/mods/$name.ko"
		cpio_file "lib/modules/$kver/$name.ko" 0644 "$tmpdir/mods/$name.ko"
		echo "/lib/modules/$kver/$name.ko" >>"$tmpdir/load-order"
		orig_total=$((orig_total + $(wc -c <"$moddir/$rel")))
		total=$((total + $(wc -c <"$tmpdir/mods/$name.ko")))
		count=$((count + 1))
	done <"$tmpdir/modlist"
	[ "$nomods" -eq 1 ] || cpio_file lib/modules/load-order 0644 "$tmpdir/load-order"
	ino=0
	cpio_hdr TRAILER!!! 0 0 0 0 1
} >&3
exec 3>&-
# pad the archive to a 512-byte multiple, as cpio(1) does
size=$(wc -c <"$tmpdir/initrd" | tr -d ' ')
r=$(( (512 - size % 512) % 512 ))
[ "$r" -eq 0 ] || head -c "$r" /dev/zero >>"$tmpdir/initrd"

if [ "$nomods" -eq 1 ]; then
	echo "$me: no modules (-N)" >&2
else
	echo "$me: $count modules for $kver, $orig_total bytes signed -> $total bytes stripped" >&2
	echo "$me: load order: $(sed 's|.*/||; s|\.ko$||' "$tmpdir/load-order" | tr '\n' ' ')" >&2
fi
mv -f "$tmpdir/initrd" "$out.tmp.$$"
chmod 0644 "$out.tmp.$$"
mv -f "$out.tmp.$$" "$out"
echo "$me: wrote $out ($(wc -c <"$out" | tr -d ' ') bytes)" >&2
