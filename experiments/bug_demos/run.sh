#!/usr/bin/env bash
# Shows that the CI regression entries catch real bugs: for each patch here, applies it to
# a scratch worktree of HEAD, runs the method's CI entry's regression test and prints
# its checks. Every patched run should FAIL; the unpatched tests pass in `bazel test //...`.
# Patches to MoCo v3 also run the ViT lockstep test (//tools:mocov3_vit_lockstep_test,
# moco-v3's own code); patches to the ViT path (vit_*) run that and the ViT unit tests
# only, since the CI entry trains a ResNet.
#
#   experiments/bug_demos/run.sh [patch names...]      (default: all; ~6 min each on 2 cores)
#
# Needs ../shared/datasets/imagenette beside the checkout (the tests skip without it).
# Results: experiments/bug_demos/results.txt of the worktree, copied to $OUT (default
# /tmp/ssl_bug_demos/results.txt).
set -euo pipefail
repo="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
demos="$repo/experiments/bug_demos"
work="${WORK:-/tmp/ssl_bug_demos}"
out="${OUT:-$work/results.txt}"
if [[ ! -d "$repo/../shared/datasets/imagenette" ]]; then
  echo "bug_demos: $repo/../shared/datasets/imagenette is absent; the regression tests would skip." >&2
  exit 1
fi
mkdir -p "$work"
tree="$work/tree"
[[ -L "$work/shared" || -e "$work/shared" ]] || ln -s "$(readlink -f "$repo/../shared")" "$work/shared"
if [[ ! -d "$tree" ]]; then git -C "$repo" worktree add -q --detach "$tree" HEAD; fi
git -C "$tree" checkout -q -f --detach "$(git -C "$repo" rev-parse HEAD)"
names=("$@")
if [[ ${#names[@]} -eq 0 ]]; then
  for p in "$demos"/*.patch; do names+=("$(basename "$p" .patch)"); done
fi
: > "$out"
for name in "${names[@]}"; do
  method="${name%%_*}"
  [[ "$method" == "m2t" ]] && method=m2teacher
  git -C "$tree" checkout -q -f -- .
  if ! git -C "$tree" apply "$demos/$name.patch"; then
    echo "$name: the patch no longer applies to HEAD" | tee -a "$out"
    continue
  fi
  echo "=== $name ($(date +%T))"
  log="$work/$name.log"
  # Each method's CI entry (Momentum^2 Teacher needs 10 epochs to learn visibly).
  entry=imagenette_4ep
  [[ "$method" == "m2teacher" ]] && entry=imagenette_10ep
  case "$method" in
    vit) targets=(//tools:mocov3_vit_lockstep_test //ssl/backbones:vit_test) ;;
    mocov3) targets=("//experiments/$method:${entry}_regression_test" //tools:mocov3_vit_lockstep_test) ;;
    *) targets=("//experiments/$method:${entry}_regression_test") ;;
  esac
  (cd "$tree" && bazel test "${targets[@]}" --keep_going \
     --test_output=all --cache_test_results=no > "$log" 2>&1) && status=PASSED || status=FAILED
  {
    echo "$name: $status (${targets[*]})"
    grep -E "reference .* (ok|FAIL)$|passed, [0-9]+ failed|^//.* (PASSED|FAILED) in|^\[  FAILED  \] [A-Za-z]" "$log" |
      sort -u | sed 's/^/    /' || true
  } | tee -a "$out"
done
git -C "$tree" checkout -q -f -- .
echo "results: $out"
