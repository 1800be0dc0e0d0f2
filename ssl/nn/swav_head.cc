#include "ssl/nn/swav_head.h"

#include <c10/core/GradMode.h>
#include <torch/nn/functional/normalization.h>
#include <torch/nn/modules/activation.h>

#include <string>

#include "ssl/core/logging.h"
#include "ssl/nn/batch_norm.h"

namespace ssl::nn {
namespace {

at::Tensor L2Normalize(const at::Tensor& x) {
  return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(1));
}

}  // namespace

SwavHeadImpl::SwavHeadImpl(const SwavHeadOptions& options) : options_(options) {
  CHECK(!options.dims().empty()) << "the SwAV head needs at least the input width";
  projection_head = register_module("projection_head", Chain());
  const std::vector<int64_t>& dims = options.dims();
  for (size_t i = 1; i < dims.size(); ++i) {
    projection_head->push_back(
        torch::nn::Linear(torch::nn::LinearOptions(dims[i - 1], dims[i]).bias(options.use_bias())));
    if (i + 1 == dims.size()) break;  // VISSL's skip_last_bn: nothing after the last Linear
    if (options.use_bn()) {
      projection_head->push_back(BatchNorm1d(torch::nn::BatchNormOptions(dims[i])
                                                 .eps(options.bn_eps())
                                                 .momentum(options.bn_momentum())));
    }
    projection_head->push_back(torch::nn::ReLU(torch::nn::ReLUOptions().inplace(true)));
  }
  for (size_t i = 0; i < options.num_clusters().size(); ++i) {
    prototypes.push_back(register_module(
        "prototypes" + std::to_string(i),
        torch::nn::Linear(
            torch::nn::LinearOptions(dims.back(), options.num_clusters()[i]).bias(false))));
  }
}

SwavHeadOutput SwavHeadImpl::forward(const at::Tensor& features) {
  SwavHeadOutput out;
  out.embedding = projection_head->is_empty() ? features : projection_head->forward(features);
  if (options_.normalize_feats()) out.embedding = L2Normalize(out.embedding);
  for (torch::nn::Linear& layer : prototypes) out.scores.push_back(layer->forward(out.embedding));
  return out;
}

void SwavHeadImpl::NormalizePrototypes() {
  c10::AutoGradMode no_grad(false);
  for (torch::nn::Linear& layer : prototypes) layer->weight.copy_(L2Normalize(layer->weight));
}

}  // namespace ssl::nn
