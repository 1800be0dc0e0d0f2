#!/usr/bin/env bash
# Runs each fuzz target under libFuzzer + AddressSanitizer for a fixed time:
#   tools/fuzz/run_fuzzers.sh [seconds per target, default 60] [targets...]
# Targets: image (DecodeImage: JPEG/PNG/BMP...), torch_file (torch.save zip/legacy),
# vissl_config (YAML composed and read). Needs Debian's clang and libclang-rt-14-dev.
# Corpora grow in $FUZZ_DIR (default /tmp/ssl_fuzz), outside the repository; crashes are
# written there as crash-* files. Prints executions and crashes per target.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
seconds="${1:-60}"; shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(image torch_file vissl_config transfer_files)
work="${FUZZ_DIR:-/tmp/ssl_fuzz}"
mkdir -p "$work"
command -v clang++ >/dev/null || { echo "run_fuzzers: needs Debian's clang" >&2; exit 1; }

flags=(-std=c++17 -O1 -g -fsanitize=fuzzer,address -DSSL_FUZZ_WITHOUT_RECIPE -I"$repo"
       -I/usr/include/opencv4 -I/usr/include/torch/csrc/api/include -w)
libs=(-ltorch -ltorch_cpu -lc10 -lopencv_imgcodecs -lopencv_imgproc -lopencv_core -ljpeg
      -lyaml-cpp -labsl_statusor -labsl_status -labsl_cord -labsl_cord_internal
      -labsl_cordz_info -labsl_cordz_handle -labsl_cordz_functions -labsl_str_format_internal
      -labsl_strings -labsl_strings_internal -labsl_int128 -labsl_throw_delegate
      -labsl_raw_logging_internal -labsl_base -labsl_spinlock_wait -labsl_synchronization
      -labsl_time -labsl_time_zone -labsl_stacktrace -labsl_symbolize -labsl_debugging_internal
      -labsl_demangle_internal -labsl_malloc_internal -labsl_graphcycles_internal
      -labsl_exponential_biased -labsl_civil_time -labsl_bad_optional_access -lz -lpthread)
sources=("$repo/tools/fuzz/fuzz_targets.cc" "$repo/ssl/data/image_io.cc"
         "$repo/ssl/train/torch_file.cc" "$repo/tools/vissl_config.cc"
         "$repo/transfer/datasets.cc" "$repo/ssl/data/image_folder.cc")

seed() {  # seed corpora: real inputs of each kind
  local target="$1" corpus="$work/$1/corpus"
  set +o pipefail  # find | head ends find with SIGPIPE
  mkdir -p "$corpus"
  [[ -z "$(ls -A "$corpus")" ]] || return 0
  case "$target" in
    image)
      find "$repo/ssl" -name '*.jpg' -o -name '*.png' 2>/dev/null | head -5 | xargs -r cp -t "$corpus"
      local shared="$repo/../shared/datasets/imagenette/train"
      [[ -d "$shared" ]] && find "$shared" -name '*.JPEG' -o -name '*.jpg' | head -3 | xargs -r cp -t "$corpus"
      printf 'BM' > "$corpus/bmp_signature_only.bmp" ;;
    torch_file)
      if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
        /usr/bin/python3 - "$corpus" <<'PY'
import collections, sys, torch
out = sys.argv[1]
state = collections.OrderedDict(w=torch.arange(6.0).reshape(2, 3), b=torch.tensor([1, 2]))
state["v"] = state["w"][1]
torch.save(state, f"{out}/zip.pth")
torch.save({"epoch": 1, "state_dict": state, "args": [1, "x", None]}, f"{out}/legacy.pth",
           _use_new_zipfile_serialization=False)
PY
      fi ;;
    vissl_config) cp "$repo"/configs/config/ssl_cpu/*.yaml "$corpus"/ ;;
    transfer_files)
      local fixtures="$work/transfer_fixtures"
      if /usr/bin/python3 "$repo/transfer/make_transfer_fixtures.py" "$fixtures" 2>/dev/null; then
        cp "$fixtures"/cifar-10-batches-py/batches.meta "$fixtures"/cifar-10-batches-py/test_batch \
           "$fixtures"/cifar-100-python/meta "$fixtures"/flowers/*.mat "$corpus"/
      fi ;;
  esac
  set -o pipefail
}

summary="$work/summary.txt"
: > "$summary"
for target in "${targets[@]}"; do
  case "$target" in
    image) function_name=DecodeImageTarget ;;
    torch_file) function_name=TorchFileTarget ;;
    vissl_config) function_name=VisslConfigTarget ;;
    transfer_files) function_name=TransferFilesTarget ;;
    *) echo "run_fuzzers: unknown target $target (image, torch_file, vissl_config, transfer_files)" >&2; exit 2 ;;
  esac
  binary="$work/$target/fuzzer"
  mkdir -p "$work/$target"
  echo "=== $target: building"
  clang++ "${flags[@]}" -DSSL_FUZZ_TARGET="$function_name" "${sources[@]}" "${libs[@]}" -o "$binary"
  seed "$target"
  echo "=== $target: fuzzing for $seconds s"
  log="$work/$target/fuzz.log"
  (cd "$work/$target" && ASAN_OPTIONS=detect_leaks=0 "$binary" -max_total_time="$seconds" \
     -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -max_len=65536 -print_final_stats=1 \
     -close_fd_mask=2 corpus > "$log" 2>&1) && status=ok || status="stopped (exit $?)"
  executions="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)"
  crashes="$(ls "$work/$target" | grep -cE '^(crash|leak|timeout|oom)-' || true)"
  echo "$target: $executions executions in $seconds s, $crashes crash/timeout/oom files, $status" | tee -a "$summary"
done
echo "summary: $summary"
