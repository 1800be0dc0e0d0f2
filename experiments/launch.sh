#!/usr/bin/env bash
# Runs //tools:run_experiment with an entry's declared flags (passed by its sh_binary's
# args) followed by the caller's own (e.g. --record, --data=...). Later flags win.
set -euo pipefail
runfiles="${RUNFILES_DIR:-$0.runfiles}"
# One BLAS kernel set on every x86-64 machine with AVX2, whatever the shell exports:
# OpenBLAS picks kernels by CPU, and early training is chaotic enough to turn their
# rounding differences into different curves (M2T's 4-epoch loss: 1.296 with the Haswell
# kernels, 1.361 with the ones picked on the same machine). The recorded entries used these.
if grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
  export OPENBLAS_CORETYPE=Haswell
fi
exec "$runfiles/ssl/tools/run_experiment" "$@"
