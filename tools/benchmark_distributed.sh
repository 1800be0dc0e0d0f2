#!/usr/bin/env bash
# MoCo v3 pretraining throughput on one machine: 1 process vs 2 processes (c10d/Gloo
# over loopback, SyncBN, bucketed gradient all-reduce) at the same global batch, plus 2
# processes with per-process BN to show what SyncBN costs. One epoch each, same data.
#
#   tools/benchmark_distributed.sh [ImageFolder root]   (e.g. ../shared/datasets/imagenette/train)
#
# Without a root it uses a synthetic 64 px ImageFolder. Configuration: the CPU entries'
# resnet18w0.25, 64 px crops, global batch 64; the 1-process run uses 2 compute threads
# and 2 loader threads, each of the 2 processes 1 and 1, so both use the machine's 2
# cores. Then the mean latency of small and large collectives between 2 idle processes
# (needs python3-torch to read them back). Writes benchmark_distributed.json as well.
set -euo pipefail
cd "$(dirname "$0")/.."
root="${1:-}"
bazel build //tools:main_moco //tools:launch //tools:make_synthetic_dataset \
  //tests:distributed_worker >/dev/null
if [[ -z "$root" ]]; then
  root="${TMPDIR:-/tmp}/ssl_distributed_benchmark_data"
  bazel-bin/tools/make_synthetic_dataset --output="$root" --image_size=64 >/dev/null
  root="$root/train"
fi
root="$(cd "$root" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
common=(--data="$root" --arch=resnet18w0.25 --image_size=64 --batch_size=64 --lr=10
        --moco_t=0.2 --moco_dim=128 --moco_mlp_dim=512 --epochs=1 --warmup_epochs=0
        --print_freq=50)
port=$((29500 + RANDOM % 1000))

throughput() {  # the "finished ...; N images/s" line of rank 0
  awk '/^finished/ {print $(NF - 1)}' "$1"
}

echo "1 process, 2 threads..." >&2
bazel-bin/tools/main_moco "${common[@]}" --output_dir="$work/one" --threads=2 --workers=2 \
  >"$work/one.out" 2>"$work/one.err"
one=$(throughput "$work/one.out")
echo "2 processes, SyncBN..." >&2
bazel-bin/tools/launch --nproc_per_node=2 --master_port=$port -- bazel-bin/tools/main_moco \
  "${common[@]}" --output_dir="$work/two" --threads=1 --workers=1 --bn=sync \
  >"$work/two.out" 2>"$work/two.err"
two=$(throughput "$work/two.out")
echo "2 processes, per-process BN..." >&2
bazel-bin/tools/launch --nproc_per_node=2 --master_port=$((port + 1)) -- bazel-bin/tools/main_moco \
  "${common[@]}" --output_dir="$work/local" --threads=1 --workers=1 --bn=local \
  >"$work/local.out" 2>"$work/local.err"
local_bn=$(throughput "$work/local.out")

echo "collective latency, 2 processes..." >&2
for rank in 0 1; do
  MASTER_ADDR=127.0.0.1 MASTER_PORT=$((port + 2)) WORLD_SIZE=2 RANK=$rank LOCAL_RANK=$rank \
    LOCAL_WORLD_SIZE=2 bazel-bin/tests/distributed_worker --scenario=latency \
    --output="$work/latency.pt" 2>"$work/latency$rank.err" &
done
wait
latency=$(/usr/bin/python3 -c '
import json, sys, torch
print(json.dumps({k: round(v, 1) for k, v in torch.load(sys.argv[1]).items()}))' "$work/latency.pt" 2>/dev/null || echo '{}')

/usr/bin/env python3 - "$one" "$two" "$local_bn" "$root" "$latency" <<'PY'
import json, sys
one, two, local, root = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
latency = json.loads(sys.argv[5])
result = {
    "configuration": "MoCo v3 resnet18w0.25, 64 px, global batch 64, 1 epoch of " + root,
    "one_process_2_threads_images_per_second": one,
    "two_processes_syncbn_images_per_second": two,
    "two_processes_local_bn_images_per_second": local,
    "two_vs_one_ratio": two / one,
    "collective_latency_2_processes_us": latency,
}
json.dump(result, open("benchmark_distributed.json", "w"), indent=2)
print(f"1 process x 2 threads: {one:.1f} images/s")
print(f"2 processes x 1 thread, SyncBN: {two:.1f} images/s ({two / one:.2f}x)")
print(f"2 processes x 1 thread, per-process BN: {local:.1f} images/s ({local / one:.2f}x)")
for name, us in latency.items():
    print(f"{name}: {us:.0f}")
PY
