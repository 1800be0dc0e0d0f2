#!/usr/bin/env bash
# Parity with the original SwAV code: the same recipe (a config of configs/config/ssl_cpu/,
# read by both sides) trained by the SwAV repository's own training step
# (tools/swav_reference.py, from a checkout passed by path, never copied here, on Debian's
# python3-torch) and by //tools:run_distributed_engines (through //tools:run_experiment),
# for several seeds, alternating sides. Each run reports kNN k=20 of the trunk after
# training and at random init (the same architecture, measured in the same run), the last
# epoch's loss and training images/s; the original's trained trunk is also evaluated by
# //tools:knn_eval (telling an evaluation difference from a training one); the script
# prints mean +- std per side and writes swav_parity.json (tools/swav_parity_summary.py,
# which also merges the runs of several invocations, e.g. seeds "0 1 2" then "3 4 5").
#
#   tools/swav_parity.sh /path/to/swav ../shared/datasets/imagenette \
#       [config, default ssl_cpu/swav_imagenette_64px] [seeds, default "0 1 2"] [val split]
set -euo pipefail
cd "$(dirname "$0")/.."
checkout="$(cd "${1:?usage: tools/swav_parity.sh <swav checkout> <dataset root> [config] [seeds] [val split]}" && pwd)"
data="$(cd "${2:?dataset root with train/ and val/}" && pwd)"
config="${3:-ssl_cpu/swav_imagenette_64px}"
seeds="${4:-0 1 2}"
val="${5:-val}"
config_file="configs/config/$config.yaml"
[[ -f "$config_file" ]] || { echo "swav_parity: no config $config_file" >&2; exit 2; }
[[ -f "$checkout/main_swav.py" ]] || { echo "swav_parity: $checkout has no main_swav.py" >&2; exit 2; }
targets=(//tools:run_experiment //tools:run_distributed_engines //tools:knn_eval)
bazel build "${targets[@]}" >/dev/null 2>&1 || bazel build "${targets[@]}"
if grep -qw avx2 /proc/cpuinfo 2>/dev/null; then export OPENBLAS_CORETYPE=Haswell; fi
out="$(mktemp -d)"
runs="$out/runs.jsonl"
for seed in $seeds; do
  echo "swav_parity: seed $seed, ours" >&2
  bazel-bin/tools/run_experiment --method=swav --name="parity_seed$seed" --config="$config" \
    --overrides="config.SEED_VALUE=$seed" --seed="$seed" --linear=false --threads=2 --workers=2 \
    --data="$data" --val_split="$val" --work_dir="$out/ours_$seed" --print_freq=50 \
    >"$out/ours_$seed.log" 2>&1 || { tail -n 5 "$out/ours_$seed.log" >&2; exit 1; }
  /usr/bin/python3 - "$out/ours_$seed/results.json" "$seed" >>"$runs" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(json.dumps({"side": "ours", "seed": int(sys.argv[2]),
                  "knn_top1_k20": r["pretrained"]["knn_top1_k20"],
                  "random_init_knn_top1_k20": r["random_init"]["knn_top1_k20"],
                  "final_loss": r["pretrain"]["final_loss"],
                  "images_per_second": r["pretrain"]["images_per_second"]}))
PY
  echo "swav_parity: seed $seed, original" >&2
  /usr/bin/python3 tools/swav_reference.py "$checkout" "$data" --config "$config_file" \
    --seed "$seed" --val_split "$val" --save_dir "$out/original_$seed" \
    >"$out/original_$seed.json" 2>"$out/original_$seed.log" ||
    { tail -n 5 "$out/original_$seed.log" >&2; exit 1; }
  # The original's trained trunk through this framework's kNN too: an evaluation
  # difference shows here, a training difference does not.
  size="$(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["image_size"])' \
    "$out/original_$seed.json")"
  bazel-bin/tools/knn_eval --pretrained="$out/original_$seed/trained.pth" --data="$data" \
    --val_split="$val" --image_size="$size" --k=20 --threads=2 \
    --output="$out/original_$seed/knn_eval.json" >>"$out/original_$seed.log" 2>&1 ||
    { tail -n 5 "$out/original_$seed.log" >&2; exit 1; }
  /usr/bin/python3 - "$out/original_$seed.json" "$out/original_$seed/knn_eval.json" >>"$runs" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
r["side"] = "original"
r["knn_top1_k20_by_this_framework"] = json.load(open(sys.argv[2]))["knn_top1_k20"]
print(json.dumps(r))
PY
done
/usr/bin/python3 tools/swav_parity_summary.py "$config" swav_parity.json "$runs"
echo "swav_parity: runs and logs in $out; summary in swav_parity.json"
