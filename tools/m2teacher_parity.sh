#!/usr/bin/env bash
# Accuracy parity with Momentum^2 Teacher's own code: the same small recipe trained by the
# original's model code on Debian's python3-torch (tools/m2teacher_reference.py, from a
# checkout passed by path, never copied here) and by //tools:m2teacher_train (through
# //tools:run_experiment), for several seeds, alternating sides. Each run reports the
# teacher's kNN k=20 after training and at random init (the same architecture, measured
# in the same run), the last epoch's loss and training images/s; the original's trained
# teacher is also evaluated by //tools:knn_eval (telling an evaluation difference from a
# training one). Prints mean +- std per side; writes m2teacher_parity.json and .md.
#
#   tools/m2teacher_parity.sh /path/to/momentum2-teacher ../shared/datasets/imagenette \
#       [epochs, default 4] [seeds, default "0 1 2"] [recipe, default
#       cpu/momentum2_teacher_resnet18w025_64px] [description overrides, e.g.
#       basic_lr_per_img=0.003125,weight_decay=1e-5] [stop after this many epochs of the
#       schedule, default: all]
#
# The CI entry's recipe, 3 seeds (about 12 minutes a seed on 2 cores):
#   tools/m2teacher_parity.sh <checkout> <imagenette> 45 "0 1 2" \
#       cpu/momentum2_teacher_resnet18w025_64px basic_lr_per_img=0.003125 10
#
# The recipes: cpu/momentum2_teacher_resnet18w025_64px (ResNet-18 with 16 base channels,
# MLPs 512-128; the original's resnet_mbn.py narrowed when loaded) and
# cpu/momentum2_teacher_resnet18_64px (full-width ResNet-18, MLPs 4096-256).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: tools/m2teacher_parity.sh <momentum2-teacher checkout> <dataset root> [epochs] [seeds] [recipe] [overrides] [stop after epochs]"
checkout="$(cd "${1:?$usage}" && pwd)"
data="$(cd "${2:?dataset root with train/ and val/}" && pwd)"
epochs="${3:-4}"
seeds="${4:-0 1 2}"
recipe="${5:-cpu/momentum2_teacher_resnet18w025_64px}"
overrides="${6:-}"
stop_after="${7:-0}"
[[ "$stop_after" =~ ^[0-9]+$ ]] ||
  { echo "m2teacher_parity: stop after epochs must be a whole number, got $stop_after" >&2; exit 2; }
[[ -f "$checkout/momentum_teacher/models/m2_teacher.py" ]] ||
  { echo "m2teacher_parity: $checkout has no momentum_teacher/models/m2_teacher.py" >&2; exit 2; }
case "$recipe" in
  cpu/momentum2_teacher_resnet18w025_64px) reference=(--arch resnet18w0.25 --hidden_dim 512 --low_dim 128) ;;
  cpu/momentum2_teacher_resnet18_64px) reference=(--arch resnet18 --hidden_dim 4096 --low_dim 256) ;;
  *) echo "m2teacher_parity: recipe must be cpu/momentum2_teacher_resnet18w025_64px or cpu/momentum2_teacher_resnet18_64px, got $recipe" >&2; exit 2 ;;
esac
# Both recipes: lr 0.4 / 256 per image, 1 warmup epoch, weight decay 1e-4, m0 0.99; the
# overrides change both sides.
reference+=(--basic_lr_per_img 0.0015625 --warmup_epochs 1 --weight_decay 1e-4 --param_momentum 0.99)
IFS=',' read -r -a pairs <<<"$overrides"
for pair in "${pairs[@]}"; do
  key="${pair%%=*}"
  case "$key" in
    basic_lr_per_img | warmup_epochs | weight_decay | param_momentum) reference+=(--"$key" "${pair#*=}") ;;
    *) echo "m2teacher_parity: override $key is not one the reference script takes (basic_lr_per_img, warmup_epochs, weight_decay, param_momentum)" >&2; exit 2 ;;
  esac
