#!/usr/bin/env bash
# Runs an experiment entry for real inside `bazel test` and checks its metrics:
#   regression_test.sh <run_experiment flags...> -- --check=metric:reference:tolerance ...
set -euo pipefail
runfiles="${RUNFILES_DIR:-$0.runfiles}"
flags=()
while [[ $# -gt 0 && "$1" != "--" ]]; do flags+=("$1"); shift; done
shift || true
"$runfiles/ssl/tools/run_experiment" "${flags[@]}" --work_dir="$TEST_TMPDIR/run" --print_freq=1000
exec "$runfiles/ssl/experiments/check_result" --result="$TEST_TMPDIR/run/results.json" "$@"
