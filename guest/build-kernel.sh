#!/bin/sh
# build-kernel.sh: build cocoon's lean guest kernel, an uncompressed PVH
# vmlinux with everything the guest needs built in (guest/kernel.config), from
# the Linux source Debian ships (package linux-source-6.1).
#
# usage: build-kernel.sh [-s SOURCE] [-j JOBS] CONFIG WORKDIR OUTPUT
#   -s SOURCE  a linux-source tarball (.tar.xz/.tar.bz2/.tar.gz) or an unpacked
#              tree (default: the newest /usr/src/linux-source-*.tar.*)
#   -j JOBS    parallel make jobs (default: number of CPUs)
#   CONFIG     the config fragment (guest/kernel.config)
#   WORKDIR    where the source is unpacked and built; kept, so that a second
#              run with the same source and config only relinks what changed
#   OUTPUT     the vmlinux to write; OUTPUT.config gets the full .config
#
# cocoon's own kernel patches, patches/*.patch next to CONFIG (applied with
# patch -p1, in name order), go onto the source first: into WORKDIR's copy of
# a tarball (unpacked again when a patch applied there is changed or gone),
# or into an unpacked tree given with -s, unless already there.
#
# The config is `make allnoconfig` with CONFIG applied (KCONFIG_ALLCONFIG), and
# every `CONFIG_X=value` line of CONFIG must come out of Kconfig unchanged: a
# symbol Kconfig dropped (missing dependency, renamed in this source) fails the
# build instead of silently producing a kernel without it. The result must
# carry the Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY), which QEMU's
# microvm needs to boot it directly.
set -eu

me=${0##*/}
die() { echo "$me: $*" >&2; exit 1; }

src='' jobs=$(nproc 2>/dev/null || echo 2)
while getopts s:j: opt; do
	case $opt in
	s) src=$OPTARG ;;
	j) jobs=$OPTARG ;;
	*) echo "usage: $me [-s SOURCE] [-j JOBS] CONFIG WORKDIR OUTPUT" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 3 ] || { echo "usage: $me [-s SOURCE] [-j JOBS] CONFIG WORKDIR OUTPUT" >&2; exit 2; }
config=$1 work=$2 out=$3
[ -r "$config" ] || die "cannot read config fragment '$config'"
case $jobs in ''|*[!0-9]*) die "bad -j '$jobs'" ;; esac

if [ -z "$src" ]; then
	src=$(ls -1 /usr/src/linux-source-*.tar.* 2>/dev/null | sort -V | tail -n 1)
	[ -n "$src" ] || die "no /usr/src/linux-source-*.tar.*: apt-get install linux-source-6.1, or use -s"
fi
for tool in make gcc bc flex bison readelf patch; do
	command -v $tool >/dev/null 2>&1 ||
		die "'$tool' is required (apt-get install build-essential bc flex bison libelf-dev libssl-dev patch)"
done

mkdir -p "$work"
work=$(cd "$work" && pwd)
config=$(cd "$(dirname "$config")" && pwd)/${config##*/}

# ---- the source tree ---------------------------------------------------------
if [ -d "$src" ]; then
	tree=$(cd "$src" && pwd)
else
	[ -r "$src" ] || die "cannot read source '$src'"
	# unpacked once per tarball (name, size and mtime), into WORKDIR/src
	stamp="$(basename "$src") $(stat -c '%s %Y' "$src")"
	tree=$work/src
	if [ ! -f "$work/src.stamp" ] || [ "$(cat "$work/src.stamp")" != "$stamp" ]; then
		rm -rf "$tree" "$work/src.stamp" "$work/src.tmp" "$work/patches.applied"
		mkdir "$work/src.tmp"
		echo "$me: unpacking $src" >&2
		tar -xf "$src" -C "$work/src.tmp" --strip-components=1 ||
			die "cannot unpack $src"
		mv "$work/src.tmp" "$tree"
		echo "$stamp" >"$work/src.stamp"
	fi
fi
[ -f "$tree/Makefile" ] && [ -d "$tree/arch/x86" ] || die "'$tree' is not a Linux source tree"

# ---- cocoon's patches ------------------------------------------------------------
patchdir=$(dirname "$config")/patches
applied=$work/patches.applied # "sha256  name" of each patch applied to WORKDIR/src
: >"$work/patches.want"
for p in "$patchdir"/*.patch; do
	[ -f "$p" ] || continue
	echo "$(sha256sum <"$p" | cut -d' ' -f1)  ${p##*/}" >>"$work/patches.want"
