// One 3x3 convolution's forward and backward (input and weight gradients) through
// LibTorch (oneDNN's direct algorithm, what every CPU run uses by default) and through
// ssl::nn::WinogradConv3x3 (--winograd), at the shapes of ResNet-18's four stages for a
// 64 px MoCo v3 batch of 32 (maps of 16, 8, 4 and 2 pixels; Winograd on 16 and 8).
//
//   bazel run -c opt //ssl/nn:winograd_conv_benchmark -- --benchmark_min_time=0.5
//
// Each Winograd row's "vs_direct" counter is the direct row's time over its own, both
// measured in the same run.
#include <ATen/Parallel.h>
#include <ATen/ops/conv2d.h>
#include <ATen/ops/randn.h>
#include <benchmark/benchmark.h>

#include <chrono>
#include <map>
#include <utility>

#include "ssl/nn/winograd_conv.h"

namespace {

// Seconds per iteration of the direct rows, by stage, for the Winograd rows' ratio.
std::map<int64_t, double>& DirectSeconds() {
  static std::map<int64_t, double> seconds;
  return seconds;
}

void Run(benchmark::State& state, bool winograd) {
  at::set_num_threads(2);
  const int64_t channels = state.range(0), size = state.range(1);
  const at::Tensor input = at::randn({32, channels, size, size}).requires_grad_();
  const at::Tensor weight = at::randn({channels, channels, 3, 3}).requires_grad_();
  const at::Tensor upstream = at::randn({32, channels, size, size});
  double total = 0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    const at::Tensor output = winograd ? ssl::nn::WinogradConv3x3(input, weight)
                                       : at::conv2d(input, weight, {}, 1, 1);
    output.backward(upstream);
    total += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    input.mutable_grad().reset();
    weight.mutable_grad().reset();
  }
  const double per_iteration = total / static_cast<double>(state.iterations());
  if (!winograd) {
    DirectSeconds()[channels] = per_iteration;
  } else if (DirectSeconds().count(channels) != 0) {
    state.counters["vs_direct"] = DirectSeconds()[channels] / per_iteration;
  }
}

void BM_Direct(benchmark::State& state) { Run(state, false); }
void BM_Winograd(benchmark::State& state) {
  if (!ssl::nn::WinogradConvolutionsAvailable()) {
    state.SkipWithError("no oneDNN Winograd kernels on this CPU");
    return;
  }
  Run(state, true);
}

// {channels, map size} of ResNet-18's stages at 64 px; Winograd takes the first two
// (maps of 4x4 and smaller stay on the direct algorithm).
void Stages(benchmark::internal::Benchmark* b) {
  b->Args({64, 16})->Args({128, 8})->Args({256, 4})->Args({512, 2});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
void WinogradStages(benchmark::internal::Benchmark* b) {
  b->Args({64, 16})->Args({128, 8});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

// Direct first, so that each Winograd row can be compared with it.
BENCHMARK(BM_Direct)->Apply(Stages);
BENCHMARK(BM_Winograd)->Apply(WinogradStages);

BENCHMARK_MAIN();
