#include <ATen/ops/allclose.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/relu.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/linear.h>

#include "ssl/nn/mlp.h"
#include "ssl/nn/state_dict.h"

namespace ssl::nn {
namespace {

std::vector<std::string> Keys(const NamedTensors& state) {
  std::vector<std::string> keys;
  for (const auto& [key, tensor] : state) keys.push_back(key);
  return keys;
}

TEST(MlpTest, ProjectorKeysAndShapesMatchMocoV3) {
  // MoCo v3 ResNet-50 projector: 2 layers 2048-4096-256 with last BN.
  Mlp projector = BuildMlp(MlpOptions());
  const NamedTensors state = StateDict(*projector, "fc.");
  EXPECT_EQ(Keys(state), (std::vector<std::string>{
                             "fc.0.weight", "fc.1.weight", "fc.1.bias", "fc.1.running_mean",
                             "fc.1.running_var", "fc.1.num_batches_tracked", "fc.3.weight",
                             "fc.4.running_mean", "fc.4.running_var", "fc.4.num_batches_tracked"}));
  EXPECT_EQ(state[0].second.sizes(), (at::IntArrayRef{4096, 2048}));
  EXPECT_EQ(state[6].second.sizes(), (at::IntArrayRef{256, 4096}));
  // The last BN has no affine parameters: 2 Linear weights + BN gamma/beta.
  EXPECT_EQ(Parameters(*projector).size(), 4u);
}

TEST(MlpTest, PredictorHasNoLastBn) {
  Mlp predictor = BuildMlp(MlpOptions().input_dim(256).output_dim(256).last_bn(false));
  EXPECT_EQ(Keys(StateDict(*predictor)).back(), "3.weight");
  EXPECT_EQ(predictor->size(), 4u);
}

TEST(MlpTest, TrainForwardMatchesAHandWrittenComposition) {
  Mlp mlp = BuildMlp(MlpOptions().num_layers(3).input_dim(5).hidden_dim(7).output_dim(3));
  mlp->train();
  const at::Tensor x = at::randn({6, 5});
  const at::Tensor y = mlp->forward(x);
  // Reference: Linear (no bias), batch-stat BN (biased variance, eps 1e-5), ReLU.
  auto batch_norm = [](const at::Tensor& h, const at::Tensor& gamma, const at::Tensor& beta) {
    const at::Tensor mean = h.mean(0, true);
    const at::Tensor var = (h - mean).pow(2).mean(0, true);
    at::Tensor out = (h - mean) / (var + 1e-5).sqrt();
    return gamma.defined() ? out * gamma + beta : out;
  };
  torch::NoGradGuard no_grad;
  at::Tensor h = x;
  for (int layer = 0; layer < 3; ++layer) {
    const int base = layer * 3;
    h = at::matmul(h, mlp[base]->as<torch::nn::Linear>()->weight.t());
    auto* bn = mlp[base + 1]->as<torch::nn::BatchNorm1d>();
    h = batch_norm(h, bn->weight, bn->bias);
    if (layer < 2) h = at::relu(h);
  }
  EXPECT_TRUE(at::allclose(y, h, 1e-4, 1e-5));
  // Last BN without affine: every output column has mean 0 and (biased) variance 1.
  EXPECT_LT(y.mean(0).abs().max().item<float>(), 1e-5);
  EXPECT_NEAR(y.var(0, false).mean().item<float>(), 1.0f, 1e-3);
  for (const auto& [key, tensor] : StateDict(*mlp)) EXPECT_TRUE(tensor.defined()) << key;
}

}  // namespace
}  // namespace ssl::nn
