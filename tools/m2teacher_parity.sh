#!/usr/bin/env bash
# Accuracy parity with Momentum^2 Teacher's own code: the same small recipe (ResNet-18,
# 64 px, batch 64, 2 epochs on Imagenette by default) trained by the original's model
# code on Debian's python3-torch (tools/m2teacher_reference.py, from a checkout passed by
# path, never copied here) and by //tools:m2teacher_train, then the teacher's kNN
# accuracy (k=20) of both and both wall times. Writes m2teacher_parity.json.
#
#   tools/m2teacher_parity.sh /path/to/momentum2-teacher ../shared/datasets/imagenette [epochs]
set -euo pipefail
cd "$(dirname "$0")/.."
checkout="$(cd "${1:?usage: tools/m2teacher_parity.sh <momentum2-teacher checkout> <dataset root> [epochs]}" && pwd)"
data="$(cd "${2:?dataset root with train/ and val/}" && pwd)"
epochs="${3:-2}"
bazel build //tools:m2teacher_train //tools:knn_eval >/dev/null 2>&1 || bazel build //tools:m2teacher_train //tools:knn_eval
out="$(mktemp -d)"
bazel-bin/tools/m2teacher_train -b 64 -d 0 -f cpu/momentum2_teacher_resnet18_64px --epochs="$epochs" \
  --data="$data/train" --output_dir="$out/ours" --threads=2 --workers=2 --noresume
bazel-bin/tools/knn_eval --pretrained="$out/ours/last_epoch_ckpt.pth.tar" --data="$data" \
  --image_size=64 --k=20 --threads=2 --output="$out/ours_knn.json" >/dev/null
theirs=$(/usr/bin/python3 tools/m2teacher_reference.py "$checkout" "$data" "$epochs" 64 2)
/usr/bin/python3 - "$out" "$theirs" <<'PY'
import json, sys
out, theirs = sys.argv[1], json.loads(sys.argv[2])
ours = json.load(open(out + "/ours/pretrain_result.json"))
knn = json.load(open(out + "/ours_knn.json"))
result = {"ours": {"knn_top1_k20": knn["knn_top1_k20"], "final_loss": ours["final_loss"],
                   "images_per_second": ours["images_per_second"]},
          "original": theirs}
json.dump(result, open("m2teacher_parity.json", "w"), indent=1)
print(f"kNN k=20 of the teacher: ours {knn['knn_top1_k20']:.2f}, original {theirs['knn_top1_k20']:.2f}; "
      f"training images/s: ours {ours['images_per_second']:.1f}, original {theirs['images_per_second']:.1f} "
      f"({ours['images_per_second'] / theirs['images_per_second']:.2f}x); final loss ours "
      f"{ours['final_loss']:.4f}, original {theirs['final_loss']:.4f}")
PY
