#include "ssl/nn/winograd_conv.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/ops/conv2d.h>
#include <ATen/ops/convolution_backward.h>
#include <ATen/ops/empty.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/version.h>

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <utility>

#ifndef SSL_NO_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace ssl::nn {
namespace {

std::atomic<bool> winograd_enabled{false};

#ifndef SSL_NO_DNNL

using dnnl::memory;
using Tag = memory::format_tag;

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

memory Wrap(const at::Tensor& tensor, Tag tag) {
  const memory::dims dims(tensor.sizes().begin(), tensor.sizes().end());
  return memory(memory::desc(dims, memory::data_type::f32, tag), Engine(), tensor.data_ptr());
}

// Activations and weights come in LibTorch's default (NCHW, OIHW) or channels-last
// (NHWC, OHWI) order; oneDNN reads either directly.
bool ChannelsLast(const at::Tensor& tensor) {
  return !tensor.is_contiguous() && tensor.is_contiguous(at::MemoryFormat::ChannelsLast);
}
bool ReadableLayout(const at::Tensor& tensor) {
  return tensor.is_contiguous() || tensor.is_contiguous(at::MemoryFormat::ChannelsLast);
}
memory WrapActivation(const at::Tensor& tensor) {
  return Wrap(tensor, ChannelsLast(tensor) ? Tag::nhwc : Tag::nchw);
}
memory WrapWeight(const at::Tensor& tensor) {
  return Wrap(tensor, ChannelsLast(tensor) ? Tag::ohwi : Tag::oihw);
}
at::Tensor EmptyLike(const at::Tensor& like, at::IntArrayRef sizes) {
  return at::empty(sizes,
                   like.options().memory_format(ChannelsLast(like) ? at::MemoryFormat::ChannelsLast
                                                                   : at::MemoryFormat::Contiguous));
}
at::Tensor Readable(const at::Tensor& tensor) {
  return ReadableLayout(tensor) ? tensor : tensor.contiguous();
}

// `user` in the layout a primitive asks for: itself where the layouts agree, else a
// reordered copy.
memory Converted(const memory& user, const memory::desc& wanted, dnnl::stream& stream) {
  if (user.get_desc() == wanted) return user;
  memory converted(wanted, Engine());
  dnnl::reorder(user, converted).execute(stream, const_cast<memory&>(user), converted);
  return converted;
}

// A result computed in the primitive's layout, copied into `user` when that differs.
class Result {
 public:
  Result(memory user, const memory::desc& produced)
      : user_(std::move(user)),
        produced_(user_.get_desc() == produced ? user_ : memory(produced, Engine())) {}
  memory& produced() { return produced_; }
  void Finish(dnnl::stream& stream) {
    if (produced_.get_data_handle() != user_.get_data_handle()) {
      dnnl::reorder(produced_, user_).execute(stream, produced_, user_);
    }
  }

 private:
  memory user_;
  memory produced_;
};

// The convolution's shapes with every layout left to oneDNN (Winograd needs blocked
// layouts of its own).
struct Problem {
  explicit Problem(const at::Tensor& input, const at::Tensor& weight) {
    const int64_t n = input.size(0), c = input.size(1), h = input.size(2), w = input.size(3);
    const int64_t k = weight.size(0);
    src = memory::desc({n, c, h, w}, memory::data_type::f32, Tag::any);
    weights = memory::desc({k, c, 3, 3}, memory::data_type::f32, Tag::any);
    dst = memory::desc({n, k, h, w}, memory::data_type::f32, Tag::any);
  }
  dnnl::convolution_forward::primitive_desc Forward() const {
    return dnnl::convolution_forward::primitive_desc(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training,
                                        dnnl::algorithm::convolution_winograd, src, weights, dst,
                                        kStride, kPadding, kPadding),
        Engine());
  }
  memory::desc src, weights, dst;
  const memory::dims kStride{1, 1};
  const memory::dims kPadding{1, 1};
};

