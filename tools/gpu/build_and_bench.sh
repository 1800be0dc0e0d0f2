#!/usr/bin/env bash
# The one command for the lent GPU machine (run from a copy of the repository there):
#
#   tools/gpu/build_and_bench.sh [all|build|test|bench] [out_dir]
#
# build: unpacks the carried Debian packages (.gpu_carry/debs, from tools/gpu/fetch_debs.sh
#        run here first), configures tools/gpu/CMakeLists.txt against the PyTorch
#        package's LibTorch (CUDA, NCCL) and builds the programs and tests of
#        tools/gpu/BUILD with ninja.
# test:  runs the tests (ssl/train:gpu_test on the GPU, plus the CPU tests of the
#        engine, optimizers, layers, backbones, methods, evaluation, checkpoints and c10d
#        that need neither OpenCV nor oneDNN), gtest XML into out_dir.
# bench: MoCo v3 ResNet-50 at 224 px on ImageNet-sized synthetic JPEGs with fp16 and bf16
#        at the largest per-GPU batch that fits, its images/s, GPU memory and the data
#        pipeline's share of the step; the same for ViT-S/16 with its model FLOP
#        utilisation; the CPU pipeline benchmark on the machine's cores.
# Everything lands in out_dir (default: $OUT on the device machine, else build/gpu_out):
# machine.json (the one look at what the machine has), build.log, test_*.xml,
# gpu_results.json.
#
# From this (Debian) machine, in one device call:
#   tools/gpu/fetch_debs.sh
#   run(command="tools/gpu/build_and_bench.sh all", carry=[".gpu_carry"])
set -uo pipefail
cd "$(dirname "$0")/../.."
stage="${1:-all}"
out="${2:-${OUT:-build/gpu_out}}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
repo="$(pwd)"
build="$repo/build/gpu"
prefix="$repo/.gpu_carry/prefix"
jobs="$(nproc)"
python="${PYTHON:-python3}"
log() { echo "[gpu $(date +%H:%M:%S)] $*"; }

