#!/usr/bin/env bash
# //tools:plot: tools/plot.py under Debian's Python (its python3-matplotlib).
set -euo pipefail
runfiles="${RUNFILES_DIR:-$0.runfiles}"
script="$runfiles/ssl/tools/plot.py"
[[ -f "$script" ]] || script="$(dirname "$0")/plot.py"
exec /usr/bin/python3 "$script" "$@"
