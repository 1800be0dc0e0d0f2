#!/usr/bin/env bash
# SwAV's CPU training step: ours (//ssl/methods:swav_step_benchmark) vs VISSL's own loss
# and head code (tools/vissl_swav_step.py, on Debian's python3-torch) on the same
# configuration, in one run, and the loss of the same fixed scores from both.
#
#   tools/benchmark_swav_step.sh /path/to/vissl-checkout [threads]
#
# The checkout is only read (its vissl/losses and vissl/models/heads files); it is not
# part of this project. Writes benchmark_swav_step.json in the current directory.
set -euo pipefail
cd "$(dirname "$0")/.."
vissl="${1:?usage: tools/benchmark_swav_step.sh /path/to/vissl [threads]}"
threads="${2:-2}"
vissl="$(cd "$vissl" && pwd)"
bazel build //ssl/methods:swav_step_benchmark >/dev/null 2>&1 || bazel build //ssl/methods:swav_step_benchmark
binary=bazel-bin/ssl/methods/swav_step_benchmark
config=(--arch=resnet18 --batch=32 --large=64 --small=32 --prototypes=3000)
"$binary" --loss_check
"$binary" "${config[@]}" --threads="$threads" --benchmark_out=benchmark_swav_step.json \
  --benchmark_out_format=json
theirs=$(/usr/bin/python3 tools/vissl_swav_step.py "$vissl" --arch resnet18 --batch 32 --large 64 \
  --small 32 --prototypes 3000 --threads "$threads")
echo "VISSL: $theirs"
/usr/bin/python3 - "$theirs" <<'PY'
import json, sys
theirs = json.loads(sys.argv[1])
ours = [b for b in json.load(open("benchmark_swav_step.json"))["benchmarks"] if b["name"].startswith("BM_SwavStep")][0]
ratio = ours["items_per_second"] / theirs["images_per_second"]
print(f"SwAV step, ResNet-18, 2x64+4x32 crops, batch 32: ours {ours['items_per_second']:.1f} images/s, "
      f"VISSL loss+head on torch {theirs['torch']}: {theirs['images_per_second']:.1f} images/s; ratio {ratio:.2f}x")
summary = json.load(open("benchmark_swav_step.json"))
summary["vissl"] = theirs
summary["ratio"] = ratio
json.dump(summary, open("benchmark_swav_step.json", "w"), indent=1)
PY