at::Tensor Forward(const at::Tensor& input, const at::Tensor& weight) {
  const Problem problem(input, weight);
  const auto pd = problem.Forward();
  dnnl::stream stream(Engine());
  at::Tensor output =
      EmptyLike(input, {input.size(0), weight.size(0), input.size(2), input.size(3)});
  memory src = Converted(WrapActivation(input), pd.src_desc(), stream);
  memory weights = Converted(WrapWeight(weight), pd.weights_desc(), stream);
  Result dst(WrapActivation(output), pd.dst_desc());
  dnnl::convolution_forward(pd).execute(
      stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst.produced()}});
  dst.Finish(stream);
  stream.wait();
  return output;
}

std::pair<at::Tensor, at::Tensor> Backward(const at::Tensor& input, const at::Tensor& weight,
                                           const at::Tensor& grad_output, bool input_grad,
                                           bool weight_grad) {
  const Problem problem(input, weight);
  const auto forward_pd = problem.Forward();
  dnnl::stream stream(Engine());
  const at::Tensor grad = Readable(grad_output);
  // The incoming gradient in each primitive's layout, reordered once when both backward
  // passes want the same one (the usual case).
  memory diff_dst = WrapActivation(grad);
  auto diff_dst_as = [&](const memory::desc& wanted) {
    diff_dst = Converted(diff_dst, wanted, stream);
    return diff_dst;
  };
  at::Tensor grad_input, grad_weight;
  if (input_grad) {
    const dnnl::convolution_backward_data::primitive_desc pd(
        dnnl::convolution_backward_data::desc(dnnl::algorithm::convolution_winograd, problem.src,
                                              problem.weights, problem.dst, problem.kStride,
                                              problem.kPadding, problem.kPadding),
        Engine(), forward_pd);
    grad_input = EmptyLike(input, input.sizes());
    memory weights = Converted(WrapWeight(weight), pd.weights_desc(), stream);
    Result diff_src(WrapActivation(grad_input), pd.diff_src_desc());
    dnnl::convolution_backward_data(pd).execute(
        stream, {{DNNL_ARG_DIFF_DST, diff_dst_as(pd.diff_dst_desc())},
                 {DNNL_ARG_WEIGHTS, weights},
                 {DNNL_ARG_DIFF_SRC, diff_src.produced()}});
    diff_src.Finish(stream);
  }
  if (weight_grad) {
    const dnnl::convolution_backward_weights::primitive_desc pd(
        dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_winograd, problem.src,
                                                 problem.weights, problem.dst, problem.kStride,
                                                 problem.kPadding, problem.kPadding),
        Engine(), forward_pd);
    grad_weight = EmptyLike(weight, weight.sizes());
    memory src = Converted(WrapActivation(input), pd.src_desc(), stream);
    Result diff_weights(WrapWeight(grad_weight), pd.diff_weights_desc());
    dnnl::convolution_backward_weights(pd).execute(
        stream, {{DNNL_ARG_SRC, src},
                 {DNNL_ARG_DIFF_DST, diff_dst_as(pd.diff_dst_desc())},
                 {DNNL_ARG_DIFF_WEIGHTS, diff_weights.produced()}});
    diff_weights.Finish(stream);
  }
  stream.wait();
  return {grad_input, grad_weight};
}

class WinogradFunction : public torch::autograd::Function<WinogradFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input,
                            const at::Tensor& weight) {
    ctx->save_for_backward({input, weight});
    return Forward(input, weight);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const torch::autograd::variable_list saved = ctx->get_saved_variables();
    auto [grad_input, grad_weight] =
        Backward(saved[0], saved[1], grads[0], ctx->needs_input_grad(0), ctx->needs_input_grad(1));
    return {grad_input, grad_weight};
  }
};

