#include "ssl/nn/batch_norm.h"

#include <ATen/Context.h>
#include <ATen/ops/_unsafe_view.h>
#include <ATen/ops/batch_norm.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/var_mean.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <stdexcept>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"

namespace ssl::nn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::vector<int64_t> ReducedDims(const at::Tensor& input) {
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < input.dim(); ++d) dims.push_back(d);
  return dims;
}

bool IsReducedPrecision(const at::Tensor& t) {
  return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
}

// Statistics are computed in fp32 whatever the input's precision, as PyTorch's
// SyncBatchNorm does: under fp16 autocast a per-process element count above 65,504 is
// inf in half, and half sums lose precision long before that. Outputs and input
// gradients come back in the input's dtype; running statistics stay fp32.
at::ScalarType ComputeType(const at::Tensor& input) {
  return input.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// The per-process (mean, var, count) rows travel in float64 for reduced-precision
// inputs, so that counts stay exact at any batch; float32 inputs keep the float32
// arithmetic their recorded runs used (counts exact up to 2^24 per process).
at::ScalarType GatherType(const at::Tensor& input) {
  return IsReducedPrecision(input) ? at::kDouble : ComputeType(input);
}

// Each process's (mean, biased var, count) row, gathered over `group` and pooled with
// the parallel-variance formula, which does not lose precision the way sum-of-squares
// does. Returns the pooled mean and biased variance (in x's dtype) and the total count.
std::tuple<at::Tensor, at::Tensor, double> PooledStatistics(const at::Tensor& x,
                                                            at::ScalarType gather_type,
                                                            distributed::Communicator& group) {
  const std::vector<int64_t> dims = ReducedDims(x);
  const int64_t channels = x.size(1);
  auto [local_var, local_mean] = at::var_mean(x, dims, /*unbiased=*/false);
  const double local_count = static_cast<double>(x.numel() / channels);
  const at::Tensor stats = at::cat(
      {local_mean.to(gather_type), local_var.to(gather_type),
       at::full({1}, local_count, local_mean.options().dtype(gather_type))});
  const at::Tensor gathered = group.AllGather(stats.unsqueeze(0));  // (world, 2C + 1)
  const at::Tensor counts = gathered.narrow(1, 2 * channels, 1);
  const at::Tensor means = gathered.narrow(1, 0, channels);
  const at::Tensor vars = gathered.narrow(1, channels, channels);
  const double total = counts.sum().item<double>();
  const at::Tensor mean = means.mul(counts).sum(0).div(total);
  const at::Tensor var = vars.add(means.sub(mean).square()).mul(counts).sum(0).div(total);
  return {mean.to(x.scalar_type()), var.to(x.scalar_type()), total};
}

// The input for at::batch_norm: CUDA's kernels take half inputs with fp32 weights and
// statistics and accumulate in fp32 themselves; LibTorch 1.13's CPU kernels need one
// dtype, so reduced-precision CPU inputs go through fp32.
at::Tensor InStatisticsPrecision(const at::Tensor& input) {
  return IsReducedPrecision(input) && !input.is_cuda() ? input.to(at::kFloat) : input;
}

std::vector<int64_t> ChannelShape(const at::Tensor& input) {
  std::vector<int64_t> shape(input.dim(), 1);
  shape[1] = input.size(1);
  return shape;
}

// Statistics pooled over the group (PooledStatistics). Backward all-reduces the two
// per-channel sums the input gradient needs; weight and bias gradients stay local
// (gradient averaging adds them).
class SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
 public:
  // `weight` and `bias` are always defined (ones / zeros without affine): autograd
  // functions cannot take undefined tensors. Running statistics go through the module.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const at::Tensor& bias, BatchNormImpl* module,
                            distributed::Communicator* group, double momentum) {
    const double eps = module->options.eps();
    const at::ScalarType compute = ComputeType(input);
    const at::Tensor x = input.to(compute);
    auto [mean, var, total] = PooledStatistics(x, GatherType(input), *group);
    if (module->running_mean.defined()) {
      module->running_mean.mul_(1 - momentum).add_(mean, momentum);
      module->running_var.mul_(1 - momentum).add_(var, momentum * total / std::max(total - 1, 1.0));
    }
    const at::Tensor invstd = var.add(eps).rsqrt();
    ctx->save_for_backward({input, weight, mean, invstd});
    ctx->saved_data["total"] = total;
    ctx->saved_data["group"] = reinterpret_cast<int64_t>(group);
    return at::batch_norm(x, weight.to(compute), bias.to(compute), mean, var, /*training=*/false,
                          0.0, eps, /*cudnn_enabled=*/false)
        .to(input.scalar_type());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& input = saved[0];
    const at::Tensor& weight = saved[1];
    const std::vector<int64_t> shape = ChannelShape(input);
    const at::Tensor mean = saved[2].view(shape);
    const at::Tensor invstd = saved[3].view(shape);
    const double total = ctx->saved_data["total"].toDouble();
    auto* group = reinterpret_cast<distributed::Communicator*>(ctx->saved_data["group"].toInt());
    // In fp32 for reduced-precision inputs: the sums run over every element of the
    // (loss-scaled) gradient and overflow half's 65,504.
    const at::ScalarType compute = ComputeType(input);
    const at::Tensor grad = grad_outputs[0].contiguous().to(compute);
    const std::vector<int64_t> dims = ReducedDims(input);
    const int64_t channels = input.size(1);

    const at::Tensor normalized = input.to(compute).sub(mean).mul(invstd);
    const at::Tensor sum_grad = grad.sum(dims);
    const at::Tensor sum_grad_normalized = grad.mul(normalized).sum(dims);
    at::Tensor pooled = at::cat({sum_grad, sum_grad_normalized});
    group->AllReduceSum(pooled);
    const at::Tensor mean_grad = pooled.narrow(0, 0, channels).div(total).view(shape);
    const at::Tensor mean_grad_normalized =
        pooled.narrow(0, channels, channels).div(total).view(shape);
    const at::Tensor scale = invstd.mul(weight.to(compute).view(shape));
    const at::Tensor grad_input =
        grad.sub(mean_grad).sub(normalized.mul(mean_grad_normalized)).mul(scale);
    return {grad_input.to(input.scalar_type()),
            sum_grad_normalized.to(weight.scalar_type()),
            sum_grad.to(weight.scalar_type()),
            at::Tensor(),
            at::Tensor(),
            at::Tensor()};
  }
};

