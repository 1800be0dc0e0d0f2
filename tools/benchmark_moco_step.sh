#!/usr/bin/env bash
# MoCo v3's CPU training loop: main_moco vs the official moco-v3 code (its
# moco/builder.py, loader.py and optimizer.py, run by tools/mocov3_reference_step.py on
# Debian's python3-torch) on the same configuration, in one run: ResNet-18, 64 px
# crops, batch 32, 2 compute threads and 2 loader threads, one epoch over the first
# <per class> images of each class of an ImageFolder (default Imagenette's train split).
#
#   tools/benchmark_moco_step.sh /path/to/moco-v3-checkout [ImageFolder] [per class] [rounds]
#
# The two run alternately, `rounds` times each (default 3); medians are reported, as a
# shared 2-core machine varies by +-10% from run to run. MAIN_MOCO_FLAGS adds flags to
# main_moco's command line (e.g. MAIN_MOCO_FLAGS=--channels_last).
# Both sides are timed over their training loop (the reference's own timing: data waits
# included, model set-up and checkpoint writes not); main_moco's whole-run figure is
# printed too. The checkout is only read; it is not part of this project. Prints both
# throughputs, their ratio and where each spends its time; writes
# benchmark_moco_step.json in the current directory.
set -euo pipefail
cd "$(dirname "$0")/.."
checkout="${1:?usage: tools/benchmark_moco_step.sh /path/to/moco-v3 [ImageFolder] [per class]}"
checkout="$(cd "$checkout" && pwd)"
folder="${2:-../shared/datasets/imagenette/train}"
folder="$(cd "$folder" && pwd)"
per_class="${3:-128}"
rounds="${4:-3}"
# The same BLAS kernels for both sides (see experiments/launch.sh).
if grep -qw avx2 /proc/cpuinfo 2>/dev/null; then export OPENBLAS_CORETYPE=Haswell; fi
work="$(mktemp -d /tmp/benchmark_moco_step.XXXXXX)"
trap 'rm -rf "$work"' EXIT
for class_dir in "$folder"/*/; do
  class="$(basename "$class_dir")"
  mkdir -p "$work/data/$class"
  find "$class_dir" -maxdepth 1 -type f | sort | sed -n "1,${per_class}p" |
    while read -r file; do ln -s "$file" "$work/data/$class/"; done
done
bazel build //tools:main_moco >/dev/null 2>&1 || bazel build //tools:main_moco
for round in $(seq "$rounds"); do
  rm -rf "$work/ours"
  bazel-bin/tools/main_moco --data="$work/data" --output_dir="$work/ours" --arch=resnet18 \
    --image_size=64 --batch_size=32 --threads=2 --workers=2 --epochs=100 --crop_min=0.2 \
    --max_epochs_this_run=1 --print_freq=1000 ${MAIN_MOCO_FLAGS:-} >"$work/ours.log" 2>&1 ||
    { cat "$work/ours.log"; exit 1; }
  grep '^finished' "$work/ours.log" >> "$work/ours_rates.txt"
  grep '"type":"epoch"' "$work/ours/metrics.jsonl" >> "$work/ours_epochs.jsonl"
  /usr/bin/python3 tools/mocov3_reference_step.py "$checkout" "$work/data" --arch resnet18 \
    --size 64 --batch 32 --threads 2 --workers 2 >> "$work/theirs.jsonl"
done
/usr/bin/python3 - "$work/theirs.jsonl" "$work/ours_epochs.jsonl" "$work/ours_rates.txt" <<'PY'
import json, os, re, statistics, sys
theirs = [json.loads(l) for l in open(sys.argv[1])]
epochs = [json.loads(l) for l in open(sys.argv[2])]
# Like for like: the reference times its training loop (data waits included, model set-up
# and checkpoints not), so ours is the epoch's loop time too, the sum of its phases.
# main_moco's own figure also counts its start-up and the epoch's checkpoint write.
images = theirs[0]["iterations"] * 32
ours_rates = [images / sum(e["seconds_by_phase"].values()) for e in epochs]
whole_run_rates = [float(re.search(r"([0-9.]+) images/s", l).group(1)) for l in open(sys.argv[3])]
theirs_rates = [t["images_per_second"] for t in theirs]
ours, reference = statistics.median(ours_rates), statistics.median(theirs_rates)
whole_run = statistics.median(whole_run_rates)
median_phases = lambda runs: {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}
extra = os.environ.get("MAIN_MOCO_FLAGS", "")
print(f"MoCo v3 ResNet-18, 64 px, batch 32, 2 threads + 2 loader threads{', main_moco ' + extra if extra else ''}, "
      f"{theirs[0]['iterations']} iterations, median of {len(ours_rates)}: main_moco {ours:.1f} "
      f"images/s {[round(r, 1) for r in ours_rates]}, moco-v3 on torch {theirs[0]['torch']} "
      f"{reference:.1f} images/s {[round(r, 1) for r in theirs_rates]}; ratio {ours / reference:.2f}x")
print(f"main_moco's whole run (start-up and checkpoint included): {whole_run:.1f} images/s "
      f"{[round(r, 1) for r in whole_run_rates]}, {whole_run / reference:.2f}x")
print("seconds by phase (median), ours:  ", median_phases([e["seconds_by_phase"] for e in epochs]))
print("seconds by phase (median), theirs:", median_phases([t["seconds_by_phase"] for t in theirs]))
json.dump({"main_moco_flags": extra, "ours_images_per_second": ours_rates,
           "ours_whole_run_images_per_second": whole_run_rates, "moco_v3": theirs,
           "ratio": ours / reference, "whole_run_ratio": whole_run / reference,
           "ours_seconds_by_phase": [e["seconds_by_phase"] for e in epochs]},
          open("benchmark_moco_step.json", "w"), indent=1)
PY