look() {
  # One short look at the machine, kept with the results.
  "$python" - "$out/machine.json" <<'PY'
import json, os, platform, shutil, subprocess, sys
def run(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception as e:
        return f"unavailable: {e}"
info = {"platform": platform.platform(), "cpus": os.cpu_count(),
        "os_release": open("/etc/os-release").read() if os.path.exists("/etc/os-release") else "",
        "glibc": platform.libc_ver(), "gxx": run("g++", "--version").split("\n")[0],
        "cmake": run("cmake", "--version").split("\n")[0], "ninja": run("ninja", "--version"),
        "nvidia_smi": run("nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                          "--format=csv,noheader"),
        "dpkg": bool(shutil.which("dpkg")), "ar": bool(shutil.which("ar"))}
try:
    import torch
    info.update(torch=torch.__version__, torch_cuda=torch.version.cuda,
                cxx11_abi=torch.compiled_with_cxx11_abi(),
                cmake_prefix_path=torch.utils.cmake_prefix_path,
                nccl=".".join(map(str, torch.cuda.nccl.version())) if torch.cuda.is_available() else None)
except Exception as e:
    info["torch"] = f"unavailable: {e}"
try:
    import nvidia.nccl
    info["nccl_include"] = os.path.join(list(nvidia.nccl.__path__)[0], "include")
except Exception:
    info["nccl_include"] = ""
missing = []
for header in ["absl/status/status.h", "glog/logging.h", "gflags/gflags.h", "yaml-cpp/yaml.h",
               "jpeglib.h", "nlohmann/json.hpp", "gtest/gtest.h", "benchmark/benchmark.h"]:
    if not os.path.exists("/usr/include/" + header):
        missing.append(header)
info["system_headers_missing"] = missing
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(json.dumps(info, indent=2))
PY
}

unpack() {
  rm -rf "$prefix"
  mkdir -p "$prefix"
  local debs=(.gpu_carry/debs/*.deb)
  if [ ! -e "${debs[0]}" ]; then
    echo "no Debian packages in .gpu_carry/debs: run tools/gpu/fetch_debs.sh on the Debian machine and carry .gpu_carry" >&2
    return 1
  fi
  for deb in "${debs[@]}"; do
    if command -v dpkg-deb >/dev/null; then
      dpkg-deb -x "$deb" "$prefix"
    else
      (tmp="$(mktemp -d)" && cd "$tmp" && ar x "$repo/$deb" && tar -xf data.tar.* -C "$prefix" && rm -rf "$tmp")
    fi
  done
  # Debian's libstdc++ only when the machine's is older (the carried libraries need
  # GLIBCXX_3.4.30, gcc 12's); otherwise the machine's own stays in charge.
  local host_stdcxx
  host_stdcxx="$(g++ -print-file-name=libstdc++.so.6)"
  if grep -qa GLIBCXX_3.4.30 "$(readlink -f "$host_stdcxx")" 2>/dev/null; then
    rm -f "$prefix"/usr/lib/x86_64-linux-gnu/libstdc++.so.6* "$prefix"/usr/lib/x86_64-linux-gnu/libgcc_s.so.1
  else
    log "the machine's libstdc++ predates gcc 12: using Debian's"
  fi
  log "unpacked ${#debs[@]} Debian packages into $prefix"
}

# What would otherwise fail minutes into the build, or build something other than asked:
# said before any compiling.
preflight() {
  local nccl_include="$1" torch_cuda nvcc_cuda torch_include
  torch_cuda="$("$python" -c 'import torch; print(torch.version.cuda or "")')"
  if [ -z "$torch_cuda" ]; then
    echo "preflight: this PyTorch has no CUDA (torch.version.cuda is empty): nothing to measure" >&2
    return 1
  fi
  # Caffe2's CUDA configuration (run by find_package(Torch)) needs nvcc, of the same
  # major version as the wheel's CUDA.
  if ! command -v nvcc >/dev/null; then
    for candidate in /usr/local/cuda/bin /usr/local/cuda-"${torch_cuda%%.*}"*/bin; do
      if [ -x "$candidate/nvcc" ]; then export PATH="$candidate:$PATH"; break; fi
    done
  fi
  # Warnings, not stops: a configure that still succeeds is worth the try.
  nvcc_cuda=none
  if ! command -v nvcc >/dev/null; then
    log "WARNING: no nvcc on PATH or in /usr/local/cuda*; find_package(Torch) may need the CUDA toolkit ($torch_cuda)"
  else
    nvcc_cuda="$(nvcc --version | sed -n 's/.*release \([0-9][0-9.]*\).*/\1/p')"
    if [ "${nvcc_cuda%%.*}" != "${torch_cuda%%.*}" ]; then
      log "WARNING: nvcc is CUDA $nvcc_cuda but this PyTorch was built with CUDA $torch_cuda; put a matching toolkit first on PATH if configuring fails"
    fi
  fi
  # ProcessGroupGloo.hpp includes gloo; without the wheel's own copy, Debian 12's 2022
  # gloo headers are used, which may not match the wheel's library.
  torch_include="$("$python" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "include"))')"
  if [ ! -d "$torch_include/gloo" ]; then
    log "WARNING: this PyTorch ships no include/gloo; Gloo process groups compile against Debian's gloo headers (2022)"
  fi
  if [ -z "$nccl_include" ] || [ ! -f "$nccl_include/nccl.h" ]; then
    log "WARNING: no nccl.h found (the nvidia-nccl wheel): this build has NO NCCL process groups; multi-GPU runs fall back to Gloo"
  fi
  log "preflight: PyTorch CUDA $torch_cuda, nvcc $nvcc_cuda, NCCL header ${nccl_include:-none}"
}

do_build() {
  look > /dev/null
  unpack || return 1
  local torch_prefix nccl_include
  # SSL_TORCH_CMAKE_PREFIX overrides (Debian keeps TorchConfig.cmake in /usr/lib/<arch>/cmake).
  torch_prefix="${SSL_TORCH_CMAKE_PREFIX:-$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')}" || {
    echo "python3 cannot import torch: no LibTorch to build against" >&2
    return 1
  }
  if [ "$("$python" -c 'import torch; print(int(torch.compiled_with_cxx11_abi()))')" != 1 ]; then
    echo "this PyTorch uses the pre-C++11 string ABI; Debian's libraries use the C++11 one" >&2
    return 1
  fi
  nccl_include="$("$python" -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "include"))' 2>/dev/null || true)"
  preflight "$nccl_include" || return 1
  log "configuring against $torch_prefix"
  cmake -S tools/gpu -B "$build" -G Ninja -DCMAKE_PREFIX_PATH="$torch_prefix" \
    -DSSL_DEPS_PREFIX="$prefix" -DSSL_NCCL_INCLUDE_DIR="$nccl_include" \
    >"$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; return 1; }
  grep "ssl:" "$out/configure.log" || true
  log "building with $jobs jobs"
  local start=$SECONDS
  ninja -C "$build" -j "$jobs" >"$out/build.log" 2>&1 || { grep -B2 -A12 "error" "$out/build.log" | head -80; return 1; }
  log "built in $((SECONDS - start)) s"
}

# The tests read their data files and start the programs they test through Bazel's
# runfiles variables; this tree gives them the same layout: the repository's files, with
# the built programs at their Bazel paths.
make_runfiles() {
  local tree="$build/runfiles/ssl" entry name program
  rm -rf "$build/runfiles"
  mkdir -p "$tree"
  for entry in "$repo"/*; do
    name="$(basename "$entry")"
    case "$name" in build | bazel-*) continue ;; esac
    cp -as "$entry" "$tree/"
  done
  while read -r program; do
    mkdir -p "$tree/$(dirname "$program")"
    ln -sfn "$build/bin/$program" "$tree/$program"
  done < <(cd "$build/bin" && find . -type f -perm -u+x | sed 's|^\./||')
  export TEST_SRCDIR="$build/runfiles" TEST_WORKSPACE=ssl
}

do_test() {
  local failed=0
  export LD_LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  make_runfiles
  while read -r test; do
    [ -n "$test" ] || continue
    local name
    name="$(basename "$test")"
    export TEST_TMPDIR="$build/test_tmp/$name"
    rm -rf "$TEST_TMPDIR"
    mkdir -p "$TEST_TMPDIR"
    log "test $name"
    # The CPU tests' expectations (bitwise resume, gloo, fp32, the CPU layout) are the
    # CPU's: run them with no GPU visible, so that --device=auto stays on the CPU.
    local hide_gpus=()
    [[ "$name" == gpu_test ]] || hide_gpus=(env CUDA_VISIBLE_DEVICES=)
    if ! "${hide_gpus[@]}" timeout 300 "$test" --gtest_output="xml:$out/test_$name.xml" \
        >"$out/test_$name.log" 2>&1; then
      failed=1
      tail -40 "$out/test_$name.log"
    else
      tail -3 "$out/test_$name.log"
    fi
  done <"$build/tests.txt"
  return $failed
}

# One pretraining run; prints images/s and writes the run's record to $out/runs/<name>.
moco_run() {
  local name="$1"
  shift
  local dir="$out/runs/$name"
  rm -rf "$dir"
  mkdir -p "$dir"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$dir/memory.csv" 2>/dev/null &
  local smi=$!
  "$build/bin/tools/main_moco" --data="$data/train" --output_dir="$dir" \
    --workers=$((jobs > 4 ? jobs - 2 : 2)) --threads=2 --print_freq=10 --knn_every=0 "$@" \
    >"$dir/log.txt" 2>&1
  local rc=$?
  kill $smi 2>/dev/null
  wait $smi 2>/dev/null
  return $rc
}

do_bench() {
  export LD_LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # SSL_BENCH_SMOKE=1: the same plumbing at toy size (runs on a CPU, to check the script).
  local smoke="${SSL_BENCH_SMOKE:-0}" per_class=1000 size=432 crop=224
  local r50=resnet50 vits=vit_small batches="512 384 256 128" vit_batch=256 amps="fp16 bf16"
  if [ "$smoke" = 1 ]; then
    per_class=48 size=96 crop=64 r50=resnet18w0.25 vits=vit_tiny_patch8 batches="32" vit_batch=32
    amps="bf16"
  fi
  data="$repo/build/gpu_data_$size"
  if [ ! -d "$data/train" ]; then
    # 432 x 432: the pixel count of a 500 x 375 ImageNet JPEG.
    log "writing ImageNet-sized synthetic JPEGs ($size px)"
    "$build/bin/tools/make_synthetic_dataset" --output="$data" --num_classes=10 \
      --train_per_class=$per_class --val_per_class=10 --image_size=$size >/dev/null 2>&1 || {
      echo "make_synthetic_dataset failed" >&2
      return 1
    }
  fi
  local runs=()
  for amp in $amps; do
    for batch in $batches; do
      log "MoCo v3 $r50 $amp batch $batch"
      if moco_run "r50_${amp}_b$batch" --arch=$r50 --amp=$amp --batch_size=$batch \
        --image_size=$crop --epochs=100 --max_epochs_this_run=2 --lr=0.6 --optimizer=lars; then
        runs+=("r50_${amp}_b$batch")
        break
      fi
      grep -qi "out of memory" "$out/runs/r50_${amp}_b$batch/log.txt" ||
        { tail -5 "$out/runs/r50_${amp}_b$batch/log.txt"; break; }
    done
    log "MoCo v3 $vits $amp batch $vit_batch"
    moco_run "vits_${amp}_b$vit_batch" --arch=$vits --amp=$amp --batch_size=$vit_batch \
      --image_size=$crop --epochs=100 --max_epochs_this_run=2 --optimizer=adamw --lr=1.5e-4 \
      --weight_decay=0.1 --stop_grad_conv1 --moco_t=0.2 --warmup_epochs=40 &&
      runs+=("vits_${amp}_b$vit_batch")
  done
  log "CPU data pipeline vs torchvision + PIL, one core each, on the same JPEGs"
  "$build/bin/ssl/data/pipeline_benchmark" --data="$data/train" --benchmark_out_format=json \
    --benchmark_out="$out/pipeline_benchmark.json" >"$out/pipeline_benchmark.txt" 2>&1 ||
    log "pipeline benchmark failed"
  for recipe in moco multicrop; do
    "$python" tools/torchvision_pipeline_baseline.py "$data/train" 10 "$recipe" \
      >"$out/baseline_$recipe.txt" 2>&1 || log "torchvision baseline ($recipe) failed"
  done
  "$python" - "$out" "${runs[@]}" <<'PY'
import json, os, re, sys
out, runs = sys.argv[1], sys.argv[2:]
gpu = os.popen("nvidia-smi --query-gpu=name --format=csv,noheader").read().strip()
# Dense bf16/fp16 tensor-core peaks (NVIDIA datasheets), for model FLOP utilisation.
peak = 989e12 if ("H100" in gpu and "PCIe" not in gpu) or "H200" in gpu else 756e12
# Multiply-accumulates per 224 px image of one forward pass (fvcore counts).
macs = {"resnet50": 4.11e9, "vit_small": 4.61e9}
smoke = os.environ.get("SSL_BENCH_SMOKE") == "1"
results = {"gpu": gpu, "peak_flops_assumed": peak, "runs": {}}
for name in runs:
    d = os.path.join(out, "runs", name)
    epochs = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl")) if '"epoch"' in l]
    epochs = [e for e in epochs if e.get("type") == "epoch"]
    phases = epochs[-1]["seconds_by_phase"] if epochs else {}
    total = sum(phases.values()) or 1
    batch = int(re.search(r"_b(\d+)$", name).group(1))
    memory = [int(x) for x in open(os.path.join(d, "memory.csv")).read().split() if x.isdigit()]
    arch = "resnet50" if name.startswith("r50") else "vit_small"
    log_text = open(os.path.join(d, "log.txt")).read()
    iters = int(re.search(r"(\d+) iterations/epoch", log_text).group(1))
    # Steady state: the second epoch, with cuDNN's search and the first loads behind.
    ips = iters * batch / total
    # Per image: base encoder forward + backward on 2 views (3 passes each) and the
    # momentum encoder's forward on 2 views: 8 forward passes, 2 FLOPs per MAC.
    flops = 8 * 2 * macs[arch]
    results["runs"][name] = {
        "images_per_second": ips,
        "batch_per_gpu": batch,
        "data_share_of_step": phases.get("data", 0) / total,
        "seconds_by_phase": phases,
        "gpu_memory_peak_mib": max(memory) if memory else None,
        # Only meaningful for the real configurations (224 px ResNet-50 / ViT-S/16).
        "model_flop_utilisation": None if smoke else ips * flops / peak,
    }
pipeline = {}
try:
    # Plain rows, or the medians where rounds were repeated.
    benchmarks = [b for b in json.load(open(os.path.join(out, "pipeline_benchmark.json")))["benchmarks"]
                  if b.get("aggregate_name", "median") == "median"]
    for recipe, pattern in [("moco", "MocoV3TwoViewsOneThread"), ("multicrop", "SwavMultiCropOneThread")]:
        ours = [b for b in benchmarks if pattern in b["name"]][0]["items_per_second"]
        text = open(os.path.join(out, f"baseline_{recipe}.txt")).read()
        baseline = float(re.search(r"([0-9.]+) images/s", text).group(1))
        pipeline[recipe] = {"ours_images_per_second": ours,
                            "torchvision_images_per_second": baseline, "ratio": ours / baseline}
except Exception as e:
    pipeline["error"] = str(e)
results["pipeline_one_core"] = pipeline
# The threaded loader, 1 to 16 workers (the benchmark registers powers of two up to the
# core count): images/s and each worker's share of the one-thread pipeline's rate.
loader = {}
try:
    for recipe, pattern, prefix in [("moco", "MocoV3TwoViewsOneThread", "BM_MocoV3Loader/"),
                                    ("multicrop", "SwavMultiCropOneThread", "BM_SwavMultiCropLoader/")]:
        one = [b for b in benchmarks if pattern in b["name"]][0]["items_per_second"]
        for b in benchmarks:
            if b["name"].startswith(prefix):
                workers = int(b["name"][len(prefix):].split("/")[0])
                loader.setdefault(recipe, {})[workers] = {
                    "images_per_second": b["items_per_second"],
                    "share_per_worker": b["items_per_second"] / workers / one}
except Exception as e:
    loader["error"] = str(e)
results["loader_workers"] = loader
json.dump(results, open(os.path.join(out, "gpu_results.json"), "w"), indent=2)
print(json.dumps(results, indent=2))
PY
}

case "$stage" in
  build) do_build ;;
  test) do_test ;;
  bench) do_bench ;;
  all) do_build && { do_test; do_bench; } ;;
  *) echo "usage: tools/gpu/build_and_bench.sh [all|build|test|bench] [out_dir]" >&2; exit 2 ;;
esac
