#!/usr/bin/env bash
# Runs an experiment entry for real inside `bazel test` and checks its metrics:
#   regression_test.sh <shared dataset or -> <run_experiment flags...> -- --check=metric:ref:tol ...
# A shared dataset (e.g. imagenette) is looked up in ../shared/datasets beside the
# source tree. Where it is absent (a user's machine) Bazel reports the test SKIPPED
# without running it (experiments/shared_datasets.bzl); it runs without its data only
# where SSL_REQUIRE_SHARED_DATA asked for them (.ci/run), and then fails here.
set -euo pipefail
runfiles="${RUNFILES_DIR:-$0.runfiles}"
# One BLAS kernel set on every x86-64 machine with AVX2, whatever the shell exports:
# OpenBLAS picks kernels by CPU, and early training is chaotic enough to turn their
# rounding differences into different curves (M2T's 4-epoch loss: 1.296 with the Haswell
# kernels, 1.361 with the ones picked on the same machine). The recorded entries used these.
if grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
  export OPENBLAS_CORETYPE=Haswell
fi
shared="$1"; shift
flags=()
while [[ $# -gt 0 && "$1" != "--" ]]; do flags+=("$1"); shift; done
shift || true
if [[ "$shared" != "-" ]]; then
  source_root="$(dirname "$(readlink -f "$runfiles/ssl/WORKSPACE")")"
  data="$source_root/../shared/datasets/$shared"
  if [[ ! -d "$data" ]]; then
    echo "FAILED: $data is not on this machine, and SSL_REQUIRE_SHARED_DATA (set by .ci/run) requires it" >&2
    exit 1
  fi
  flags+=("--data=$data")
fi
"$runfiles/ssl/tools/run_experiment" "${flags[@]}" --work_dir="$TEST_TMPDIR/run" --print_freq=1000
exec "$runfiles/ssl/experiments/check_result" --result="$TEST_TMPDIR/run/results.json" "$@"
