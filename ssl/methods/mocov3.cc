#include "ssl/methods/mocov3.h"

#include <ATen/Parallel.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/stack.h>
#include <c10/core/GradMode.h>
#include <torch/nn/modules/container/any.h>

#include "absl/strings/str_cat.h"
#include "ssl/nn/batch_norm.h"
#include "ssl/nn/mlp.h"
#include "ssl/nn/state_dict.h"
#include "ssl/optim/schedules.h"

namespace ssl::methods {

absl::StatusOr<std::shared_ptr<MocoV3Impl>> MocoV3Impl::Create(
    const MocoV3Options& options, std::shared_ptr<distributed::Communicator> communicator) {
  if (options.dim < 1 || options.mlp_dim < 1) {
    return absl::InvalidArgumentError(absl::StrCat("moco dim and mlp dim must be >= 1, got ",
                                                   options.dim, " and ", options.mlp_dim));
  }
  if (!(options.momentum >= 0 && options.momentum <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("moco momentum must be in [0, 1], got ", options.momentum));
  }
  if (options.image_size < 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("image size must be >= 16, got ", options.image_size));
  }
  if (!(options.crop_min > 0 && options.crop_min <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("crop-min must be in (0, 1], got ", options.crop_min));
  }
  if (!(options.temperature > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("moco temperature must be > 0, got ", options.temperature));
  }
  // Validate the name and options before building anything.
  backbones::BackboneOptions check;
  check.image_size = options.image_size;
  check.stop_grad_conv1 = options.stop_grad_conv1;
  check.cifar_stem = options.cifar_stem;
  if (absl::Status s = backbones::ValidateBackbone(options.arch, check); !s.ok()) return s;
  return std::shared_ptr<MocoV3Impl>(new MocoV3Impl(options, std::move(communicator)));
}

MocoV3Impl::MocoV3Impl(const MocoV3Options& options,
                       std::shared_ptr<distributed::Communicator> communicator)
    : options_(options), communicator_(std::move(communicator)) {
  const bool vit = backbones::HeadName(options.arch) == "head";
  backbones::BackboneOptions backbone_options;
  backbone_options.zero_init_residual = !vit;
  backbone_options.cifar_stem = options.cifar_stem;
  backbone_options.image_size = options.image_size;
  backbone_options.stop_grad_conv1 = options.stop_grad_conv1;
  auto build_encoder = [&] {
    std::shared_ptr<backbones::Backbone> encoder =
        *backbones::CreateBackbone(options.arch, backbone_options);
    encoder->SetHead(torch::nn::AnyModule(nn::BuildMlp(nn::MlpOptions()
                                                           .num_layers(vit ? 3 : 2)
                                                           .input_dim(encoder->feature_dim())
                                                           .hidden_dim(options.mlp_dim)
                                                           .output_dim(options.dim)
                                                           .last_bn(true))));
    return encoder;
  };
  base_encoder = register_module("base_encoder", build_encoder());
  momentum_encoder = register_module("momentum_encoder", build_encoder());
  predictor = register_module("predictor", nn::BuildMlp(nn::MlpOptions()
                                                            .num_layers(2)
                                                            .input_dim(options.dim)
                                                            .hidden_dim(options.mlp_dim)
                                                            .output_dim(options.dim)
                                                            .last_bn(vit)));
  // The momentum encoder starts as an exact copy and never receives gradients.
  c10::AutoGradMode no_grad(false);
  const auto base = base_encoder->parameters();
  const auto momentum = momentum_encoder->parameters();
  for (size_t i = 0; i < base.size(); ++i) {
    momentum[i].copy_(base[i]);
    momentum[i].set_requires_grad(false);
  }
}

namespace {

// target <- target * m + source * (1 - m), rounded as builder.py's expression is (each
// product to float, then the sum), in one pass over CPU float memory instead of three.
void MomentumAverage(at::Tensor& target, const at::Tensor& source, double m) {
  if (!target.device().is_cpu() || target.scalar_type() != at::kFloat ||
      source.scalar_type() != at::kFloat || !target.is_contiguous() || !source.is_contiguous()) {
    target.mul_(m).add_(source.mul(1.0 - m));
    return;
  }
  const float keep = static_cast<float>(m), take = static_cast<float>(1.0 - m);
  float* out = target.data_ptr<float>();
  const float* in = source.data_ptr<float>();
  at::parallel_for(0, target.numel(), 1 << 15, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float kept = out[i] * keep;
      const float taken = in[i] * take;
      out[i] = kept + taken;
    }
  });
}

}  // namespace

void MocoV3Impl::UpdateMomentumEncoder(double momentum) {
  c10::AutoGradMode no_grad(false);
  const auto base = base_encoder->parameters();
  auto target = momentum_encoder->parameters();
  for (size_t i = 0; i < base.size(); ++i) MomentumAverage(target[i], base[i].detach(), momentum);
}

