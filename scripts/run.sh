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
[ -f Makefile ] || ../configure -q --prefix=/usr/local --sysconfdir=/etc
make -j"$jobs" >/dev/null || make
make install >/dev/null
# The guest kernel + initrd (Debian's cloud kernel, our initrd) for pod VMs.
if make -q guest 2>/dev/null || make -j"$jobs" guest >/dev/null 2>&1; then
  make guest-install >/dev/null 2>&1 || true
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
cat <<MSG

cocoond is serving the CRI on unix://$sock. Try:
  crictl --runtime-endpoint unix://$sock images
  cocoonctl info
(Pods: RunPodSandbox is not implemented yet, so there is no demo pod; see README.)
MSG
wait $pid
