#!/usr/bin/env bash
# Checks a recorded results file against its entry's references:
#   recorded_test.sh <results.json> --check=metric:reference:tolerance ...
set -euo pipefail
runfiles="${RUNFILES_DIR:-$0.runfiles}"
result="$1"; shift
exec "$runfiles/ssl/experiments/check_result" --result="$result" "$@"
