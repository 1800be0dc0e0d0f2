#!/usr/bin/python3
"""Mean +- std per side of SwAV parity runs (tools/swav_parity.sh), over one or more
sets of seeds: each input is a runs.jsonl the script wrote or an earlier summary JSON
(its "runs"); a seed present in several inputs is taken from the last one.

    tools/swav_parity_summary.py <config> <output json> <runs.jsonl | summary json>...
"""
import json
import statistics
import sys


def load_runs(path):
    text = open(path).read()
    try:
        return json.loads(text)["runs"]
    except (ValueError, KeyError, TypeError):
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def spread(values):
    return (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def main(config, output, inputs):
    by_key = {}
    for path in inputs:
        for run in load_runs(path):
            by_key[(run["side"], run["seed"])] = run
    runs = [by_key[k] for k in sorted(by_key, key=lambda k: (k[1], k[0] != "ours"))]
    summary = {"config": config, "runs": runs}
    seeds = sorted({r["seed"] for r in runs})
    print(f"SwAV parity, {config}, seeds {' '.join(map(str, seeds))} (mean +- std):")
    for side in ("ours", "original"):
        rows = [r for r in runs if r["side"] == side]
        stats = {key: spread([r[key] for r in rows]) for key in
                 ("knn_top1_k20", "random_init_knn_top1_k20", "final_loss", "images_per_second")}
        stats["gain"] = spread([r["knn_top1_k20"] - r["random_init_knn_top1_k20"] for r in rows])
        summary[side] = {k: {"mean": m, "std": s} for k, (m, s) in stats.items()}
        print(f"  {side:9s} kNN {stats['knn_top1_k20'][0]:.2f} +- {stats['knn_top1_k20'][1]:.2f} "
              f"(random init {stats['random_init_knn_top1_k20'][0]:.2f}, gain "
              f"{stats['gain'][0]:.2f} +- {stats['gain'][1]:.2f}), final loss "
              f"{stats['final_loss'][0]:.3f} +- {stats['final_loss'][1]:.3f}, "
              f"{stats['images_per_second'][0]:.1f} +- {stats['images_per_second'][1]:.1f} images/s")
    cross = [r["knn_top1_k20_by_this_framework"] for r in runs
             if "knn_top1_k20_by_this_framework" in r]
    if cross:
        summary["original"]["knn_top1_k20_by_this_framework"] = dict(
            zip(("mean", "std"), spread(cross)))
        print(f"  the original's trunks through this framework's kNN ({len(cross)} seeds): "
              f"{spread(cross)[0]:.2f} +- {spread(cross)[1]:.2f}")
    # Per seed, ours over the original's: the two sides of a seed ran back to back.
    ratios = {}
    for seed in seeds:
        pair = {r["side"]: r for r in runs if r["seed"] == seed}
        if len(pair) == 2:
            ratios[seed] = pair["ours"]["images_per_second"] / pair["original"]["images_per_second"]
    summary["images_per_second_ratio_by_seed"] = {str(k): v for k, v in ratios.items()}
    summary["images_per_second_ratio"] = (summary["ours"]["images_per_second"]["mean"] /
                                          summary["original"]["images_per_second"]["mean"])
    print("  training images/s, ours over the original's, per seed: " +
          ", ".join(f"{s}: {r:.2f}x" for s, r in ratios.items()))
    json.dump(summary, open(output, "w"), indent=1)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