// The batch viewed as (N / blocks, C * blocks, ...): channel block j holds samples j,
// j + blocks, j + 2 blocks, ..., and each block is normalized with its own statistics.
// `block_means` / `block_vars` (C * blocks each, or undefined) take each block's running
// update with `momentum`.
at::Tensor BlockwiseBatchNorm(const at::Tensor& input, int blocks, const at::Tensor& weight,
                              const at::Tensor& bias, const at::Tensor& block_means,
                              const at::Tensor& block_vars, double momentum, double eps) {
  std::vector<int64_t> grouped = input.sizes().vec();
  grouped[0] = input.size(0) / blocks;
  grouped[1] = input.size(1) * blocks;
  const at::Tensor output = at::batch_norm(
      InStatisticsPrecision(input).contiguous().view(grouped),
      weight.defined() ? weight.repeat({blocks}) : weight,
      bias.defined() ? bias.repeat({blocks}) : bias, block_means, block_vars,
      /*training=*/true, momentum, eps, /*cudnn_enabled=*/false);
  // Not a view of `output`: the in-place ReLU and residual sums that follow a BN layer
  // would otherwise make autograd route their gradients through a copy of the whole
  // tensor (CopySlices).
  return at::_unsafe_view(output, input.sizes()).to(input.scalar_type());
}

