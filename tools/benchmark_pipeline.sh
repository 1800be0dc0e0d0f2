#!/usr/bin/env bash
# MoCo v3 two-view pipeline: our C++ pipeline vs torchvision + PIL on the same images,
# in one run, on one core each, and the threaded loader's throughput.
#
#   tools/benchmark_pipeline.sh [ImageFolder root]    (e.g. ../shared/datasets/imagenette/train)
#
# Without a root both use a synthetic 224 px ImageFolder. Writes the numbers to
# benchmark_pipeline.json in the current directory as well.
set -euo pipefail
cd "$(dirname "$0")/.."
root="${1:-}"
if [[ -n "$root" ]]; then root="$(cd "$root" && pwd)"; fi
bazel build -c opt //ssl/data:pipeline_benchmark >/dev/null 2>&1 || bazel build //ssl/data:pipeline_benchmark
binary=bazel-bin/ssl/data/pipeline_benchmark
args=(--benchmark_out=benchmark_pipeline.json --benchmark_out_format=json)
if [[ -n "$root" ]]; then args+=("--data=$root"); fi
"$binary" "${args[@]}"
if [[ -z "$root" ]]; then root="${TMPDIR:-/tmp}/ssl_pipeline_benchmark_data/train"; fi
ours=$(/usr/bin/python3 -c 'import json,sys; b=json.load(open("benchmark_pipeline.json"))["benchmarks"]; print([x for x in b if "OneThread" in x["name"]][0]["items_per_second"])')
if ! /usr/bin/python3 -c 'import torchvision' 2>/dev/null; then
  echo "torchvision is not installed (tools/setup.sh installs it): no baseline ratio"; exit 0
fi
baseline_line=$(/usr/bin/python3 tools/torchvision_pipeline_baseline.py "$root" 10)
echo "$baseline_line"
baseline=$(echo "$baseline_line" | awk '{for (i = 1; i <= NF; ++i) if ($i == "images/s") print $(i - 1)}')
/usr/bin/python3 - "$ours" "$baseline" <<'PY'
import sys
ours, base = float(sys.argv[1]), float(sys.argv[2])
print(f"ssl C++ pipeline: {ours:.1f} images/s on one core; torchvision+PIL: {base:.1f}; ratio {ours / base:.2f}x")
PY
