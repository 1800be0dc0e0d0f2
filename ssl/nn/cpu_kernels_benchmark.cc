// ssl/nn's CPU kernels against LibTorch's, each ratio measured in the same run.
//
// Convolutions: ResNet-18's 3x3 convolutions for a 64 px MoCo v3 batch of 32 (maps of
// 16, 8, 4 and 2 pixels; stride 1 and the stride-2 first convolution of each later
// stage), forward and backward (input and weight gradients), through
// ssl::nn::Conv2dForward with --winograd off (LibTorch: oneDNN's direct algorithm, what
// every CPU run uses by default) and on (oneDNN's Winograd kernels on stride-1 maps of
// 8x8 and more; per-tap weight-gradient products on smaller outputs). Each BM_Fast row's
// "vs_direct" counter is the BM_Direct row's time over its own; "path" says which
// algorithm --winograd takes there.
//
// Max pooling: the ResNet stem's 3x3 / stride 2 pooling of a 64 px batch of 64 (MoCo v3's
// two views; 64 channels of 32x32), forward only (the momentum encoder) and forward +
// backward, at::max_pool2d vs ssl::nn::MaxPool2d ("vs_libtorch").
//
//   bazel run -c opt //ssl/nn:cpu_kernels_benchmark -- --benchmark_min_time=0.5
#include <ATen/Parallel.h>
#include <ATen/ops/max_pool2d.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/randn_like.h>
#include <benchmark/benchmark.h>
#include <torch/nn/modules/conv.h>

#include <chrono>
#include <map>
#include <tuple>

#include "ssl/nn/max_pool.h"
#include "ssl/nn/winograd_conv.h"

namespace {

using Shape = std::tuple<int64_t, int64_t, int64_t, int64_t>;

// Seconds per iteration of the direct rows, by shape, for the fast rows' ratio.
std::map<Shape, double>& DirectSeconds() {
  static std::map<Shape, double> seconds;
  return seconds;
}

void Run(benchmark::State& state, bool fast) {
  at::set_num_threads(2);
  const int64_t channels = state.range(0), filters = state.range(1), size = state.range(2),
                stride = state.range(3);
  torch::nn::Conv2d conv(
      torch::nn::Conv2dOptions(channels, filters, 3).padding(1).stride(stride).bias(false));
  const at::Tensor input = at::randn({32, channels, size, size}).requires_grad_();
  const at::Tensor upstream = at::randn_like(conv->forward(input));
  ssl::nn::SetWinogradConvolutions(fast);
  double total = 0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    ssl::nn::Conv2dForward(*conv, input).backward(upstream);
    total += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    input.mutable_grad().reset();
    conv->weight.mutable_grad().reset();
  }
  const double per_iteration = total / static_cast<double>(state.iterations());
  const Shape shape{channels, filters, size, stride};
  if (!fast) {
    DirectSeconds()[shape] = per_iteration;
  } else {
    state.SetLabel(ssl::nn::UsesWinograd(*conv, input)            ? "winograd"
                   : ssl::nn::UsesTapWeightGradient(*conv, input) ? "tap weight gradients"
                   : ssl::nn::UsesTapConvolution(*conv, input)    ? "tap convolution"
                                                                  : "direct");
    if (DirectSeconds().count(shape) != 0) {
      state.counters["vs_direct"] = DirectSeconds()[shape] / per_iteration;
    }
  }
  ssl::nn::SetWinogradConvolutions(false);
}

void BM_Direct(benchmark::State& state) { Run(state, false); }
void BM_Fast(benchmark::State& state) {
  if (!ssl::nn::WinogradConvolutionsAvailable()) {
    state.SkipWithError("no oneDNN Winograd kernels on this CPU");
    return;
  }
  Run(state, true);
}

// {in channels, out channels, input map size, stride} of ResNet-18's 3x3 convolutions
// at 64 px.
void Shapes(benchmark::internal::Benchmark* b) {
  b->Args({64, 64, 16, 1})->Args({64, 128, 16, 2})->Args({128, 128, 8, 1});
  b->Args({128, 256, 8, 2})->Args({256, 256, 4, 1})->Args({256, 512, 4, 2});
  b->Args({512, 512, 2, 1});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

// Seconds per iteration of LibTorch's pooling, forward only (0) and with backward (1).
double libtorch_pool_seconds[2] = {0, 0};

void RunMaxPool(benchmark::State& state, bool ours) {
  at::set_num_threads(2);
  const bool backward = state.range(0) != 0;
  const at::Tensor input = at::randn({64, 64, 32, 32}).requires_grad_(backward);
  const at::Tensor upstream = at::randn({64, 64, 16, 16});
  double total = 0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    const at::Tensor output =
        ours ? ssl::nn::MaxPool2d(input, 3, 2, 1) : at::max_pool2d(input, {3, 3}, {2, 2}, {1, 1});
    if (backward) output.backward(upstream);
    total += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (backward) input.mutable_grad().reset();
  }
  const double per_iteration = total / static_cast<double>(state.iterations());
  if (!ours) {
    libtorch_pool_seconds[backward] = per_iteration;
  } else if (libtorch_pool_seconds[backward] > 0) {
    state.counters["vs_libtorch"] = libtorch_pool_seconds[backward] / per_iteration;
  }
}
void BM_MaxPoolLibTorch(benchmark::State& state) { RunMaxPool(state, false); }
void BM_MaxPoolOurs(benchmark::State& state) { RunMaxPool(state, true); }

}  // namespace

// Direct first, so that each fast row can be compared with it.
BENCHMARK(BM_Direct)->Apply(Shapes);
BENCHMARK(BM_Fast)->Apply(Shapes);
// Argument: 0 forward only, 1 forward and backward.
BENCHMARK(BM_MaxPoolLibTorch)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_MaxPoolOurs)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
