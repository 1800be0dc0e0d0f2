#!/usr/bin/env bash
# Regenerates tools/gpu/sources.cmake from the Bazel targets (after a BUILD change).
set -euo pipefail
cd "$(dirname "$0")/../.."
bazel build //tools/gpu:cmake_sources >/dev/null 2>&1 || bazel build //tools/gpu:cmake_sources
cp -f bazel-bin/tools/gpu/cmake_sources.cmake tools/gpu/sources.cmake
chmod 644 tools/gpu/sources.cmake
echo "wrote tools/gpu/sources.cmake"
