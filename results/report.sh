#!/usr/bin/env bash
# bazel run //results:report: rewrites results/README.md and results/figures/<method>.png.
set -euo pipefail
runfiles="${RUNFILES_DIR:-$0.runfiles}"
"$runfiles/ssl/results/report_generator" --entries="$runfiles/ssl/$1"
if [[ -n "${BUILD_WORKSPACE_DIRECTORY:-}" ]]; then
  "$runfiles/ssl/tools/plot" --results="$BUILD_WORKSPACE_DIRECTORY/results" \
    --entries="$runfiles/ssl/$1" --out_dir="$BUILD_WORKSPACE_DIRECTORY/results/figures" >&2
fi