// Weight gradients of 3x3 convolutions (padding 1, stride 1 or 2) on small maps, as nine
// matrix products, one per kernel tap, each over the output positions where that tap
// meets the image: [K, positions x images] x [positions x images, C]. oneDNN's direct
// algorithm spends most of its time there on padded taps (more than half of them on 2x2
// maps) and on reordering the weights; the products skip both. The forward pass and the
// input gradient stay LibTorch's own (bit-identical); only the weight gradient's sums are
// ordered differently.

// [K, 3, 3, C] (one tap's gradient per [K, C] slice) -> [K, C, 3, 3].
at::Tensor TapMajorToFilterMajor(const at::Tensor& tap_major) {
  const int64_t filters = tap_major.size(0), channels = tap_major.size(3);
  at::Tensor grad = at::empty({filters, channels, 3, 3}, tap_major.options());
  const float* in = tap_major.data_ptr<float>();
  float* out = grad.data_ptr<float>();
  at::parallel_for(0, filters, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const float* filter_in = in + k * 9 * channels;
      float* filter_out = out + k * channels * 9;
      for (int64_t c = 0; c < channels; ++c) {
        for (int t = 0; t < 9; ++t) filter_out[c * 9 + t] = filter_in[t * channels + c];
      }
    }
  });
  return grad;
}

// The first and one-past-last output index whose input index stride * o + tap - 1 lies in
// [0, size).
std::pair<int64_t, int64_t> TapRange(int64_t tap, int64_t stride, int64_t size,
                                     int64_t output_size) {
  const int64_t first = tap == 0 ? 1 : 0;
  const int64_t last_input = size - tap;  // stride * o <= size - tap
  const int64_t end = last_input < 0 ? 0 : std::min(output_size, last_input / stride + 1);
  return {first, std::max(first, end)};
}

// `matrix` with unit-stride rows at least a row apart (what BLAS reads), copied if not.
at::Tensor RowMajor(const at::Tensor& matrix) {
  return matrix.stride(1) == 1 && matrix.stride(0) >= matrix.size(1) ? matrix : matrix.contiguous();
}

// Channels innermost (N, H, W, C), so that each position's channels are one matrix row;
// free for channels-last tensors.
at::Tensor Nhwc(const at::Tensor& tensor) { return tensor.permute({0, 2, 3, 1}).contiguous(); }

// An NHWC result in the layout LibTorch gives for `like`: a channels-last view, or NCHW.
at::Tensor InLayoutOf(const at::Tensor& nhwc, const at::Tensor& like) {
  const at::Tensor nchw = nhwc.permute({0, 3, 1, 2});
  return ChannelsLast(like) ? nchw : nchw.contiguous();
}

// The positions of an NHWC map that tap (ty, tx) reads for outputs [y_begin, y_end) x
// [x_begin, x_end).
at::Tensor TapWindow(const at::Tensor& nhwc, int64_t ty, int64_t tx, int64_t stride,
                     int64_t y_begin, int64_t y_end, int64_t x_begin, int64_t x_end) {
  return nhwc.slice(1, stride * y_begin + ty - 1, stride * (y_end - 1) + ty, stride)
      .slice(2, stride * x_begin + tx - 1, stride * (x_end - 1) + tx, stride);
}

// Calls `visit(ty, tx, y_begin, y_end, x_begin, x_end)` for each tap that meets the
// image, the centre tap first: it meets it at every output (so it can write where the
// others add).
template <typename Visit>
void ForEachTap(int64_t stride, int64_t height, int64_t width, int64_t out_height,
                int64_t out_width, Visit visit) {
  for (const int tap : {4, 0, 1, 2, 3, 5, 6, 7, 8}) {
    const int64_t ty = tap / 3, tx = tap % 3;
    const auto [y_begin, y_end] = TapRange(ty, stride, height, out_height);
    const auto [x_begin, x_end] = TapRange(tx, stride, width, out_width);
    if (y_begin < y_end && x_begin < x_end) visit(ty, tx, y_begin, y_end, x_begin, x_end);
  }
}

