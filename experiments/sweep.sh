#!/usr/bin/env bash
# A recorded recipe sweep: runs //tools:run_experiment once per row of a rows file (kNN
# of the pretrained backbone and of the same architecture at random init, measured in
# the same run; no linear probe) and writes one JSON line per row plus a Markdown table.
#
#   experiments/sweep.sh <rows file> <dataset root> <out prefix>
#
# A row is "<label> <run_experiment flags...>" on one line ('#' starts a comment); the
# flags are those of an entry (e.g. --method=swav --config=... --overrides="...").
# Rows whose label is already in <out prefix>.jsonl are skipped, so an interrupted sweep
# continues where it stopped. <out prefix>.md is rewritten after every row. The binaries
# come from $SWEEP_BIN (default bazel-bin/tools, built first); point it at a copy to keep
# editing the tree while a sweep runs.
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:?usage: experiments/sweep.sh <rows file> <dataset root> <out prefix>}"
data="$(cd "${2:?dataset root with train/ and val/ (or test/)}" && pwd)"
out="${3:?out prefix, e.g. results/swav/sweep_imagenette}"
[[ -f "$rows" ]] || { echo "sweep: no rows file $rows" >&2; exit 2; }
if [[ -z "${SWEEP_BIN:-}" ]]; then
  bazel build //tools:run_experiment //tools:run_distributed_engines //tools:m2teacher_train \
    >/dev/null 2>&1 || bazel build //tools:run_experiment //tools:run_distributed_engines \
    //tools:m2teacher_train
  SWEEP_BIN=bazel-bin/tools
fi
if grep -qw avx2 /proc/cpuinfo 2>/dev/null; then export OPENBLAS_CORETYPE=Haswell; fi
work="${SWEEP_WORK:-/tmp/ssl_sweep}/$(basename "$out")"
mkdir -p "$work" "$(dirname "$out")"
touch "$out.jsonl"

# The Markdown table of every recorded row.
write_table() {
  /usr/bin/python3 - "$out" "$rows" "$data" <<'PY'
import json, sys
out, rows, data = sys.argv[1:4]
records = [json.loads(l) for l in open(out + ".jsonl") if l.strip()]
lines = [f"# Sweep: {rows}", "",
         f"Written by `experiments/sweep.sh {rows} <dataset root> {out}` (dataset: "
         f"`{data.split('/')[-1]}`); one run per row, kNN k=20 of the pretrained trunk and of "
         "the same architecture at random init, measured in the same run. Do not edit by hand.",
         "",
         "| row | flags | epochs | pretraining s | images/s | final loss | loss below ln K | kNN | random init | gain |",
         "|---|---|---|---|---|---|---|---|---|---|"]
def cell(value, fmt="%.2f"):
    return "-" if value is None else fmt % value
for r in records:
    lines.append(f"| {r['label']} | `{r['flags']}` | {r['epochs']} | {cell(r['pretrain_seconds'], '%.0f')} | "
                 f"{cell(r['images_per_second'], '%.0f')} | {cell(r['final_loss'], '%.3f')} | "
                 f"{cell(r.get('loss_below_ln_k'), '%.3f')} | {cell(r['knn_top1_k20'])} | "
                 f"{cell(r.get('random_init_knn_top1_k20'))} | {cell(r.get('gain_knn_top1_k20'))} |")
open(out + ".md", "w").write("\n".join(lines) + "\n")
PY
}

while IFS= read -r line || [[ -n "$line" ]]; do
  line="${line%%#*}"
  [[ -z "${line// }" ]] && continue
  eval "set -- $line"  # the flags may quote overrides with spaces
  label="$1"; shift
  if /usr/bin/python3 -c 'import json,sys
sys.exit(0 if any(json.loads(l).get("label")==sys.argv[2] for l in open(sys.argv[1]) if l.strip()) else 1)' \
      "$out.jsonl" "$label"; then
    echo "sweep: $label already recorded; skipped"
    continue
  fi
  echo "sweep: $label: $*"
  rm -rf "${work:?}/$label"
  start=$(date +%s)
  if ! "$SWEEP_BIN/run_experiment" --name="$label" --linear=false --threads=2 --workers=2 \
      --data="$data" --work_dir="$work/$label" --print_freq=50 "$@" >"$work/$label.log" 2>&1; then
    echo "sweep: $label failed; the last lines of $work/$label.log:" >&2
    tail -n 5 "$work/$label.log" >&2
    continue
  fi
  seconds=$(( $(date +%s) - start ))
  /usr/bin/python3 - "$out.jsonl" "$label" "$work/$label/results.json" "$seconds" "$*" <<'PY'
import json, math, sys
out, label, path, seconds, flags = sys.argv[1:6]
r = json.load(open(path))
pre, rnd = r["pretrained"], r.get("random_init", {})
row = {"label": label, "flags": flags,
       "final_loss": r["pretrain"]["final_loss"],
       "epochs": r["pretrain"]["epochs"],
       "pretrain_seconds": r["pretrain"]["seconds_this_run"],
       "images_per_second": r["pretrain"]["images_per_second"],
       "knn_top1_k20": pre["knn_top1_k20"],
       "random_init_knn_top1_k20": rnd.get("knn_top1_k20"),
       "seconds": int(seconds)}
for key in ("ln_num_prototypes", "loss_below_ln_k"):
    if key in r["pretrain"]:
        row[key] = r["pretrain"][key]
if row["random_init_knn_top1_k20"] is not None:
    row["gain_knn_top1_k20"] = row["knn_top1_k20"] - row["random_init_knn_top1_k20"]
open(out, "a").write(json.dumps(row) + "\n")
print(f"sweep: {label}: loss {row['final_loss']:.3f}, kNN {row['knn_top1_k20']:.2f} "
      f"(random init {row['random_init_knn_top1_k20']}), {row['pretrain_seconds']:.0f} s pretraining")
PY
  write_table
done <"$rows"
write_table
echo "sweep: table in $out.md"
