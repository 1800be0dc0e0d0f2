#!/usr/bin/env bash
# The checked-in source lists of the GPU machine's CMake build must equal what the Bazel
# targets generate; tools/gpu/update_sources.sh rewrites them after a BUILD change.
set -euo pipefail
generated="$1"
checked_in="$2"
if ! diff -u "$checked_in" "$generated"; then
  echo "tools/gpu/sources.cmake is out of date with the BUILD files: run tools/gpu/update_sources.sh" >&2
  exit 1
fi
echo "tools/gpu/sources.cmake matches the Bazel targets"
