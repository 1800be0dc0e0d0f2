// Max pooling of contiguous (NCHW) float32 CPU maps, with the same outputs, the same
// choice of maximum among equal values and the same gradient sums as LibTorch's
// max_pool2d, bit for bit, several times faster.
//
// LibTorch 1.13's NCHW kernel spends ~20 ms on a ResNet stem's pooling at 64 px and batch
// 64 (two threads): about 7% of a MoCo v3 step, the only cost there that is pure
// overhead. Its channels-last kernel is fast, but converting to it and back costs as much
// as it saves.
#ifndef SSL_NN_MAX_POOL_H_
#define SSL_NN_MAX_POOL_H_

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace ssl::nn {

/// at::max_pool2d(input, kernel, stride, padding) with square windows, no dilation and
/// floor rounding; differentiable with respect to the input. Contiguous float32 CPU
/// inputs (N, C, H, W) take this file's kernel; anything else (CUDA, channels-last,
/// other types, 3-D inputs) goes to at::max_pool2d itself.
at::Tensor MaxPool2d(const at::Tensor& input, int64_t kernel, int64_t stride, int64_t padding);

/// Whether MaxPool2d takes its own kernel for this input (for tests and benchmarks).
bool UsesOwnMaxPoolKernel(const at::Tensor& input);

}  // namespace ssl::nn

#endif  // SSL_NN_MAX_POOL_H_