// Split BN as MoCo's SplitBatchNorm: sample j goes to split j % s (a channel block of
// its own), and the running statistics are the mean of the blocks' updates.
at::Tensor SplitForward(const torch::nn::BatchNormOptions& options, const at::Tensor& weight,
                        const at::Tensor& bias, at::Tensor& running_mean, at::Tensor& running_var,
                        double momentum, int splits, const at::Tensor& input) {
  const int64_t n = input.size(0);
  const int64_t channels = input.size(1);
  if (n % splits != 0) {
    throw std::invalid_argument(absl::StrCat("split BatchNorm: a batch of ", n,
                                             " does not divide into ", splits, " splits"));
  }
  at::Tensor mean_copies, var_copies;
  if (running_mean.defined()) {
    mean_copies = running_mean.repeat({splits});
    var_copies = running_var.repeat({splits});
  }
  const at::Tensor output = BlockwiseBatchNorm(input, splits, weight, bias, mean_copies, var_copies,
                                               momentum, options.eps());
  if (running_mean.defined()) {
    c10::AutoGradMode no_grad(false);
    running_mean.copy_(mean_copies.view({splits, channels}).mean(0));
    running_var.copy_(var_copies.view({splits, channels}).mean(0));
  }
  return output;
}

const char* ModeName(const BatchNormSetting& setting) {
  switch (setting.mode) {
    case BatchNormMode::kSync:
      return "sync";
    case BatchNormMode::kSplit:
      return "split";
    case BatchNormMode::kMomentum:
      return "momentum";
    default:
      return "local";
  }
}

}  // namespace

BatchNormImpl::BatchNormImpl(const torch::nn::BatchNormOptions& options, int spatial_dims)
    : options(options), spatial_dims(spatial_dims) {
  reset();
}

void BatchNormImpl::reset() {
  const int64_t c = options.num_features();
  weight = register_parameter("weight", options.affine() ? at::ones({c}) : at::Tensor(),
                              options.affine());
  bias = register_parameter("bias", options.affine() ? at::zeros({c}) : at::Tensor(),
                            options.affine());
  const bool track = options.track_running_stats();
  running_mean = register_buffer("running_mean", track ? at::zeros({c}) : at::Tensor());
  running_var = register_buffer("running_var", track ? at::ones({c}) : at::Tensor());
  num_batches_tracked = register_buffer(
      "num_batches_tracked", track ? at::zeros({}, at::TensorOptions(at::kLong)) : at::Tensor());
}

void BatchNormImpl::pretty_print(std::ostream& stream) const {
  stream << "ssl::nn::BatchNorm" << spatial_dims << "d(" << options.num_features()
         << ", eps=" << options.eps() << ", affine=" << options.affine()
         << ", mode=" << ModeName(setting);
  if (setting.mode == BatchNormMode::kSplit) stream << ", splits=" << setting.splits;
  stream << ")";
}

at::Tensor BatchNormImpl::forward(const at::Tensor& input) {
  const bool dims_ok =
      spatial_dims == 2 ? input.dim() == 4 : (input.dim() == 2 || input.dim() == 3);
  if (!dims_ok || input.size(1) != options.num_features()) {
    throw std::invalid_argument(absl::StrCat(
        "BatchNorm", spatial_dims, "d of ", options.num_features(), " channels got an input of ",
        input.dim(), " dimensions with ", input.dim() > 1 ? input.size(1) : 0, " channels"));
  }
  // torch.nn.BatchNorm's bookkeeping: count batches; momentum None = cumulative average.
  double momentum = options.momentum().value_or(0.0);
  if (is_training() && options.track_running_stats()) {
    num_batches_tracked += 1;
    if (!options.momentum().has_value()) momentum = 1.0 / num_batches_tracked.item<double>();
  }
  const bool training = is_training() || !options.track_running_stats();
  if (training && setting.mode == BatchNormMode::kSync && setting.group &&
      setting.group->world_size() > 1) {
    const int64_t c = options.num_features();
    const at::TensorOptions parameters = input.options().dtype(ComputeType(input));
    return SyncBatchNormFunction::apply(
        input, weight.defined() ? weight : at::ones({c}, parameters),
        bias.defined() ? bias : at::zeros({c}, parameters), this, setting.group.get(), momentum);
  }
  if (is_training() && setting.mode == BatchNormMode::kMomentum && setting.momentum) {
    return MomentumForward(input);
  }
  if (const int views = InterleavedViewsScope::Current(); training && views > 1) {
    const bool own_statistics = setting.mode == BatchNormMode::kLocal ||
                                (setting.mode == BatchNormMode::kSync &&
                                 (!setting.group || setting.group->world_size() <= 1));
    if (!own_statistics) {
      throw std::invalid_argument(absl::StrCat(
          "one batch of several views needs per-process BatchNorm statistics, but this layer's "
          "are ",
          ModeName(setting)));
    }
    return InterleavedViewsForward(input, views);
  }
  if (training && setting.mode == BatchNormMode::kSplit && setting.splits > 1) {
    return SplitForward(options, weight, bias, running_mean, running_var, momentum, setting.splits,
                        input);
  }
  return at::batch_norm(InStatisticsPrecision(input), weight, bias, running_mean, running_var,
                        training, momentum, options.eps(), at::globalContext().userEnabledCuDNN())
      .to(input.scalar_type());
}

