#!/usr/bin/env bash
# The GPU machine's build and tests against PyTorch 2.x, on a machine without a GPU.
#
#   sudo tools/gpu/check_on_pytorch2.sh [--nccl] [root_dir]     (default /tmp/ssl_pytorch2)
#
# Debian 12 has LibTorch 1.13 only, and the GPU machine's PyTorch is 2.x; Debian 13
# (trixie) packages LibTorch 2.6. This makes a trixie chroot under root_dir with its
# LibTorch 2.6 (CPU), Python torch/torchvision 2.6, OpenBLAS, CMake and ninja, copies
# the working tree and the Debian 12 packages of tools/gpu/fetch_debs.sh in, and runs
# `tools/gpu/build_and_bench.sh build` and `test` there exactly as on the GPU machine
# (the CUDA tests skip). --nccl also compiles the NCCL process group (-fsyntax-only)
# against trixie's CUDA LibTorch 2.6 headers with CUDA 12.4 and NCCL headers (~1 GB of
# downloads). A development check: nothing the project builds or tests depends on it.
# Needs root (debootstrap, chroot, mount) and the Debian archive this machine's apt
# configuration names (its first non-security URI, in sources.list.d or sources.list).
set -euo pipefail
cd "$(dirname "$0")/../.."
nccl=0
if [ "${1:-}" = "--nccl" ]; then
  nccl=1
  shift
fi
root="${1:-/tmp/ssl_pytorch2}"
log() { echo "[pytorch2 $(date +%H:%M:%S)] $*"; }
if [ "$(id -u)" != 0 ]; then
  echo "check_on_pytorch2.sh needs root (debootstrap, chroot, mount)" >&2
  exit 2
fi
if ! command -v debootstrap >/dev/null; then
  apt-get install -y -q debootstrap >/dev/null
fi
# The archive this machine's apt already uses (its main one, not the security archive):
# the chroot's packages come from wherever this machine's come from.
apt_archive() {
  local uri
  uri="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk '/^URIs:/ { for (i = 2; i <= NF; ++i) if ($i !~ /security/) { print $i; exit } }')"
  if [ -z "$uri" ]; then
    uri="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '$1 == "deb" { u = ($2 ~ /^\[/) ? $3 : $2; if (u !~ /security/) { print u; exit } }')"
  fi
  [ -n "$uri" ] || { echo "check_on_pytorch2.sh: no Debian archive in this machine's apt configuration" >&2; exit 2; }
  echo "${uri%/}"
}
archive="$(apt_archive)"
in_root() { chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive bash -c "$1"; }

if [ ! -x "$root/usr/bin/cmake" ]; then
  log "debootstrap trixie into $root"
  debootstrap --variant=minbase --include=g++,cmake,ninja-build,python3,ca-certificates \
    trixie "$root" "$archive" >"$root.debootstrap.log" 2>&1 || {
    tail -5 "$root.debootstrap.log"
    exit 1
  }
fi
mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
trap 'umount "$root/proc" 2>/dev/null || true' EXIT
cp /etc/resolv.conf "$root/etc/resolv.conf"
echo "deb $archive trixie main contrib non-free" >"$root/etc/apt/sources.list"
rm -f "$root/etc/apt/sources.list.d/"*
log "LibTorch 2.6, Python torch/torchvision, OpenBLAS"
in_root "apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends \
  libtorch-dev python3-torch python3-torchvision libopenblas0-pthread >/tmp/apt.log 2>&1" || {
  tail -5 "$root/tmp/apt.log"
  exit 1
}

log "copying the working tree and the carried Debian 12 packages"
tools/gpu/fetch_debs.sh
rm -rf "$root/src/ssl"
mkdir -p "$root/src/ssl"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$root/src/ssl"
mkdir -p "$root/src/ssl/.gpu_carry"
cp -r .gpu_carry/debs "$root/src/ssl/.gpu_carry/"

status=0
in_root "cd /src/ssl && SSL_TORCH_CMAKE_PREFIX=/usr/lib/x86_64-linux-gnu/cmake \
  tools/gpu/build_and_bench.sh build /tmp/pytorch2_out" || status=1
if [ $status = 0 ]; then
  in_root "cd /src/ssl && tools/gpu/build_and_bench.sh test /tmp/pytorch2_out" || status=1
fi

if [ $nccl = 1 ]; then
  log "NCCL process group against the CUDA LibTorch 2.6 headers (CUDA 12.4, NCCL)"
  in_root "mkdir -p /tmp/cuda_debs /opt/cuda_headers && cd /tmp/cuda_debs && \
    apt-get download -q libtorch-cuda-dev nvidia-cuda-dev libnccl-dev libcu++-dev >/dev/null 2>&1 && \
    for deb in *.deb; do dpkg-deb --fsys-tarfile \$deb | tar -x -C /opt/cuda_headers --wildcards '*include*'; done" || {
    echo "cannot download the CUDA header packages" >&2
    status=1
  }
  include=/opt/cuda_headers/usr/include
  in_root "cd /src/ssl && g++ -std=c++17 -fsyntax-only -DUSE_C10D_GLOO -DUSE_C10D_NCCL -I. \
    -isystem $include -isystem $include/torch/csrc/api/include -isystem $include/libcudacxx \
    -isystem /src/ssl/.gpu_carry/prefix/usr/include ssl/distributed/process_group.cc" &&
    log "ssl/distributed/process_group.cc compiles with USE_C10D_NCCL" || status=1
fi
log "results in $root/tmp/pytorch2_out"
exit $status