at::Tensor MocoV3Impl::ContrastiveLoss(const at::Tensor& queries, const at::Tensor& keys) {
  const at::Tensor q = L2Normalize(queries);
  const at::Tensor k = communicator_->AllGather(L2Normalize(keys));
  const at::Tensor logits = at::matmul(q, k.t()).div(options_.temperature);
  const int64_t b = logits.size(0);
  const at::Tensor labels = at::arange(b, logits.options().dtype(at::kLong))
                                .add(b * static_cast<int64_t>(communicator_->rank()));
  return at::cross_entropy_loss(logits, labels).mul(2.0 * options_.temperature);
}

at::Tensor MocoV3Impl::SymmetricLoss(const at::Tensor& view1, const at::Tensor& view2) {
  if (options_.batch_views && is_training() && view1.sizes() == view2.sizes()) {
    // Sample 2i is view 1's i-th image, 2i + 1 view 2's.
    const at::Tensor both = at::stack({view1, view2}, 1).flatten(0, 1);
    nn::InterleavedViewsScope per_view(2);
    const at::Tensor q = predictor->forward(base_encoder->forward(both));
    at::Tensor k;
    {
      c10::AutoGradMode no_grad(false);
      k = momentum_encoder->forward(both);
    }
    const at::Tensor q_views = q.view({-1, 2, q.size(1)});
    const at::Tensor k_views = k.view({-1, 2, k.size(1)});
    last_queries_ = q_views.select(1, 0).detach();
    return ContrastiveLoss(q_views.select(1, 0), k_views.select(1, 1))
        .add(ContrastiveLoss(q_views.select(1, 1), k_views.select(1, 0)));
  }
  const at::Tensor q1 = predictor->forward(base_encoder->forward(view1));
  const at::Tensor q2 = predictor->forward(base_encoder->forward(view2));
  last_queries_ = q1.detach();
  at::Tensor k1, k2;
  {
    c10::AutoGradMode no_grad(false);
    k1 = momentum_encoder->forward(view1);
    k2 = momentum_encoder->forward(view2);
  }
  return ContrastiveLoss(q1, k2).add(ContrastiveLoss(q2, k1));
}

at::Tensor MocoV3Impl::forward(const at::Tensor& view1, const at::Tensor& view2, double momentum) {
  // The base encoder's weights do not change during its forward, so updating the
  // momentum encoder first gives builder.py's numbers exactly.
  UpdateMomentumEncoder(momentum);
  return SymmetricLoss(view1, view2);
}

data::ViewRecipe MocoV3Impl::Views() const {
  return data::MocoV3Views(options_.image_size, options_.crop_min);
}

void MocoV3Impl::BeforeStep(const StepContext& step) {
  current_momentum_ =
      options_.momentum_cosine
          ? optim::CosineMomentum(options_.momentum, static_cast<double>(step.epochs),
                                  step.FractionalEpoch())
          : options_.momentum;
  UpdateMomentumEncoder(current_momentum_);
}

at::Tensor MocoV3Impl::Loss(const std::vector<at::Tensor>& crop_groups, const StepContext&) {
  TORCH_CHECK(crop_groups.size() == 2, "MoCo v3 trains on two views, got ", crop_groups.size(),
              " crop groups");
  return SymmetricLoss(crop_groups[0], crop_groups[1]);
}

std::vector<Indicator> MocoV3Impl::Indicators() const {
  if (!last_queries_.defined()) return {};
  return {{"embedding_spread", EmbeddingSpread(last_queries_), true}};
}

std::vector<ParameterGroup> MocoV3Impl::ParameterGroups() {
  ParameterGroup all;
  all.name = "all";
  all.parameters = nn::Parameters(*this);
  return {all};
}

std::vector<std::pair<std::string, BackboneLocation>> MocoV3Impl::Backbones() const {
  const std::string head = backbones::HeadName(options_.arch) + ".";
  return {{"base", {options_.arch, options_.cifar_stem, "base_encoder.", {head}}},
          {"momentum", {options_.arch, options_.cifar_stem, "momentum_encoder.", {head}}}};
}

nlohmann::json MocoV3Impl::Config() const {
  return {{"arch", options_.arch},
          {"cifar_stem", options_.cifar_stem},
          {"moco_dim", options_.dim},
          {"moco_mlp_dim", options_.mlp_dim},
          {"moco_t", options_.temperature},
          {"moco_m", options_.momentum},
          {"moco_m_cos", options_.momentum_cosine},
          {"crop_min", options_.crop_min},
          {"stop_grad_conv1", options_.stop_grad_conv1},
          {"batch_views", options_.batch_views},
          {"image_size", options_.image_size}};
}

}  // namespace ssl::methods