// oneDNN's sgemm (row-major: c = a b) runs on the OpenMP threads; LibTorch's mm would go
// to OpenBLAS, whose own spinning threads contend with them for the cores.
void Sgemm(char transa, char transb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  dnnl::sgemm(transa, transb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

// [K, C, 3, 3] -> [3, 3, K, C]: each tap's weights as one [K, C] matrix. A permuting
// copy gathers element by element (~3 ms for 512x512 on two threads); here each filter's
// 9C values are read nine times from cache while whole rows are written.
at::Tensor TapWeights(const at::Tensor& weight) {
  if (ChannelsLast(weight)) return weight.permute({2, 3, 0, 1}).contiguous();  // C innermost
  const at::Tensor w = weight.contiguous();
  const int64_t filters = w.size(0), channels = w.size(1);
  at::Tensor taps = at::empty({3, 3, filters, channels}, w.options());
  const float* in = w.data_ptr<float>();
  float* out = taps.data_ptr<float>();
  at::parallel_for(0, filters, 16, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const float* filter = in + k * channels * 9;
      for (int64_t t = 0; t < 9; ++t) {
        float* row = out + (t * filters + k) * channels;
        for (int64_t c = 0; c < channels; ++c) row[c] = filter[c * 9 + t];
      }
    }
  });
  return taps;
}

// y[n, o] = sum over taps of x[n, stride * o + tap - 1] W_tap^T, NHWC in and out.
at::Tensor TapForward(const at::Tensor& x, const at::Tensor& taps, int64_t stride) {
  const int64_t n = x.size(0), height = x.size(1), width = x.size(2), channels = x.size(3);
  const int64_t filters = taps.size(2);
  const int64_t out_height = (height - 1) / stride + 1, out_width = (width - 1) / stride + 1;
  at::Tensor y = at::empty({n, out_height, out_width, filters}, x.options());
  ForEachTap(
      stride, height, width, out_height, out_width,
      [&](int64_t ty, int64_t tx, int64_t y_begin, int64_t y_end, int64_t x_begin, int64_t x_end) {
        const at::Tensor rows = RowMajor(
            TapWindow(x, ty, tx, stride, y_begin, y_end, x_begin, x_end).reshape({-1, channels}));
        const float* w = taps.data_ptr<float>() + (ty * 3 + tx) * channels * filters;
        const bool centre = ty == 1 && tx == 1;
        at::Tensor product = centre ? y : at::empty({rows.size(0), filters}, x.options());
        Sgemm('N', 'T', rows.size(0), filters, channels, rows.data_ptr<float>(), rows.stride(0), w,
              channels, 0.0f, product.data_ptr<float>(), filters);
        if (!centre) {
          y.slice(1, y_begin, y_end)
              .slice(2, x_begin, x_end)
              .add_(product.view({n, y_end - y_begin, x_end - x_begin, filters}));
        }
      });
  return y;
}

// The input gradient: g[n, o] W_tap added at x's position stride * o + tap - 1, NHWC.
at::Tensor TapInputGradient(const at::Tensor& g, const at::Tensor& taps, int64_t stride,
                            int64_t height, int64_t width) {
  const int64_t n = g.size(0), filters = g.size(3), channels = taps.size(3);
  // At stride 1 the centre tap writes every position; at stride 2 some get nothing.
  at::Tensor grad = stride == 1 ? at::empty({n, height, width, channels}, g.options())
                                : at::zeros({n, height, width, channels}, g.options());
  ForEachTap(
      stride, height, width, g.size(1), g.size(2),
      [&](int64_t ty, int64_t tx, int64_t y_begin, int64_t y_end, int64_t x_begin, int64_t x_end) {
        const at::Tensor rows =
            RowMajor(g.slice(1, y_begin, y_end).slice(2, x_begin, x_end).reshape({-1, filters}));
        const float* w = taps.data_ptr<float>() + (ty * 3 + tx) * channels * filters;
        const bool direct = stride == 1 && ty == 1 && tx == 1;
        at::Tensor product = direct ? grad : at::empty({rows.size(0), channels}, g.options());
        Sgemm('N', 'N', rows.size(0), channels, filters, rows.data_ptr<float>(), rows.stride(0), w,
              channels, 0.0f, product.data_ptr<float>(), channels);
        if (!direct) {
          TapWindow(grad, ty, tx, stride, y_begin, y_end, x_begin, x_end)
              .add_(product.view({n, y_end - y_begin, x_end - x_begin, channels}));
        }
      });
  return grad;
}