namespace {
thread_local int interleaved_views = 1;
}  // namespace

InterleavedViewsScope::InterleavedViewsScope(int views) : previous_(interleaved_views) {
  if (views < 1) throw std::invalid_argument(absl::StrCat("views must be >= 1, got ", views));
  interleaved_views = views;
}
InterleavedViewsScope::~InterleavedViewsScope() { interleaved_views = previous_; }
int InterleavedViewsScope::Current() { return interleaved_views; }

// Each view's samples become a channel block of their own (the split-BN layout, with
// view i % views as split), so one batch_norm call gives every view its own statistics;
// it writes them into scratch buffers (momentum 1), and the running statistics take them
// one view after the other, as consecutive calls would.
at::Tensor BatchNormImpl::InterleavedViewsForward(const at::Tensor& input, int views) {
  const int64_t n = input.size(0), channels = input.size(1);
  if (n % views != 0) {
    throw std::invalid_argument(
        absl::StrCat("a batch of ", n, " samples does not hold ", views, " interleaved views"));
  }
  at::Tensor view_means, view_vars;
  if (running_mean.defined()) {
    view_means = at::zeros({channels * views}, running_mean.options());
    view_vars = at::ones({channels * views}, running_var.options());
  }
  const at::Tensor output = BlockwiseBatchNorm(input, views, weight, bias, view_means, view_vars,
                                               /*momentum=*/1.0, options.eps());
  if (running_mean.defined()) {
    c10::AutoGradMode no_grad(false);
    for (int view = 0; view < views; ++view) {
      // forward() counted the first view.
      if (view > 0 && options.track_running_stats()) num_batches_tracked += 1;
      const double momentum = options.momentum().has_value()
                                  ? *options.momentum()
                                  : 1.0 / num_batches_tracked.item<double>();
      running_mean.mul_(1.0 - momentum)
          .add_(view_means.narrow(0, view * channels, channels), momentum);
      running_var.mul_(1.0 - momentum)
          .add_(view_vars.narrow(0, view * channels, channels), momentum);
    }
  }
  return output;
}

