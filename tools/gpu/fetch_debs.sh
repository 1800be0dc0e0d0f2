#!/usr/bin/env bash
# Run here (Debian 12), before the GPU call: downloads the Debian packages the GPU
# machine lacks into .gpu_carry/debs (ignored by git; carried with the run's `carry`).
# The GPU machine has CUDA, PyTorch's LibTorch, CMake and ninja, but no Abseil, glog,
# gflags, yaml-cpp, libjpeg-turbo headers, nlohmann-json, GoogleTest or Google Benchmark;
# and PyTorch's wheel may leave out the Gloo headers that c10d's ProcessGroupGloo.hpp
# includes (the build prefers the wheel's own when it has them).
# OpenCV is left out (its ~140 shared libraries exceed the 64 MiB a call can carry); the
# GPU build reads JPEG files only.
set -euo pipefail
cd "$(dirname "$0")/../.."
packages=(
  libabsl-dev libabsl20220623
  libgoogle-glog-dev libgoogle-glog0v6 libunwind8 libunwind-dev liblzma5
  libgflags-dev libgflags2.2
  libyaml-cpp-dev libyaml-cpp0.7
  libjpeg62-turbo-dev libjpeg62-turbo
  nlohmann-json3-dev
  libgloo-dev
  libgtest-dev libgmock-dev
  libbenchmark-dev libbenchmark1debian
  zlib1g-dev zlib1g
  libstdc++6 libgcc-s1
)
mkdir -p .gpu_carry/debs
cd .gpu_carry/debs
rm -f ./*.deb
if ! apt-get download "${packages[@]}" >/dev/null 2>&1; then
  echo "apt-get download failed for one of: ${packages[*]}" >&2
  exit 1
fi
du -sh . | awk '{print "downloaded " $1 " of Debian packages into .gpu_carry/debs"}'