// The weight gradient from NHWC x and g: per tap, g's rows^T x's rows over the outputs
// where the tap meets the image.
at::Tensor TapWeightGradient(const at::Tensor& x, const at::Tensor& g, int64_t stride,
                             bool channels_last) {
  const int64_t channels = x.size(3), filters = g.size(3);
  at::Tensor tap_major = at::zeros({filters, 3, 3, channels}, x.options());
  ForEachTap(
      stride, x.size(1), x.size(2), g.size(1), g.size(2),
      [&](int64_t ty, int64_t tx, int64_t y_begin, int64_t y_end, int64_t x_begin, int64_t x_end) {
        const at::Tensor outputs =
            RowMajor(g.slice(1, y_begin, y_end).slice(2, x_begin, x_end).reshape({-1, filters}));
        const at::Tensor inputs = RowMajor(
            TapWindow(x, ty, tx, stride, y_begin, y_end, x_begin, x_end).reshape({-1, channels}));
        // [K, C], rows 9C apart.
        float* tap_grad = tap_major.data_ptr<float>() + (ty * 3 + tx) * channels;
        Sgemm('T', 'N', filters, channels, outputs.size(0), outputs.data_ptr<float>(),
              outputs.stride(0), inputs.data_ptr<float>(), inputs.stride(0), 0.0f, tap_grad,
              9 * channels);
      });
  // A channels-last weight is laid out [K, 3, 3, C] already.
  return channels_last ? tap_major.permute({0, 3, 1, 2}) : TapMajorToFilterMajor(tap_major);
}

class TapWeightGradientFunction : public torch::autograd::Function<TapWeightGradientFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input,
                            const at::Tensor& weight, int64_t stride) {
    ctx->save_for_backward({input, weight});
    ctx->saved_data["stride"] = stride;
    return at::conv2d(input, weight, {}, stride, 1);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const torch::autograd::variable_list saved = ctx->get_saved_variables();
    const at::Tensor &input = saved[0], &weight = saved[1];
    const int64_t stride = ctx->saved_data["stride"].toInt();
    const at::Tensor grad = Readable(grads[0]);
    at::Tensor grad_input, grad_weight;
    if (ctx->needs_input_grad(0)) {
      grad_input = std::get<0>(at::convolution_backward(grad, input, weight, c10::nullopt,
                                                        {stride, stride}, {1, 1}, {1, 1}, false,
                                                        {0, 0}, 1, {true, false, false}));
    }
    if (ctx->needs_input_grad(1)) {
      grad_weight = TapWeightGradient(Nhwc(input), Nhwc(grad), stride, ChannelsLast(weight));
    }
    return {grad_input, grad_weight, at::Tensor()};
  }
};