// Momentum^2 Teacher's MomentumBatchNorm{1,2}d in training: normalize with
// m_bn * batch + (1 - m_bn) * running statistics (both detached), then, on every second
// call, running <- m_bn * mean(stats of the two calls) + (1 - m_bn) * running.
at::Tensor BatchNormImpl::MomentumForward(const at::Tensor& input) {
  const MomentumBatchNormSchedule& schedule = *setting.momentum;
  const double m = schedule.m_bn;
  const std::vector<int64_t> dims = ReducedDims(input);
  const std::vector<int64_t> shape = ChannelShape(input);
  // Statistics without gradient (the original detaches them), var unbiased as torch.var.
  at::Tensor mean, var, stat_mean, invstd;
  double n = static_cast<double>(input.numel() / input.size(1));
  double unbias = 1.0;
  // fp32 statistics and normalization for reduced-precision inputs (see ComputeType):
  // a half variance above 65,504 would leave running_var inf for good.
  const at::Tensor x = input.to(ComputeType(input));
  {
    c10::AutoGradMode no_grad(false);
    if (setting.group && setting.group->world_size() > 1) {
      // Synchronized Momentum BN (an option; the original's is per process).
      std::tie(mean, var, n) = PooledStatistics(x, GatherType(input), *setting.group);
      var = var.mul(n / std::max(n - 1, 1.0));  // unbiased, as torch.var
    } else {
      std::tie(var, mean) = at::var_mean(x, dims, /*unbiased=*/true);
    }
    unbias = n / std::max(n - 1, 1.0);
    const at::Tensor batch_var = schedule.double_unbias ? var.mul(unbias) : var.div(unbias);
    stat_mean = mean.mul(m).add_(running_mean, 1 - m).view(shape);
    invstd = batch_var.mul(m).add_(running_var, 1 - m).add_(options.eps()).rsqrt_().view(shape);
  }
  at::Tensor out = x.sub(stat_mean).mul(invstd);
  if (weight.defined()) out = out.mul(weight.view(shape)).add(bias.view(shape));
  out = out.to(input.scalar_type());
  c10::AutoGradMode no_grad(false);
  if (!pending_mean.defined()) {
    pending_mean = mean;
    pending_var = var;
  } else {
    const double running_unbias = schedule.double_unbias ? unbias : 1.0;
    running_mean.mul_(1 - m).add_(mean.add(pending_mean).mul_(0.5), m);
    running_var.mul_(1 - m).add_(var.add(pending_var).mul_(0.5 * running_unbias), m);
    pending_mean = at::Tensor();
    pending_var = at::Tensor();
  }
  return out;
}

BatchNorm BatchNorm1d(const torch::nn::BatchNormOptions& options) { return BatchNorm(options, 1); }

BatchNorm BatchNorm2d(const torch::nn::BatchNormOptions& options) { return BatchNorm(options, 2); }

absl::StatusOr<BatchNormSetting> MakeBatchNormSetting(
    const std::string& mode, int sync_group_size, int splits,
    const std::shared_ptr<distributed::Communicator>& communicator) {
  BatchNormSetting setting;
  if (mode == "local") return setting;
  if (mode == "sync") {
    absl::StatusOr<std::shared_ptr<distributed::Communicator>> group =
        distributed::SyncBatchNormGroup(communicator, sync_group_size);
    if (!group.ok()) return group.status();
    setting.mode = BatchNormMode::kSync;
    setting.group = *group;
    return setting;
  }
  if (mode == "split") {
    if (splits < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("split BN needs at least 1 split, got ", splits));
    }
    setting.mode = BatchNormMode::kSplit;
    setting.splits = splits;
    return setting;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("BatchNorm mode must be local, sync or split, got \"", mode, "\""));
}

int ConfigureBatchNorm(torch::nn::Module& module, const BatchNormSetting& setting) {
  int configured = 0;
  for (const std::shared_ptr<torch::nn::Module>& child : module.modules()) {
    if (auto* bn = dynamic_cast<BatchNormImpl*>(child.get())) {
      if (bn->setting.mode == BatchNormMode::kMomentum &&
          setting.mode != BatchNormMode::kMomentum) {
        continue;
      }
      bn->setting = setting;
      ++configured;
    }
  }
  return configured;
}

BatchNormSetting MomentumBatchNormSetting(std::shared_ptr<MomentumBatchNormSchedule> schedule,
                                          std::shared_ptr<distributed::Communicator> group) {
  BatchNormSetting setting;
  setting.mode = BatchNormMode::kMomentum;
  setting.momentum = std::move(schedule);
  setting.group = std::move(group);
  return setting;
}

}  // namespace ssl::nn
