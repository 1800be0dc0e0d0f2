#include "ssl/backbones/resnet.h"

#include <ATen/ops/arange.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/sin.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "ssl/backbones/backbone.h"
#include "ssl/backbones/golden_test_util.h"
#include "ssl/backbones/regnet.h"
#include "ssl/nn/state_dict.h"
#include "ssl/nn/winograd_conv.h"

namespace ssl::backbones {
namespace {

class TorchvisionGoldenTest : public ::testing::TestWithParam<const char*> {};

TEST_P(TorchvisionGoldenTest, KeysShapesAndLogitsMatchTorchvision) {
  const std::string arch = GetParam();
  const Golden golden = ReadGolden("torchvision_" + arch + ".txt");
  ASSERT_FALSE(golden.keys.empty());
  BackboneOptions options;
  options.num_classes = 1000;
  absl::StatusOr<std::shared_ptr<Backbone>> model = CreateBackbone(arch, options);
  ASSERT_TRUE(model.ok()) << model.status();
  const ssl::nn::NamedTensors state = ssl::nn::StateDict(**model);
  ASSERT_EQ(state.size(), golden.keys.size());
  for (size_t i = 0; i < state.size(); ++i) {
    ASSERT_EQ(state[i].first, golden.keys[i].first) << "state_dict entry " << i;
    ASSERT_EQ(state[i].second.sizes().vec(), golden.keys[i].second) << state[i].first;
  }
  FillDeterministically(**model);
  (*model)->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor input = at::sin(0.05 * at::arange(2 * 3 * 64 * 64, at::kDouble))
                               .reshape({2, 3, 64, 64})
                               .to(at::kFloat);
  const at::Tensor logits = (*model)->forward(input);
  ASSERT_EQ(logits.sizes(), (at::IntArrayRef{2, 1000}));
  double scale = 0;
  for (const auto& row : golden.logits) {
    for (double v : row) scale = std::max(scale, std::abs(v));
  }
  for (int n = 0; n < 2; ++n) {
    for (int c = 0; c < 1000; ++c) {
      ASSERT_NEAR(logits[n][c].item<double>(), golden.logits[n][c], 2e-5 * scale)
          << arch << " logit " << n << "," << c;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, TorchvisionGoldenTest,
                         ::testing::Values("resnet18", "resnet50", "regnet_y_400mf"));

int64_t NumParameters(const torch::nn::Module& module) {
  int64_t total = 0;
  for (const at::Tensor& p : module.parameters()) total += p.numel();
  return total;
}

TEST(ResNetTest, ParameterCountsMatchTorchvisionAndSwav) {
  const std::pair<const char*, int64_t> with_fc[] = {{"resnet18", 11689512},
                                                     {"resnet34", 21797672},
                                                     {"resnet50", 25557032},
                                                     {"resnet101", 44549160},
                                                     {"resnet152", 60192808}};
  BackboneOptions classifier;
  classifier.num_classes = 1000;
  for (const auto& [name, count] : with_fc) {
    auto model = CreateBackbone(name, classifier);
    ASSERT_TRUE(model.ok());
    EXPECT_EQ(NumParameters(**model), count) << name;
  }
  EXPECT_EQ(NumParameters(**CreateBackbone("resnet50")), 25557032 - 2048 * 1000 - 1000);
  // SwAV reports 94M parameters for its RN50-w2 trunk.
  const int64_t w2 = NumParameters(**CreateBackbone("resnet50w2"));
  EXPECT_GT(w2, 93'000'000);
  EXPECT_LT(w2, 95'000'000);
}

TEST(ResNetTest, FeatureWidthsAgreeWithTheRegistry) {
  for (const std::string name :
       {"resnet18", "resnet34", "resnet50", "resnet50w2", "resnet18w0.25"}) {
    auto model = CreateBackbone(name);
    ASSERT_TRUE(model.ok()) << name;
    EXPECT_EQ((*model)->feature_dim(), *BackboneFeatureDim(name)) << name;
    EXPECT_EQ((*model)->name(), name);
  }
  EXPECT_EQ(*BackboneFeatureDim("resnet50"), 2048);
  EXPECT_EQ(*BackboneFeatureDim("resnet50w5"), 10240);
  EXPECT_EQ(*BackboneFeatureDim("resnet18w0.25"), 128);
  auto model = CreateBackbone("resnet18w0.25");
  (*model)->eval();
  EXPECT_EQ((*model)->forward(at::randn({3, 3, 64, 64})).sizes(), (at::IntArrayRef{3, 128}));
}

TEST(ResNetTest, CifarStemKeepsResolution) {
  BackboneOptions options;
  options.cifar_stem = true;
  auto model = CreateBackbone("resnet18", options);
  ASSERT_TRUE(model.ok());
  auto* resnet = dynamic_cast<ResNetImpl*>(model->get());
  ASSERT_NE(resnet, nullptr);
  EXPECT_EQ(resnet->conv1->weight.sizes(), (at::IntArrayRef{64, 3, 3, 3}));
  EXPECT_EQ(resnet->conv1->options.stride()->at(0), 1);
  // 32x32 in: stages at 32, 16, 8, 4 (an ImageNet stem would reach 1x1).
  resnet->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor x = at::randn({2, 3, 32, 32});
  at::Tensor h = at::relu(resnet->bn1(resnet->conv1(x)));
  h = resnet->layer3->forward(resnet->layer2->forward(resnet->layer1->forward(h)));
  EXPECT_EQ(resnet->layer4->forward(h).sizes(), (at::IntArrayRef{2, 512, 4, 4}));
  EXPECT_EQ(resnet->forward(x).sizes(), (at::IntArrayRef{2, 512}));
}

// --winograd: the blocks' 3x3 stride-1 convolutions on 8x8 and larger maps go through
// oneDNN's Winograd kernels; features and every gradient stay those of the direct
// algorithm to rounding. (BN in eval mode: with training-mode batch statistics on a few
// images, a deep net's gradients amplify any rounding change, even the direct algorithm
// on a channels-last batch, to ~1e-2 relative for ResNet-50.)
TEST(ResNetTest, WinogradConvolutionsKeepFeaturesAndGradients) {
  if (!ssl::nn::WinogradConvolutionsAvailable()) GTEST_SKIP() << "no oneDNN Winograd kernels";
  for (const char* arch : {"resnet18w0.25", "resnet50w0.25"}) {
    SCOPED_TRACE(arch);
    at::manual_seed(11);
    auto model = CreateBackbone(arch, BackboneOptions());
    ASSERT_TRUE(model.ok());
    (*model)->eval();
    const at::Tensor images = at::randn({4, 3, 64, 64});
    auto run = [&](bool winograd) {
      ssl::nn::SetWinogradConvolutions(winograd);
      (*model)->zero_grad();
      std::vector<at::Tensor> results{(*model)->forward(images)};
      results[0].pow(2).sum().backward();
      ssl::nn::SetWinogradConvolutions(false);
      results[0] = results[0].detach();
      for (const at::Tensor& p : (*model)->parameters()) results.push_back(p.grad().clone());
      return results;
    };
    const std::vector<at::Tensor> direct = run(false);
    const std::vector<at::Tensor> winograd = run(true);
    EXPECT_FALSE(winograd[0].equal(direct[0])) << "the Winograd path did not run";
    ASSERT_EQ(winograd.size(), direct.size());
    for (size_t i = 0; i < direct.size(); ++i) {
      EXPECT_LT((winograd[i] - direct[i]).abs().max().item<double>(),
                1e-4 * direct[i].abs().max().item<double>())
          << (i == 0 ? "features" : "gradient of parameter " + std::to_string(i - 1));
    }
  }
}

TEST(ResNetTest, ZeroInitResidualMakesEveryBlockStartAsTheIdentity) {
  BackboneOptions options;
  options.zero_init_residual = true;
  for (const char* name : {"resnet18", "resnet50"}) {
    auto model = CreateBackbone(name, options);
    auto* resnet = dynamic_cast<ResNetImpl*>(model->get());
    resnet->eval();
    torch::NoGradGuard no_grad;
    // Block 1 of layer2 has no downsample: its output must equal its (post-ReLU) input.
    const int64_t channels = std::string(name) == "resnet18" ? 128 : 512;
    const at::Tensor x = at::relu(at::randn({2, channels, 8, 8}));
    const std::shared_ptr<torch::nn::Module> block = resnet->layer2->ptr(1);
    const at::Tensor y = block->as<Bottleneck>() ? block->as<Bottleneck>()->forward(x)
                                                 : block->as<BasicBlock>()->forward(x);
    EXPECT_TRUE(y.equal(x)) << name;
  }
  auto plain = CreateBackbone("resnet18");
  auto* resnet = dynamic_cast<ResNetImpl*>(plain->get());
  EXPECT_TRUE(resnet->layer1->ptr(0)->as<BasicBlock>()->bn2->weight.eq(1).all().item<bool>());
}

TEST(ResNetTest, ConvInitIsHeNormalOverFanOut) {
  auto model = CreateBackbone("resnet50");
  auto* resnet = dynamic_cast<ResNetImpl*>(model->get());
  // layer3.0.conv2: 256 x 256 x 3 x 3, fan_out = 256 * 9, std = sqrt(2 / 2304) = 0.02946.
  const at::Tensor w = resnet->layer3->ptr(0)->as<Bottleneck>()->conv2->weight;
  EXPECT_NEAR(w.std().item<double>(), std::sqrt(2.0 / 2304), 0.02 * std::sqrt(2.0 / 2304));
  EXPECT_NEAR(w.mean().item<double>(), 0.0, 1e-3);
  EXPECT_TRUE(resnet->bn1->weight.eq(1).all().item<bool>());
  EXPECT_TRUE(resnet->bn1->bias.eq(0).all().item<bool>());
}

TEST(RegNetTest, StagesFollowTorchvisionsWidthRule) {
  // Values printed by torchvision's BlockParams.from_init_params (se_ratio 0.25).
  const absl::StatusOr<RegNetStages> y400 =
      ComputeRegNetStages(*RegNetParamsByName("regnet_y_400mf"));
  ASSERT_TRUE(y400.ok());
  EXPECT_EQ(y400->widths, (std::vector<int64_t>{48, 104, 208, 440}));
  EXPECT_EQ(y400->depths, (std::vector<int>{1, 3, 6, 6}));
  EXPECT_EQ(y400->group_widths, (std::vector<int64_t>{8, 8, 8, 8}));
  // SwAV / SEER's RegNetY-256GF; its head's input width is 10444.
  const std::string seer = "regnet_y_d27_w640_wa230.83_wm2.53_gw373";
  const absl::StatusOr<RegNetStages> y256 = ComputeRegNetStages(*RegNetParamsByName(seer));
  ASSERT_TRUE(y256.ok());
  EXPECT_EQ(y256->widths, (std::vector<int64_t>{746, 1492, 4103, 10444}));
  EXPECT_EQ(y256->depths, (std::vector<int>{2, 7, 17, 1}));
  EXPECT_EQ(*BackboneFeatureDim(seer), 10444);
  const absl::StatusOr<RegNetStages> y128 =
      ComputeRegNetStages(*RegNetParamsByName("regnet_y_128gf"));
  EXPECT_EQ(y128->widths, (std::vector<int64_t>{528, 1056, 2904, 7392}));
  EXPECT_EQ(y128->group_widths, (std::vector<int64_t>{264, 264, 264, 264}));
  EXPECT_EQ(RegNetName(*RegNetParamsByName(seer)), seer);
  EXPECT_EQ(RegNetName(*RegNetParamsByName("regnet_y_16gf")), "regnet_y_16gf");
}

TEST(RegNetTest, ParameterCountAndFeatureWidthMatchTorchvision) {
  BackboneOptions classifier;
  classifier.num_classes = 1000;
  EXPECT_EQ(NumParameters(**CreateBackbone("regnet_y_400mf", classifier)), 4344144);
  auto trunk = CreateBackbone("regnet_y_400mf");
  ASSERT_TRUE(trunk.ok());
  EXPECT_EQ((*trunk)->feature_dim(), 440);
  EXPECT_EQ((*trunk)->name(), "regnet_y_400mf");
  (*trunk)->eval();
  torch::NoGradGuard no_grad;
  EXPECT_EQ((*trunk)->forward(at::randn({2, 3, 64, 64})).sizes(), (at::IntArrayRef{2, 440}));
}

TEST(RegistryTest, UnknownOrBadNamesAreOneClearError) {
  const absl::Status unknown = CreateBackbone("resnet19").status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(unknown.message(),
            "unknown backbone \"resnet19\"; known: resnet18, resnet34, resnet50, resnet101, "
            "resnet152, resnet50w2, resnet50w4, resnet50w5, regnet_y_400mf, regnet_y_800mf, "
            "regnet_y_1_6gf, regnet_y_3_2gf, regnet_y_8gf, regnet_y_16gf, regnet_y_32gf, "
            "regnet_y_128gf, vit_tiny, vit_small, vit_base, vit_large (a ResNet also takes "
            "any w<multiplier> suffix, e.g. resnet18w0.25; a RegNetY any "
            "regnet_y_d<depth>_w<w_0>_wa<w_a>_wm<w_m>_gw<group width>; a ViT a _patch<P> "
            "suffix, e.g. vit_tiny_patch8)");
  EXPECT_EQ(CreateBackbone("regnet_y_d27_w641_wa230.83_wm2.53_gw373").status().message(),
            "invalid RegNet settings: need depth >= 1, w_a >= 0, w_0 > 0 and a multiple of 8, "
            "w_m > 1, group width >= 1; got depth 27, w_0 641, w_a 230.83, w_m 2.53, group "
            "width 373");
  BackboneOptions cifar;
  cifar.cifar_stem = true;
  EXPECT_FALSE(CreateBackbone("regnet_y_400mf", cifar).ok());
  EXPECT_FALSE(CreateBackbone("vit_small", cifar).ok());
  EXPECT_FALSE(CreateBackbone("resnet50wx").ok());
  EXPECT_EQ(CreateBackbone("resnet18w0.3").status().message(),
            "backbone \"resnet18w0.3\": 64 * width multiplier must be a whole number, got 19.2");
  BackboneOptions bad;
  bad.num_classes = -1;
  EXPECT_EQ(CreateBackbone("resnet18", bad).status().message(), "num_classes must be >= 0, got -1");
}

}  // namespace
}  // namespace ssl::backbones