// The whole convolution as per-tap products (forward, input and weight gradients), for
// the smallest maps: oneDNN's direct kernel computes every tap, padded ones included
// (5 of 9 per output on a 2x2 map), and reorders the weights for each pass; here each
// tap's valid positions are one product and the weights are rearranged once per step.
class TapConvolutionFunction : public torch::autograd::Function<TapConvolutionFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input,
                            const at::Tensor& weight, int64_t stride) {
    const at::Tensor taps = TapWeights(weight);
    const at::Tensor nhwc_input = Nhwc(input);
    // The NHWC input is kept for the weight gradient rather than rebuilt there (a copy
    // for NCHW inputs); `input` itself gives the gradient's sizes and layout.
    ctx->save_for_backward({input, weight, nhwc_input});
    ctx->saved_data["taps"] = taps;
    ctx->saved_data["stride"] = stride;
    return InLayoutOf(TapForward(nhwc_input, taps, stride), input);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const torch::autograd::variable_list saved = ctx->get_saved_variables();
    const at::Tensor &input = saved[0], &weight = saved[1];
    const int64_t stride = ctx->saved_data["stride"].toInt();
    const at::Tensor g = Nhwc(grads[0]);
    at::Tensor grad_input, grad_weight;
    if (ctx->needs_input_grad(0)) {
      grad_input = InLayoutOf(TapInputGradient(g, ctx->saved_data["taps"].toTensor(), stride,
                                               input.size(2), input.size(3)),
                              input);
    }
    if (ctx->needs_input_grad(1)) {
      grad_weight = TapWeightGradient(saved[2], g, stride, ChannelsLast(weight));
    }
    return {grad_input, grad_weight, at::Tensor()};
  }
};

// A 4-D input whose channels a 3x3 kernel reads.
bool Is3x3Shape(const at::Tensor& input, const at::Tensor& weight) {
  return input.dim() == 4 && weight.dim() == 4 && weight.size(2) == 3 && weight.size(3) == 3 &&
         input.size(1) == weight.size(1);
}

bool IsWinogradShape(const at::Tensor& input, const at::Tensor& weight) {
  return Is3x3Shape(input, weight) && input.size(1) % 16 == 0 && weight.size(0) % 16 == 0 &&
         input.size(2) >= 8 && input.size(3) >= 8;
}

// The tap products pay off where outputs are small (larger stride-1 maps take Winograd).
bool IsTapWeightGradientShape(const at::Tensor& input, const at::Tensor& weight, int64_t stride) {
  if (!Is3x3Shape(input, weight) || (stride != 1 && stride != 2)) return false;
  const int64_t output_height = (input.size(2) - 1) / stride + 1;
  const int64_t output_width = (input.size(3) - 1) / stride + 1;
  return std::min(output_height, output_width) < 8;
}

// Outputs of at most 2x2, where most taps are padding.
bool IsTapConvolutionShape(const at::Tensor& input, int64_t stride) {
  return std::max((input.size(2) - 1) / stride + 1, (input.size(3) - 1) / stride + 1) <= 2;
}

#endif  // SSL_NO_DNNL

}  // namespace

void SetWinogradConvolutions(bool enabled) {
  if (enabled && !WinogradConvolutionsAvailable()) {
    throw std::invalid_argument(
        "Winograd convolutions need oneDNN's AVX-512 kernels, which this CPU or build lacks");
  }
  winograd_enabled = enabled;
}
bool WinogradConvolutionsEnabled() { return winograd_enabled; }

