"""Curves of training runs from their metrics.jsonl, several runs overlaid.

    bazel run //tools:plot -- <run dir or metrics.jsonl> [more runs...] [--out curves.png]
    bazel run //tools:plot -- --results <results/ dir> --entries <entries.json> --out_dir <dir>

The first form draws one panel per series the runs logged: per iteration (loss, lr,
momentum and the other scheduled values, images/s) against the global step, and per
epoch (the epoch's mean loss, kNN accuracy) against the epoch. The second draws, per
method, each recorded entry's metrics beside their references (with the tolerance as an
error bar); //results:report uses it. Needs Debian's python3-matplotlib.
"""
import argparse
import json
import math
import os
import sys

# Bookkeeping fields, not curves.
SKIPPED = {"type", "epoch", "iteration", "global_step", "decode_failures", "data_wait_share"}


def fail(message):
    print(f"plot: {message}", file=sys.stderr)
    sys.exit(2)


def user_path(path):
    # `bazel run` starts in the runfiles; the user's relative paths mean their directory.
    return os.path.join(os.environ.get("BUILD_WORKING_DIRECTORY", os.getcwd()), path)


def read_run(path):
    metrics = os.path.join(path, "metrics.jsonl") if os.path.isdir(path) else path
    if not os.path.isfile(metrics):
        fail(f"{metrics} does not exist (give a run directory holding metrics.jsonl)")
    series = {}  # (kind, name) -> [(x, y)]
    with open(metrics, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                print(f"plot: {metrics}:{number} is not JSON; skipped", file=sys.stderr)
                continue
            if not isinstance(record, dict):
                continue
            kind = record.get("type")
            if kind == "iteration":
                x = record.get("global_step", record.get("iteration"))
            elif kind == "epoch":
                x = record.get("epoch")
            else:
                continue
            if not isinstance(x, (int, float)):
                continue
            for name, value in record.items():
                if name in SKIPPED or isinstance(value, bool):
                    continue
                if isinstance(value, (int, float)) and math.isfinite(value):
                    series.setdefault((kind, name), []).append((x, value))
    if not series:
        fail(f"{metrics} holds no iteration or epoch records")
    return series


def plot_runs(runs, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({key for _, series in runs for key in series},
                  key=lambda k: (k[0] != "iteration", k[1] != "loss", k[1]))
    columns = min(3, len(keys))
    rows = math.ceil(len(keys) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.4 * rows), squeeze=False)
    for axis, key in zip(axes.flat, keys):
        kind, name = key
        for label, series in runs:
            points = sorted(series.get(key, []))
            if points:
                axis.plot([p[0] for p in points], [p[1] for p in points], label=label,
                          marker="o" if len(points) < 30 else None, markersize=3)
        axis.set_title(f"{name} (per {kind})")
        axis.set_xlabel("global step" if kind == "iteration" else "epoch")
        axis.grid(alpha=0.3)
        if len(runs) > 1:
            axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(keys):]:
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(out, dpi=80)
    plt.close(figure)
    for kind, name in keys:
        counts = ", ".join(str(len(series.get((kind, name), []))) for _, series in runs)
        print(f"  {name} per {kind}: {counts} points")
    print(f"wrote {out}")


def plot_results(results_dir, entries_path, out_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(entries_path, encoding="utf-8") as f:
        entries = json.load(f)
    by_method = {}
    for entry in entries:
        path = os.path.join(results_dir, entry["method"], entry["name"] + ".json")
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            recorded = json.load(f)
        for metric, reference in entry["reference"].items():
            value = recorded
            for part in metric.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value is None and isinstance(recorded.get("pretrained"), dict):
                value = recorded["pretrained"].get(metric)
            if isinstance(value, (int, float)):
                by_method.setdefault(entry["method"], []).append(
                    (f"{entry['name']}\n{metric}", value, reference, entry["tolerance"][metric]))
    os.makedirs(out_dir, exist_ok=True)
    for method, bars in sorted(by_method.items()):
        figure, axis = plt.subplots(figsize=(max(5, 1.3 * len(bars)), 3.6))
        xs = range(len(bars))
        axis.bar([x - 0.2 for x in xs], [b[1] for b in bars], 0.4, label="recorded")
        axis.bar([x + 0.2 for x in xs], [b[2] for b in bars], 0.4, yerr=[b[3] for b in bars],
                 capsize=3, label="reference +- tolerance", alpha=0.7)
        axis.set_xticks(list(xs))
        axis.set_xticklabels([b[0] for b in bars], fontsize=6)
        axis.set_title(f"{method}: recorded vs reference")
        axis.legend(fontsize=7)
        figure.tight_layout()
        out = os.path.join(out_dir, f"{method}.png")
        figure.savefig(out, dpi=80)
        plt.close(figure)
        print(f"wrote {out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", help="run directories (or metrics.jsonl files)")
    parser.add_argument("--out", help="PNG to write (default: <first run>/curves.png)")
    parser.add_argument("--results", help="results/ directory (report figures)")
    parser.add_argument("--entries", help="entries.json of //results:entries_json")
    parser.add_argument("--out_dir", help="where the report figures go")
    args = parser.parse_args()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        fail("needs Debian's python3-matplotlib (tools/setup.sh installs it)")
    if args.results:
        if not args.entries or not args.out_dir:
            fail("--results needs --entries and --out_dir")
        plot_results(user_path(args.results), user_path(args.entries), user_path(args.out_dir))
        return
    if not args.runs:
        fail("give at least one run directory, e.g. bazel run //tools:plot -- /tmp/run")
    labels = [os.path.basename(os.path.normpath(r)) or r for r in args.runs]
    if len(set(labels)) < len(labels):  # e.g. several <entry>/pretrain: name the parents too
        labels = ["/".join(os.path.normpath(r).split(os.sep)[-2:]) for r in args.runs]
    runs = [(label, read_run(user_path(r))) for label, r in zip(labels, args.runs)]
    first = user_path(args.runs[0])
    out = user_path(args.out) if args.out else os.path.join(
        first if os.path.isdir(first) else os.path.dirname(first), "curves.png")
    try:
        plot_runs(runs, out)
    except OSError as error:
        fail(f"cannot write {out}: {error.strerror}")


if __name__ == "__main__":
    main()
