#!/usr/bin/env bash
set -euo pipefail
runfiles="${RUNFILES_DIR:-$0.runfiles}"
exec "$runfiles/ssl/results/report_generator" --entries="$runfiles/ssl/$1"
