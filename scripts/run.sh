#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root), builds and installs cocoon,
# and runs cocoond in the foreground on /run/cocoon/cocoon.sock.
#   COCOON_SKIP_SETUP=1   don't run apt (packages already present)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
[ "${COCOON_SKIP_SETUP:-0}" = 1 ] || bash scripts/setup-debian.sh all

jobs=$(nproc 2>/dev/null || echo 2)
autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
mkdir -p build
cd build
# The guest kernel/initrd go where cocoond looks by default (/usr/share/cocoon).
[ -f Makefile ] || ../configure -q --prefix=/usr/local --sysconfdir=/etc --with-sharedir=/usr/share/cocoon
make -j"$jobs" >/dev/null || make
make install >/dev/null
# The guest kernel + initrd for pod VMs: cocoon's lean kernel, built from
# Debian's linux-source-6.1 (the first time takes ~8 min on 2 cores); should
# that fail, Debian's cloud kernel with its modules.
echo "cocoon: make guest (lean guest kernel; the first build takes minutes)"
if make guest >guest.out 2>&1 ||
   { tail -20 guest.out; echo "cocoon: lean kernel failed, using Debian's cloud kernel";
     make guest GUEST_KERNEL=debian >guest.out 2>&1; }; then
  make guest-install >/dev/null
else
  tail -20 guest.out
  echo "cocoon: no guest kernel: pods cannot start (see build/guest.out)" >&2
fi

sock=/run/cocoon/cocoon.sock
echo "cocoon: starting cocoond on unix://$sock (Ctrl-C stops it)"
/usr/local/sbin/cocoond &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid' INT TERM
for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.1; done
/usr/local/bin/cocoonctl version || true
/usr/local/bin/cocoonctl info | head -3 || true
# A demo image built here from Debian's static busybox (no network), loaded
# into cocoond's store through its socket.
demo=$(mktemp -d /tmp/cocoon-demo.XXXXXX)
/usr/bin/python3 "$top/tests/integration/oci_layout.py" "$demo" latest >/dev/null
/usr/local/bin/cocoonctl image import --name cocoon.local/demo/busybox "$demo"
rm -rf "$demo"
/usr/local/bin/cocoonctl image ls
# The demo pod: one VM (QEMU; KVM when /dev/kvm is usable) running the demo
# image's busybox, printing a line every 5 s into its CRI log.
ctl=/usr/local/bin/cocoonctl
for old in $($ctl --json pod ls 2>/dev/null | /usr/bin/python3 -c \
    'import json,sys; [print(p["id"]) for p in json.load(sys.stdin) if p["name"] == "demo"]' 2>/dev/null); do
  $ctl pod rm "$old" >/dev/null 2>&1 || true
done
if out=$($ctl run --name demo cocoon.local/demo/busybox -- /bin/busybox sh -c \
    'i=0; while true; do i=$((i+1)); echo "hello from cocoon ($i)"; /bin/busybox sleep 5; done'); then
  echo "$out"
  ctr=$(echo "$out" | awk '/^container/ {print $2}')
  sleep 2
  $ctl pod ls
  $ctl ps
  $ctl logs "$ctr" | tail -n 3
  demo_msg="The demo pod runs: cocoonctl ps; cocoonctl logs $ctr; cocoonctl exec $ctr -- /bin/busybox uname -a"
else
  demo_msg="The demo pod did not start (see cocoond's log above)."
fi
cat <<MSG

cocoond is serving the CRI on unix://$sock.
$demo_msg
Also: crictl --runtime-endpoint unix://$sock pods   (if crictl is installed)
Ctrl-C stops cocoond; the pod's VM keeps running until removed (cocoonctl pod rm ID).
MSG
wait $pid
