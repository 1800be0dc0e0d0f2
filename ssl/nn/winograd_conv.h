// 3x3 convolutions on the CPU through oneDNN's Winograd algorithm (F(4x4, 3x3)),
// forward and both backward passes; and, on smaller maps where Winograd does not pay,
// one matrix product per kernel tap over the positions where the tap meets the image:
// for weight gradients, and on outputs of at most 2x2 for the whole convolution
// (--winograd turns on all of them).
//
// LibTorch's CPU convolutions (oneDNN's direct algorithm) already run at the machine's
// matrix-multiply rate; Winograd does about half the multiplications for a 3x3 kernel on
// maps of 8x8 and larger (measured about 2x faster there for ResNet widths, and slower
// on 4x4 and smaller maps, which it therefore leaves alone). The sums are the same
// convolution but rounded differently (relative differences around 1e-6), so it is
// opt-in, as cuDNN's benchmark mode picks Winograd kernels on GPUs.
#ifndef SSL_NN_WINOGRAD_CONV_H_
#define SSL_NN_WINOGRAD_CONV_H_

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/conv.h>

namespace ssl::nn {

/// Process-wide switch (off by default); thread-safe.
void SetWinogradConvolutions(bool enabled);
bool WinogradConvolutionsEnabled();

/// Whether this build has oneDNN's Winograd kernels (not the GPU machine's CMake build).
bool WinogradConvolutionsAvailable();

/// True where Conv2dForward would take the Winograd path: switch on, CPU float32
/// contiguous NCHW input, no autocast, a bias-free 3x3 kernel with stride 1, padding 1,
/// dilation 1, one group, channel counts that are multiples of 16, and maps of at
/// least 8x8.
bool UsesWinograd(const torch::nn::Conv2dImpl& conv, const at::Tensor& input);

/// True where Conv2dForward would compute the weight gradient as per-tap matrix products
/// (see winograd_conv.cc): switch on, the tensors and options UsesWinograd asks for but
/// with stride 1 or 2, an output map with a side under 8 but larger than 2x2 (those
/// take UsesTapConvolution), and not taken by Winograd. The output and the input
/// gradient are LibTorch's own; only the weight gradient differs (in rounding).
bool UsesTapWeightGradient(const torch::nn::Conv2dImpl& conv, const at::Tensor& input);

/// True where Conv2dForward would compute the whole convolution (output, input and
/// weight gradients) as per-tap matrix products: the cases UsesTapWeightGradient
/// describes whose output is at most 2x2, where most taps fall on padding. Equal to
/// LibTorch's results up to rounding.
bool UsesTapConvolution(const torch::nn::Conv2dImpl& conv, const at::Tensor& input);

/// conv->forward(input), through Winograd where UsesWinograd says so, with per-tap
/// weight gradients where UsesTapWeightGradient does and per-tap products throughout
/// where UsesTapConvolution does; differentiable with respect to the input and the
/// weight either way.
at::Tensor Conv2dForward(torch::nn::Conv2dImpl& conv, const at::Tensor& input);

/// The Winograd convolution itself (stride 1, padding 1, no bias); for tests and
/// benchmarks. Throws std::invalid_argument where oneDNN has no Winograd kernel for it.
at::Tensor WinogradConv3x3(const at::Tensor& input, const at::Tensor& weight);

}  // namespace ssl::nn

#endif  // SSL_NN_WINOGRAD_CONV_H_
