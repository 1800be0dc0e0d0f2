#!/usr/bin/env bash
# //tools:plot on metrics files this test writes: the panels it reports, the PNG it
# writes (signature and size), overlays of two runs, and one-line errors for bad input.
set -euo pipefail
runfiles="${RUNFILES_DIR:-$0.runfiles}"
plot="$runfiles/ssl/tools/plot"
if ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
  echo "SKIPPED: Debian's python3-matplotlib is not installed (tools/setup.sh installs it)"
  exit 0
fi
dir="$TEST_TMPDIR"
mkdir -p "$dir/a" "$dir/b" "$dir/empty"
for step in 49 99 149; do
  echo "{\"type\":\"iteration\",\"epoch\":0,\"iteration\":$step,\"global_step\":$step,\"loss\":$((200 - step)).5,\"lr\":0.1,\"momentum\":0.99,\"images_per_second\":500}" >> "$dir/a/metrics.jsonl"
done
echo '{"type":"epoch","epoch":1,"loss":2.5,"knn_top1_k20":31.5,"decode_failures":0}' >> "$dir/a/metrics.jsonl"
echo 'not json' >> "$dir/a/metrics.jsonl"
echo '{"type":"iteration","global_step":10,"loss":3.0,"lr":0.2,"images_per_second":400}' > "$dir/b/metrics.jsonl"

out="$("$plot" "$dir/a" 2>&1)"
echo "$out"
grep -q "loss per iteration: 3 points" <<< "$out"
grep -q "knn_top1_k20 per epoch: 1 points" <<< "$out"
grep -q "momentum per iteration: 3 points" <<< "$out"
grep -q "is not JSON; skipped" <<< "$out"
! grep -q "decode_failures" <<< "$out"
png="$dir/a/curves.png"
[[ "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" == "89504e470d0a1a0a" ]]
(( $(stat -c %s "$png") > 10000 ))

out="$("$plot" "$dir/a" "$dir/b" --out "$dir/both.png" 2>&1)"
grep -q "loss per iteration: 3, 1 points" <<< "$out"
grep -q "momentum per iteration: 3, 0 points" <<< "$out"
[[ -s "$dir/both.png" ]]

for bad in "$dir/empty" "$dir/missing"; do
  if err="$("$plot" "$bad" 2>&1)"; then echo "expected a failure for $bad"; exit 1; fi
  [[ "$(wc -l <<< "$err")" -eq 1 && "$err" == plot:* ]] || { echo "not one line: $err"; exit 1; }
done
echo PASSED
