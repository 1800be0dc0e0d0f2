#include "ssl/methods/mocov3.h"

#include <ATen/ops/arange.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/matmul.h>
#include <c10/core/GradMode.h>
#include <torch/nn/functional/normalization.h>
#include <torch/nn/modules/container/any.h>

#include "absl/strings/str_cat.h"
#include "ssl/nn/mlp.h"

namespace ssl::methods {
namespace {

at::Tensor L2Normalize(const at::Tensor& x) {
  return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(1));
}

}  // namespace

absl::StatusOr<std::shared_ptr<MocoV3Impl>> MocoV3Impl::Create(
    const MocoV3Options& options, std::shared_ptr<distributed::Communicator> communicator) {
  if (options.dim < 1 || options.mlp_dim < 1) {
    return absl::InvalidArgumentError(absl::StrCat("moco dim and mlp dim must be >= 1, got ",
                                                   options.dim, " and ", options.mlp_dim));
  }
  if (!(options.temperature > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("moco temperature must be > 0, got ", options.temperature));
  }
  // Validate the name before building anything.
  if (absl::StatusOr<int64_t> width = backbones::BackboneFeatureDim(options.arch); !width.ok()) {
    return width.status();
  }
  return std::shared_ptr<MocoV3Impl>(new MocoV3Impl(options, std::move(communicator)));
}

MocoV3Impl::MocoV3Impl(const MocoV3Options& options,
                       std::shared_ptr<distributed::Communicator> communicator)
    : options_(options), communicator_(std::move(communicator)) {
  // ResNets: zero-init of the last BN gamma in each block; projector 2 layers with last
  // BN; predictor 2 layers without.
  backbones::BackboneOptions backbone_options;
  backbone_options.zero_init_residual = true;
  backbone_options.cifar_stem = options.cifar_stem;
  auto build_encoder = [&] {
    std::shared_ptr<backbones::Backbone> encoder =
        *backbones::CreateBackbone(options.arch, backbone_options);
    encoder->SetHead(torch::nn::AnyModule(nn::BuildMlp(nn::MlpOptions()
                                                           .num_layers(2)
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
                                                            .last_bn(false)));
  // The momentum encoder starts as an exact copy and never receives gradients.
  c10::AutoGradMode no_grad(false);
  const auto base = base_encoder->parameters();
  const auto momentum = momentum_encoder->parameters();
  for (size_t i = 0; i < base.size(); ++i) {
    momentum[i].copy_(base[i]);
    momentum[i].set_requires_grad(false);
  }
}

void MocoV3Impl::UpdateMomentumEncoder(double momentum) {
  c10::AutoGradMode no_grad(false);
  const auto base = base_encoder->parameters();
  const auto target = momentum_encoder->parameters();
  for (size_t i = 0; i < base.size(); ++i) {
    target[i].mul_(momentum).add_(base[i].detach(), 1.0 - momentum);
  }
}

at::Tensor MocoV3Impl::ContrastiveLoss(const at::Tensor& queries, const at::Tensor& keys) {
  const at::Tensor q = L2Normalize(queries);
  const at::Tensor k = communicator_->AllGather(L2Normalize(keys));
  const at::Tensor logits = at::matmul(q, k.t()).div(options_.temperature);
  const int64_t b = logits.size(0);
  const at::Tensor labels =
      at::arange(b, at::kLong).add(b * static_cast<int64_t>(communicator_->rank()));
  return at::cross_entropy_loss(logits, labels).mul(2.0 * options_.temperature);
}

at::Tensor MocoV3Impl::forward(const at::Tensor& view1, const at::Tensor& view2, double momentum) {
  const at::Tensor q1 = predictor->forward(base_encoder->forward(view1));
  const at::Tensor q2 = predictor->forward(base_encoder->forward(view2));
  at::Tensor k1, k2;
  {
    c10::AutoGradMode no_grad(false);
    UpdateMomentumEncoder(momentum);
    k1 = momentum_encoder->forward(view1);
    k2 = momentum_encoder->forward(view2);
  }
  return ContrastiveLoss(q1, k2).add(ContrastiveLoss(q2, k1));
}

}  // namespace ssl::methods