bool WinogradConvolutionsAvailable() {
#ifdef SSL_NO_DNNL
  return false;
#else
  // oneDNN has Winograd kernels for AVX-512 CPUs only: ask it once for a small problem.
  static const bool available = [] {
    try {
      Problem(at::empty({1, 16, 8, 8}), at::empty({16, 16, 3, 3})).Forward();
      return true;
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return available;
#endif
}

namespace {

// The stride of a bias-free convolution with zero padding 1, no dilation, one group and
// equal strides, whose CPU float32 tensors oneDNN can read, with autocast off and the
// switch on; 0 for anything else (the kernel and map sizes are the callers' to check).
#ifndef SSL_NO_DNNL
int64_t EligibleStride(const torch::nn::Conv2dImpl& conv, const at::Tensor& input) {
  if (!winograd_enabled || !WinogradConvolutionsAvailable()) return 0;
  const at::Tensor& weight = conv.weight;
  if (!input.device().is_cpu() || input.scalar_type() != at::kFloat || !ReadableLayout(input) ||
      !weight.device().is_cpu() || weight.scalar_type() != at::kFloat || !ReadableLayout(weight) ||
      conv.bias.defined() || at::autocast::is_cpu_enabled()) {
    return 0;
  }
  const auto& options = conv.options;  // ConvNdOptions<2>
  const at::IntArrayRef stride = options.stride(), dilation = options.dilation();
  // Padding is a variant (sizes, "valid" or "same"): c10's until PyTorch 2.1, std's since.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
  const auto* padding = std::get_if<torch::ExpandingArray<2> >(&options.padding());
  const bool zeros = std::holds_alternative<torch::enumtype::kZeros>(options.padding_mode());
#else
  const auto* padding = c10::get_if<torch::ExpandingArray<2> >(&options.padding());
  const bool zeros = c10::holds_alternative<torch::enumtype::kZeros>(options.padding_mode());
#endif
  const bool plain = padding != nullptr && (**padding)[0] == 1 && (**padding)[1] == 1 && zeros &&
                     stride[0] == stride[1] && dilation[0] == 1 && dilation[1] == 1 &&
                     options.groups() == 1 && !options.transposed();
  return plain ? stride[0] : 0;
}
#endif  // SSL_NO_DNNL

enum class ConvPath { kDirect, kWinograd, kTapWeightGradient, kTapConvolution };

// Which algorithm Conv2dForward takes: the eligibility is read once per call.
ConvPath ChoosePath(const torch::nn::Conv2dImpl& conv, const at::Tensor& input) {
#ifndef SSL_NO_DNNL
  const int64_t stride = EligibleStride(conv, input);
  if (stride == 1 && IsWinogradShape(input, conv.weight)) return ConvPath::kWinograd;
  if (stride != 0 && IsTapWeightGradientShape(input, conv.weight, stride)) {
    return IsTapConvolutionShape(input, stride) ? ConvPath::kTapConvolution
                                                : ConvPath::kTapWeightGradient;
  }
#endif
  return ConvPath::kDirect;
}

}  // namespace

bool UsesWinograd(const torch::nn::Conv2dImpl& conv, const at::Tensor& input) {
  return ChoosePath(conv, input) == ConvPath::kWinograd;
}

bool UsesTapWeightGradient(const torch::nn::Conv2dImpl& conv, const at::Tensor& input) {
  return ChoosePath(conv, input) == ConvPath::kTapWeightGradient;
}

bool UsesTapConvolution(const torch::nn::Conv2dImpl& conv, const at::Tensor& input) {
  return ChoosePath(conv, input) == ConvPath::kTapConvolution;
}

at::Tensor Conv2dForward(torch::nn::Conv2dImpl& conv, const at::Tensor& input) {
#ifndef SSL_NO_DNNL
  switch (ChoosePath(conv, input)) {
    case ConvPath::kWinograd:
      return WinogradFunction::apply(input, conv.weight);
    case ConvPath::kTapWeightGradient:
      return TapWeightGradientFunction::apply(input, conv.weight, (*conv.options.stride())[0]);
    case ConvPath::kTapConvolution:
      return TapConvolutionFunction::apply(input, conv.weight, (*conv.options.stride())[0]);
    case ConvPath::kDirect:
      break;
  }
#endif
  return conv.forward(input);
}

at::Tensor WinogradConv3x3(const at::Tensor& input, const at::Tensor& weight) {
#ifdef SSL_NO_DNNL
  (void)input;
  (void)weight;
  throw std::invalid_argument("this build has no oneDNN Winograd convolutions");
#else
  if (!WinogradConvolutionsAvailable() || !input.device().is_cpu() ||
      input.scalar_type() != at::kFloat || weight.scalar_type() != at::kFloat ||
      !IsWinogradShape(input, weight)) {
    throw std::invalid_argument(
        "Winograd convolutions take float32 CPU inputs with channel counts divisible by 16, "
        "maps of 8x8 or more and 3x3 kernels");
  }
  try {
    return WinogradFunction::apply(Readable(input), Readable(weight));
  } catch (const dnnl::error& e) {
    throw std::invalid_argument(std::string("oneDNN has no Winograd kernel here: ") + e.what());
  }
#endif
}

}  // namespace ssl::nn
