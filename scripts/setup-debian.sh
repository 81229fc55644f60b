#!/usr/bin/env bash
# Installs every Debian 12 package that cocoon's build, guest image, tests and
# benchmarks need. Idempotent; safe to run on a fresh machine as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

BUILD_PKGS=(
  build-essential autoconf automake libtool pkg-config
  protobuf-c-compiler libprotobuf-c-dev protobuf-compiler
  libgrpc-dev libcurl4-openssl-dev libarchive-dev libssl-dev
  libnl-3-dev libnl-route-3-dev libseccomp-dev libjson-c-dev
  libcmocka-dev zlib1g-dev
)
TEST_PKGS=(
  python3 python3-grpcio python3-grpc-tools python3-pytest python3-protobuf python3-websocket
  busybox-static iproute2 iptables procps psmisc
  clang libclang-rt-14-dev
)
GUEST_PKGS=(
  # virtiofsd ships inside qemu-system-common on Debian 12 (/usr/lib/qemu/virtiofsd)
  qemu-system-x86 linux-image-cloud-amd64 cpio kmod lz4
  # cocoon's lean guest kernel (guest/build-kernel.sh) is built from this (and its patches)
  linux-source-6.1 bc bison flex libelf-dev xz-utils patch
)
PEER_PKGS=(
  containerd runc skopeo docker-registry containernetworking-plugins
)

want=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}")
case "${1:-all}" in
  build) want=("${BUILD_PKGS[@]}") ;;
  test) ;;
  all) want+=("${GUEST_PKGS[@]}" "${PEER_PKGS[@]}") ;;
  *) echo "usage: $0 [build|test|all]" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "setup: all packages present"