done
targets=(//tools:run_experiment //tools:m2teacher_train //tools:knn_eval)
bazel build "${targets[@]}" >/dev/null 2>&1 || bazel build "${targets[@]}"
if grep -qw avx2 /proc/cpuinfo 2>/dev/null; then export OPENBLAS_CORETYPE=Haswell; fi
out="$(mktemp -d)"
runs="$out/runs.jsonl"
for seed in $seeds; do
  echo "m2teacher_parity: seed $seed, ours" >&2
  bazel-bin/tools/run_experiment --method=m2teacher --name="parity_seed$seed" \
    --m2t_recipe="$recipe" --m2t_set="$overrides" --batch_size=64 --epochs="$epochs" \
    --seed="$seed" --linear=false --knn_k=20 --threads=2 --workers=2 --data="$data" \
    --m2t_stop_after_epochs="$stop_after" --work_dir="$out/ours_$seed" --print_freq=50 >"$out/ours_$seed.log" 2>&1 ||
    { tail -n 5 "$out/ours_$seed.log" >&2; exit 1; }
  /usr/bin/python3 - "$out/ours_$seed/results.json" "$seed" >>"$runs" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(json.dumps({"side": "ours", "seed": int(sys.argv[2]),
                  "knn_top1_k20": r["pretrained"]["knn_top1_k20"],
                  "random_init_knn_top1_k20": r["random_init"]["knn_top1_k20"],
                  "final_loss": r["pretrain"]["final_loss"],
                  "images_per_second": r["pretrain"]["images_per_second"]}))
PY
  echo "m2teacher_parity: seed $seed, original" >&2
  /usr/bin/python3 tools/m2teacher_reference.py "$checkout" "$data" --epochs "$epochs" \
    --seed "$seed" --stop_after_epochs "$stop_after" --save_dir "$out/original_$seed" "${reference[@]}" \
    >"$out/original_$seed.json" 2>"$out/original_$seed.log" ||
    { tail -n 5 "$out/original_$seed.log" >&2; exit 1; }
  # The original's trained teacher through this framework's kNN too: an evaluation
  # difference shows here, a training difference does not.
  bazel-bin/tools/knn_eval --pretrained="$out/original_$seed/last_epoch_ckpt.pth.tar" \
    --data="$data" --image_size=64 --k=20 --threads=2 \
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
/usr/bin/python3 - "$runs" "$recipe" "$epochs" "$overrides" "$stop_after" "$*" <<'PY'
import json, statistics, sys
runs_path, recipe, epochs, overrides, stop_after, args = sys.argv[1:7]
runs = [json.loads(l) for l in open(runs_path) if l.strip()]
summary = {"recipe": recipe, "epochs": int(epochs), "stop_after_epochs": int(stop_after),
           "overrides": overrides, "runs": runs,
           "command": "tools/m2teacher_parity.sh " + args}
def spread(values):
    return (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
seeds = len(runs) // 2
span = f"the first {stop_after} of {epochs}" if int(stop_after) else epochs
title = f"Momentum^2 Teacher parity, {recipe}{' ' + overrides if overrides else ''}, {span} epochs, {seeds} seeds a side (mean +- std)"
lines = [f"# {title}", "", f"Written by `{summary['command']}`.", "",
         "| side | kNN k=20 | random init | gain | final loss | images/s |", "|---|---|---|---|---|---|"]
print(title + ":")
for side in ("ours", "original"):
    rows = [r for r in runs if r["side"] == side]
    stats = {key: spread([r[key] for r in rows]) for key in
             ("knn_top1_k20", "random_init_knn_top1_k20", "final_loss", "images_per_second")}
    stats["gain"] = spread([r["knn_top1_k20"] - r["random_init_knn_top1_k20"] for r in rows])
    summary[side] = {k: {"mean": m, "std": s} for k, (m, s) in stats.items()}
    cells = [f"{stats[k][0]:.2f} +- {stats[k][1]:.2f}" for k in
             ("knn_top1_k20", "random_init_knn_top1_k20", "gain")]
    cells += [f"{stats['final_loss'][0]:.3f} +- {stats['final_loss'][1]:.3f}",
              f"{stats['images_per_second'][0]:.1f} +- {stats['images_per_second'][1]:.1f}"]
    lines.append(f"| {side} | " + " | ".join(cells) + " |")
    print(f"  {side:9s} kNN {cells[0]} (random init {cells[1]}, gain {cells[2]}), "
          f"final loss {cells[3]}, {cells[4]} images/s")
cross = [r["knn_top1_k20_by_this_framework"] for r in runs if "knn_top1_k20_by_this_framework" in r]
if cross:
    summary["original"]["knn_top1_k20_by_this_framework"] = dict(zip(("mean", "std"), spread(cross)))
    note = f"The original's trained teachers through this framework's kNN: {spread(cross)[0]:.2f} +- {spread(cross)[1]:.2f}."
    lines += ["", note]
    print("  " + note)
ratio = summary["ours"]["images_per_second"]["mean"] / summary["original"]["images_per_second"]["mean"]
summary["images_per_second_ratio"] = ratio
lines += ["", f"Training images/s, ours over the original's: {ratio:.2f}x (2 threads each, one side at a time)."]
print(f"  training images/s, ours over the original's: {ratio:.2f}x")
lines += ["", "| side | seed | kNN | random init | final loss | images/s |", "|---|---|---|---|---|---|"]
for r in runs:
    lines.append(f"| {r['side']} | {r['seed']} | {r['knn_top1_k20']:.2f} | {r['random_init_knn_top1_k20']:.2f} | "
                 f"{r['final_loss']:.3f} | {r['images_per_second']:.1f} |")
json.dump(summary, open("m2teacher_parity.json", "w"), indent=1)
open("m2teacher_parity.md", "w").write("\n".join(lines) + "\n")
PY
echo "m2teacher_parity: runs and logs in $out; summary in m2teacher_parity.json and .md"