done
if [ "$tree" = "$work/src" ] && [ -s "$applied" ] && grep -qvxFf "$work/patches.want" "$applied"; then
	# a patch applied earlier changed or went away: start from the tarball again
	rm -f "$work/src.stamp" "$applied"
	exec sh "$0" ${src:+-s "$src"} -j "$jobs" "$config" "$work" "$out"
fi
while read -r sum name; do
	p=$patchdir/$name
	if patch -d "$tree" -p1 -R -s -f --dry-run <"$p" >/dev/null 2>&1; then
		: # already applied
	elif patch -d "$tree" -p1 -s -f -N --no-backup-if-mismatch <"$p" >"$work/patch.log" 2>&1; then
		echo "$me: applied $name" >&2
	else
		cat "$work/patch.log" >&2
		die "patch $p does not apply to $tree"
	fi
	[ "$tree" != "$work/src" ] || grep -qxF "$sum  $name" "$applied" 2>/dev/null ||
		echo "$sum  $name" >>"$applied"
done <"$work/patches.want"

# ---- configuration -------------------------------------------------------------
obj=$work/obj
mkdir -p "$obj"
kmake() { make -s -C "$tree" O="$obj" ARCH=x86_64 "$@"; }
kmake KCONFIG_ALLCONFIG="$config" allnoconfig >"$work/config.log" 2>&1 ||
	{ cat "$work/config.log" >&2; die "allnoconfig failed"; }
bad=0
while IFS= read -r line; do
	case $line in
	CONFIG_*=*) ;;
	*) continue ;;
	esac
	sym=${line%%=*} want=${line#*=}
	got=$(grep -E "^$sym=" "$obj/.config" | head -n 1 | cut -d= -f2-) || true
	if [ "$got" != "$want" ]; then
		echo "$me: $sym=$want did not survive Kconfig (got '${got:-not set}')" >&2
		bad=1
	fi
done <"$config"
[ "$bad" -eq 0 ] || die "the config fragment does not apply to $tree"

# ---- build -------------------------------------------------------------------------
echo "$me: building vmlinux with $jobs jobs in $obj" >&2
if ! kmake -j"$jobs" vmlinux >"$work/build.log" 2>&1; then
	tail -n 40 "$work/build.log" >&2
	die "kernel build failed (full log: $work/build.log)"
fi
readelf -nW "$obj/vmlinux" 2>/dev/null | grep -q 'Xen.*0x00000012' ||
	die "$obj/vmlinux has no Xen PVH entry note (CONFIG_PVH missing?)"

mkdir -p "$(dirname "$out")"
cp -f "$obj/vmlinux" "$out.tmp.$$"
# Symbols are only for debugging (WORKDIR/obj/vmlinux keeps them), and QEMU
# reads and sorts the symbol table of every kernel it loads: --strip-all
# takes 5-8 ms off each VM start. Notes (the PVH entry) stay.
strip --strip-all "$out.tmp.$$" 2>/dev/null || true
mv -f "$out.tmp.$$" "$out"
cp -f "$obj/.config" "$out.config"
echo "$me: wrote $out ($(wc -c <"$out" | tr -d ' ') bytes, $(kmake -s kernelrelease 2>/dev/null || echo '?'))" >&2
