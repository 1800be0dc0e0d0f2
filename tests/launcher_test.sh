#!/usr/bin/env bash
# The launcher with real child processes: the environment each rank gets, and a failing
# rank stopping the job with that rank's exit code.
set -euo pipefail
launch="$TEST_SRCDIR/$TEST_WORKSPACE/tools/launch"
out="$TEST_TMPDIR/ranks"
mkdir -p "$out"

"$launch" --nproc_per_node=3 --master_port=23456 -- /bin/sh -c \
  'echo "$RANK $WORLD_SIZE $LOCAL_RANK $LOCAL_WORLD_SIZE $MASTER_ADDR $MASTER_PORT" > '"$out"'/rank$RANK'
for rank in 0 1 2; do
  expected="$rank 3 $rank 3 127.0.0.1 23456"
  actual="$(cat "$out/rank$rank")"
  [[ "$actual" == "$expected" ]] || { echo "rank $rank got '$actual', expected '$expected'"; exit 1; }
done

# Second machine of two: global ranks 2 and 3.
"$launch" --nproc_per_node=2 --nnodes=2 --node_rank=1 -- /bin/sh -c 'echo "$RANK" > '"$out"'/node1_$LOCAL_RANK'
[[ "$(cat "$out/node1_0") $(cat "$out/node1_1")" == "2 3" ]] || { echo "node 1 ranks wrong"; exit 1; }

# Rank 1 fails with 3 while rank 0 would sleep for a minute: the launcher must stop
# rank 0 and exit 3 within seconds.
start=$(date +%s)
set +e
"$launch" --nproc_per_node=2 -- /bin/sh -c 'if [ "$RANK" = 1 ]; then exit 3; fi; sleep 60' 2> "$out/stderr"
code=$?
set -e
elapsed=$(( $(date +%s) - start ))
[[ $code -eq 3 ]] || { echo "launcher exited $code, expected 3"; exit 1; }
[[ $elapsed -lt 15 ]] || { echo "launcher took ${elapsed}s to stop the job"; exit 1; }
grep -q "rank 1 failed with exit code 3" "$out/stderr" || { cat "$out/stderr"; exit 1; }

# No program is a usage error.
set +e
"$launch" --nproc_per_node=2 2> /dev/null
[[ $? -eq 2 ]] || { echo "missing program should exit 2"; exit 1; }
echo "4 passed, 0 failed"
