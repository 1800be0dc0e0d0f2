#!/usr/bin/env bash
# Data pipelines, our C++ vs torchvision + PIL on the same images, in one run, on one
# core each: MoCo v3's two views and SwAV's 2x224 + 6x96 multi-crop; and the threaded
# loader with 1 and 2 workers against that one-thread pipeline.
#
#   tools/benchmark_pipeline.sh [ImageFolder root]    (e.g. ../shared/datasets/imagenette/train)
#
# ImageNet-sized photos (500x375, quality 90):
#   /usr/bin/python3 tools/make_imagenet_sized_folder.py ../shared/datasets/imagenette/train /tmp/imagenet_sized 50
#   tools/benchmark_pipeline.sh /tmp/imagenet_sized
#
# Without a root both use a synthetic 224 px ImageFolder. Writes the numbers to
# benchmark_pipeline.json in the current directory as well.
set -euo pipefail
cd "$(dirname "$0")/.."
root="${1:-}"
if [[ -n "$root" ]]; then root="$(cd "$root" && pwd)"; fi
bazel build -c opt //ssl/data:pipeline_benchmark >/dev/null 2>&1 || bazel build //ssl/data:pipeline_benchmark
binary=bazel-bin/ssl/data/pipeline_benchmark
# Three rounds of every row in random order, medians reported: the one-thread rows and
# the loader rows they are compared with share the machine's state.
args=(--benchmark_out=benchmark_pipeline.json --benchmark_out_format=json
      --benchmark_repetitions=3 --benchmark_enable_random_interleaving=true
      --benchmark_report_aggregates_only=true)
if [[ -n "$root" ]]; then args+=("--data=$root"); fi
"$binary" "${args[@]}"
# The loader against its own pipeline: images/s per worker over the one-thread rate of
# the same views (goal >= 0.90), and 2 workers over 1 (goal >= 1.8).
/usr/bin/python3 - <<'PY'
import json
rows = {b["run_name"]: b["items_per_second"] for b in json.load(open("benchmark_pipeline.json"))["benchmarks"]
        if b.get("aggregate_name", "median") == "median"}
def rate(prefix):
    return [v for k, v in rows.items() if k.startswith(prefix)][0]
for name, pipeline, loader in [("MoCo v3 two views", "BM_MocoV3TwoViewsOneThread", "BM_MocoV3Loader"),
                               ("SwAV multi-crop", "BM_SwavMultiCropOneThread", "BM_SwavMultiCropLoader")]:
    one, w1, w2 = rate(pipeline), rate(loader + "/1/"), rate(loader + "/2/")
    print(f"loader, {name}: one-thread pipeline {one:.1f} images/s; 1 worker {w1:.1f} "
          f"({w1 / one:.2f} of it), 2 workers {w2:.1f} ({w2 / 2 / one:.2f} per worker, "
          f"{w2 / w1:.2f}x one worker)")
PY
if [[ -z "$root" ]]; then root="${TMPDIR:-/tmp}/ssl_pipeline_benchmark_data/train"; fi
if ! /usr/bin/python3 -c 'import torchvision' 2>/dev/null; then
  echo "torchvision is not installed (tools/setup.sh installs it): no baseline ratio"; exit 0
fi
declare -A ours_rate base_rate
for recipe in moco multicrop decode; do
  case $recipe in
    moco) pattern=MocoV3TwoViewsOneThread ;;
    multicrop) pattern=SwavMultiCropOneThread ;;
    decode) pattern=ReadAndDecodeOneThread ;;
  esac
  ours=$(/usr/bin/python3 -c 'import json,sys; b=json.load(open("benchmark_pipeline.json"))["benchmarks"]; print([x for x in b if sys.argv[1] in x["name"] and x.get("aggregate_name", "median") == "median"][0]["items_per_second"])' "$pattern")
  baseline_line=$(/usr/bin/python3 tools/torchvision_pipeline_baseline.py "$root" 10 "$recipe")
  echo "$baseline_line"
  baseline=$(echo "$baseline_line" | awk '{for (i = 1; i <= NF; ++i) if ($i == "images/s") print $(i - 1)}')
  ours_rate[$recipe]=$ours
  base_rate[$recipe]=$baseline
  /usr/bin/python3 - "$recipe" "$ours" "$baseline" <<'PY'
import sys
recipe, ours, base = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
name = {"moco": "MoCo v3 two views", "multicrop": "SwAV 2x224+6x96 multi-crop",
        "decode": "read and decode only"}[recipe]
print(f"{name}: ssl C++ {ours:.1f} images/s on one core; torchvision+PIL {base:.1f}; ratio {ours / base:.2f}x")
PY
done
# Decoding alone bounds the ratio: with views that cost nothing, ours would run at the
# decode rate against the baseline's whole pipeline.
/usr/bin/python3 -c 'import sys; d, m, c = map(float, sys.argv[1:]); print(f"ceiling with free views (our decode rate / baseline pipeline): two views {d / m:.2f}x, multi-crop {d / c:.2f}x")' \
  "${ours_rate[decode]}" "${base_rate[moco]}" "${base_rate[multicrop]}"
