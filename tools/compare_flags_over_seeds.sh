#!/usr/bin/env bash
# Whether a faster path is as accurate as the default: runs an experiment entry over
# several seeds with its own flags and with extra flags added, alternating, and prints
# kNN k=20 (trained and random init) and training images/s per run and mean +- std per
# side.
#
#   tools/compare_flags_over_seeds.sh //experiments/mocov3:imagenette_4ep \
#       "--winograd --batch_views" ../shared/datasets/imagenette [seeds, default "0 1 2"]
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:?usage: tools/compare_flags_over_seeds.sh <entry target> <extra flags> <dataset root> [seeds]}"
read -r -a extra <<<"${2:?extra flags, e.g. \"--winograd --batch_views\"}"
data="$(cd "${3:?dataset root with train/ and val/}" && pwd)"
seeds="${4:-0 1 2}"
if grep -qw avx2 /proc/cpuinfo 2>/dev/null; then export OPENBLAS_CORETYPE=Haswell; fi
bazel build "$target" >/dev/null 2>&1 || bazel build "$target"
out="$(mktemp -d)"
for seed in $seeds; do
  for side in default extra; do
    flags=()
    [[ $side == extra ]] && flags=("${extra[@]}")
    echo "compare: seed $seed, $side" >&2
    bazel run "$target" -- --data="$data" --seed="$seed" --linear=false \
      --work_dir="$out/${side}_$seed" "${flags[@]}" >"$out/${side}_$seed.log" 2>&1 ||
      { tail -n 5 "$out/${side}_$seed.log" >&2; exit 1; }
  done
done
/usr/bin/python3 - "$out" "$seeds" "${extra[*]}" <<'PY'
import json, statistics, sys
out, seeds, extra = sys.argv[1], sys.argv[2].split(), sys.argv[3]
for side, name in (("default", "entry's flags"), ("extra", "with " + extra)):
    knn, rate = [], []
    for seed in seeds:
        r = json.load(open(f"{out}/{side}_{seed}/results.json"))
        knn.append(r["pretrained"]["knn_top1_k20"])
        rate.append(r["pretrain"]["images_per_second"])
        print(f"{name}, seed {seed}: kNN {knn[-1]:.2f} (random init "
              f"{r['random_init']['knn_top1_k20']:.2f}), {rate[-1]:.1f} images/s")
    sd = lambda x: statistics.stdev(x) if len(x) > 1 else 0.0
    print(f"{name}: kNN {statistics.mean(knn):.2f} +- {sd(knn):.2f}, "
          f"{statistics.mean(rate):.1f} +- {sd(rate):.1f} images/s")
PY
