// The seed's large backbones (SwAV's wide ResNets, RegNetY-128GF and the custom
// RegNetY-256GF) build with their published widths and run one forward on a small
// input (about 30 s and up to 6 GB of weights in all, one model at a time).
#include <ATen/ops/randn.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <chrono>

#include "ssl/backbones/backbone.h"

namespace ssl::backbones {
namespace {

int64_t NumParameters(const torch::nn::Module& module) {
  int64_t total = 0;
  for (const at::Tensor& p : module.parameters()) total += p.numel();
  return total;
}

class BigBackboneTest : public ::testing::TestWithParam<std::pair<const char*, int64_t>> {};

TEST_P(BigBackboneTest, BuildsAndRunsOneForward) {
  const auto [name, feature_dim] = GetParam();
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::shared_ptr<Backbone>> model = CreateBackbone(name);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->feature_dim(), feature_dim);
  (*model)->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor features = (*model)->forward(at::randn({1, 3, 64, 64}));
  EXPECT_EQ(features.sizes(), (at::IntArrayRef{1, feature_dim}));
  EXPECT_TRUE(features.isfinite().all().item<bool>());
  std::cout << name << ": " << NumParameters(**model) / 1e6 << "M parameters, built and run in "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()
            << " s\n";
}

INSTANTIATE_TEST_SUITE_P(Seed, BigBackboneTest,
                         ::testing::Values(std::pair<const char*, int64_t>{"resnet101", 2048},
                                           std::pair<const char*, int64_t>{"resnet50w2", 4096},
                                           std::pair<const char*, int64_t>{"resnet50w4", 8192},
                                           std::pair<const char*, int64_t>{"resnet50w5", 10240},
                                           std::pair<const char*, int64_t>{"regnet_y_128gf", 7392},
                                           std::pair<const char*, int64_t>{
                                               "regnet_y_d27_w640_wa230.83_wm2.53_gw373", 10444}));

}  // namespace
}  // namespace ssl::backbones
