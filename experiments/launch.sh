#!/usr/bin/env bash
# Runs //tools:run_experiment with an entry's declared flags (passed by its sh_binary's
# args) followed by the caller's own (e.g. --record, --data=...). Later flags win.
set -euo pipefail
runfiles="${RUNFILES_DIR:-$0.runfiles}"
exec "$runfiles/ssl/tools/run_experiment" "$@"
