#!/usr/bin/env bash
# Installs every Debian package that building, testing and benchmarking this project
# needs, and points the system BLAS at OpenBLAS (LibTorch's matmul is ~50x slower on the
# reference BLAS). Idempotent: when everything is present it installs and changes nothing.
set -euo pipefail

readonly PACKAGES=(
  bazel-bootstrap          # the build tool (4.2.3), wired offline by WORKSPACE
  bazel-rules-java         # rules_java, which Bazel 4 asks for even in a C++-only build
  g++
  libtorch-dev             # LibTorch 1.13 (CPU), tensors + autograd + c10d/Gloo
  libgloo-dev              # headers of the Gloo library c10d's CPU process group is built on
  libopenblas0-openmp      # optimized BLAS behind LibTorch's matmul
  libdnnl-dev              # oneDNN headers: its Winograd convolutions (--winograd)
  libopencv-core-dev
  libopencv-imgcodecs-dev  # JPEG/PNG decode (libjpeg-turbo underneath)
  libopencv-imgproc-dev
  libjpeg62-turbo-dev
  libpng-dev
  zlib1g-dev               # inflating MATLAB v5 files (Oxford Flowers-102's labels)
  libabsl-dev
  libgoogle-glog-dev
  libgflags-dev
  libgtest-dev
  libgmock-dev
  libbenchmark-dev
  nlohmann-json3-dev       # metrics, results and experiment JSON
  libyaml-cpp-dev          # VISSL's YAML configs (the SwAV program)
  python3-torch            # independent reader for checkpoint interoperability tests
  python3-torchvision      # the PyTorch baseline the pipeline benchmark is compared with
  python3-matplotlib       # //tools:plot curves and the report's figures
  python3-scipy            # writes MATLAB files for the Flowers-102 reader's test
)

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} > 0)); then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup.sh: apt-get not found; install these Debian 12 packages by hand: ${missing[*]}" >&2
    exit 1
  fi
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      SUDO=(sudo -n)
    else
      echo "setup.sh: must run as root (or with passwordless sudo) to install: ${missing[*]}" >&2
      exit 1
    fi
  else
    SUDO=()
  fi
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup.sh: all ${#PACKAGES[@]} packages already installed"
fi

# libopenblas0-openmp registers itself as the libblas.so.3 alternative with a higher
# priority than the reference BLAS; make sure nobody pinned it back by hand.
blas_link=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)
if [[ "$blas_link" != *openblas* ]]; then
  openblas_path=$(update-alternatives --list libblas.so.3-x86_64-linux-gnu 2>/dev/null | grep openblas | head -n 1 || true)
  if [[ -z "$openblas_path" ]]; then
    echo "setup.sh: OpenBLAS is installed but not registered as libblas.so.3; matmul will be slow" >&2
    exit 1
  fi
  echo "setup.sh: selecting $openblas_path as libblas.so.3"
  ${SUDO[@]+"${SUDO[@]}"} update-alternatives --set libblas.so.3-x86_64-linux-gnu "$openblas_path"
fi
