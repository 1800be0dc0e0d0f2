#include "ssl/nn/winograd_conv.h"

#include <ATen/autocast_mode.h>
#include <ATen/ops/empty.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/version.h>

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
  return at::empty(sizes, like.options().memory_format(ChannelsLast(like)
                                                           ? at::MemoryFormat::ChannelsLast
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
                                        dnnl::algorithm::convolution_winograd, src, weights,
                                        dst, kStride, kPadding, kPadding),
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
        dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_winograd,
                                                 problem.src, problem.weights, problem.dst,
                                                 problem.kStride, problem.kPadding,
                                                 problem.kPadding),
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
    auto [grad_input, grad_weight] = Backward(saved[0], saved[1], grads[0],
                                              ctx->needs_input_grad(0), ctx->needs_input_grad(1));
    return {grad_input, grad_weight};
  }
};

bool IsWinogradShape(const at::Tensor& input, const at::Tensor& weight) {
  return input.dim() == 4 && weight.dim() == 4 && weight.size(2) == 3 && weight.size(3) == 3 &&
         input.size(1) == weight.size(1) && input.size(1) % 16 == 0 && weight.size(0) % 16 == 0 &&
         input.size(2) >= 8 && input.size(3) >= 8;
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

bool UsesWinograd(const torch::nn::Conv2dImpl& conv, const at::Tensor& input) {
#ifdef SSL_NO_DNNL
  (void)conv;
  (void)input;
  return false;
#else
  if (!winograd_enabled || !WinogradConvolutionsAvailable()) return false;
  const at::Tensor& weight = conv.weight;
  if (!input.device().is_cpu() || input.scalar_type() != at::kFloat || !ReadableLayout(input) ||
      !weight.device().is_cpu() || weight.scalar_type() != at::kFloat || !ReadableLayout(weight) ||
      conv.bias.defined() || at::autocast::is_cpu_enabled() || !IsWinogradShape(input, weight)) {
    return false;
  }
  const auto& options = conv.options;  // ConvNdOptions<2>
  const at::IntArrayRef stride = options.stride(), dilation = options.dilation();
  // Padding is a variant (sizes, "valid" or "same"): c10's until PyTorch 2.1, std's since.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
  const auto* padding = std::get_if<torch::ExpandingArray<2>>(&options.padding());
  const bool zeros = std::holds_alternative<torch::enumtype::kZeros>(options.padding_mode());
#else
  const auto* padding = c10::get_if<torch::ExpandingArray<2>>(&options.padding());
  const bool zeros = c10::holds_alternative<torch::enumtype::kZeros>(options.padding_mode());
#endif
  return padding != nullptr && (**padding)[0] == 1 && (**padding)[1] == 1 && zeros &&
         stride[0] == 1 && stride[1] == 1 && dilation[0] == 1 && dilation[1] == 1 &&
         options.groups() == 1 && !options.transposed();
#endif
}

at::Tensor Conv2dForward(torch::nn::Conv2dImpl& conv, const at::Tensor& input) {
#ifndef SSL_NO_DNNL
  if (UsesWinograd(conv, input)) return WinogradFunction::apply(input, conv.weight);
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
