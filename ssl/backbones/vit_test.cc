#include "ssl/backbones/vit.h"

#include <ATen/ops/arange.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/sin.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <cmath>
#include <fstream>
#include <string>

#include "ssl/backbones/backbone.h"
#include "ssl/backbones/golden_test_util.h"
#include "ssl/nn/state_dict.h"

namespace ssl::backbones {
namespace {

std::shared_ptr<VisionTransformerImpl> Build(const std::string& name, BackboneOptions options) {
  absl::StatusOr<std::shared_ptr<Backbone>> model = CreateBackbone(name, options);
  EXPECT_TRUE(model.ok()) << model.status();
  auto vit = std::dynamic_pointer_cast<VisionTransformerImpl>(*model);
  EXPECT_NE(vit, nullptr);
  return vit;
}

int64_t NumParameters(const torch::nn::Module& module) {
  int64_t total = 0;
  for (const at::Tensor& p : module.parameters()) total += p.numel();
  return total;
}

class VitLayoutTest : public ::testing::TestWithParam<std::pair<const char*, int64_t>> {};

// Names and shapes as timm's VisionTransformer has them (golden written by
// tools/make_vit_golden.py), and timm's published parameter counts.
TEST_P(VitLayoutTest, KeysShapesAndCountMatchTimm) {
  const auto [arch, published_count] = GetParam();
  const Golden golden = ReadGolden(std::string(arch) + "_keys.txt");
  BackboneOptions options;
  options.num_classes = 1000;
  const auto model = Build(arch, options);
  const ssl::nn::NamedTensors state = ssl::nn::StateDict(*model);
  ASSERT_EQ(state.size(), golden.keys.size());
  for (size_t i = 0; i < state.size(); ++i) {
    ASSERT_EQ(state[i].first, golden.keys[i].first) << "state_dict entry " << i;
    ASSERT_EQ(state[i].second.sizes().vec(), golden.keys[i].second) << state[i].first;
  }
  EXPECT_EQ(NumParameters(*model), published_count);
  EXPECT_EQ(model->feature_dim(), *BackboneFeatureDim(arch));
  EXPECT_EQ(HeadName(arch), "head");
}

INSTANTIATE_TEST_SUITE_P(Sizes, VitLayoutTest,
                         ::testing::Values(std::make_pair("vit_small", int64_t{22050664}),
                                           std::make_pair("vit_base", int64_t{86567656})));

TEST(VitTest, LogitsMatchAnIndependentImplementation) {
  const Golden golden = ReadGolden("vit_tiny_patch8_logits.txt");
  BackboneOptions options;
  options.num_classes = 10;
  options.image_size = 32;
  const auto model = Build("vit_tiny_patch8", options);
  const ssl::nn::NamedTensors state = ssl::nn::StateDict(*model);
  ASSERT_EQ(state.size(), golden.keys.size());
  // pos_embed keeps the model's own table, so the logits also check it.
  FillDeterministically(*model, {"pos_embed"});
  model->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor images =
      at::sin(0.05 * at::arange(2 * 3 * 32 * 32, at::kDouble)).reshape({2, 3, 32, 32}).to(at::kFloat);
  const at::Tensor logits = model->forward(images);
  ASSERT_EQ(logits.sizes(), (at::IntArrayRef{2, 10}));
  ASSERT_EQ(golden.logits.size(), 2u);
  for (int n = 0; n < 2; ++n) {
    for (int c = 0; c < 10; ++c) {
      EXPECT_NEAR(logits[n][c].item<double>(), golden.logits[n][c], 1e-4) << n << "," << c;
    }
  }
}

TEST(VitTest, PositionTableMatchesElementwiseComputationAndIsFrozen) {
  std::ifstream file(TestdataPath("vit_sincos_4x4_16.txt"));
  ASSERT_TRUE(file.good());
  std::string header;  // what wrote the file (tools/make_vit_golden.py)
  ASSERT_TRUE(std::getline(file, header) && header.rfind("# ", 0) == 0) << header;
  const at::Tensor table = SinCosPositionTable(4, 4, 16);
  ASSERT_EQ(table.sizes(), (at::IntArrayRef{17, 16}));
  for (int64_t r = 0; r < 17; ++r) {
    for (int64_t c = 0; c < 16; ++c) {
      double expected;
      ASSERT_TRUE(file >> expected);
      EXPECT_NEAR(table[r][c].item<double>(), expected, 1e-6) << r << "," << c;
    }
  }
  // By hand: token 6 of a 4x4 grid is (u, v) = (1, 2); channel 0 is sin(u * 1).
  EXPECT_NEAR(table[7][0].item<double>(), std::sin(1.0), 1e-6);
  EXPECT_NEAR(table[7][8].item<double>(), std::sin(2.0), 1e-6);
  EXPECT_NEAR(table[7][12].item<double>(), std::cos(2.0), 1e-6);
  BackboneOptions options;
  options.image_size = 64;
  const auto model = Build("vit_small", options);
  EXPECT_FALSE(model->pos_embed.requires_grad());
  EXPECT_TRUE(at::equal(model->pos_embed[0], SinCosPositionTable(4, 4, 384)));
}

TEST(VitTest, AttentionMatchesExplicitLoops) {
  torch::manual_seed(3);
  const int64_t batch = 2, tokens = 3, dim = 4, heads = 2, head_dim = 2;
  Attention attention(dim, heads);
  const at::Tensor x = at::randn({batch, tokens, dim});
  torch::NoGradGuard no_grad;
  const at::Tensor out = attention->forward(x);
  const at::Tensor qkv = attention->qkv->forward(x);  // [b, n, 3 * dim]: q | k | v, head-major
  at::Tensor mixed = at::zeros({batch, tokens, dim});
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < tokens; ++i) {
        std::vector<double> scores(tokens);
        double total = 0;
        for (int64_t j = 0; j < tokens; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < head_dim; ++d) {
            dot += qkv[b][i][h * head_dim + d].item<double>() *
                   qkv[b][j][dim + h * head_dim + d].item<double>();
          }
          scores[j] = std::exp(dot / std::sqrt(static_cast<double>(head_dim)));
          total += scores[j];
        }
        for (int64_t d = 0; d < head_dim; ++d) {
          double value = 0;
          for (int64_t j = 0; j < tokens; ++j) {
            value += scores[j] / total * qkv[b][j][2 * dim + h * head_dim + d].item<double>();
          }
          mixed[b][i][h * head_dim + d] = value;
        }
      }
    }
  }
  EXPECT_TRUE(at::allclose(out, attention->proj->forward(mixed), 1e-5, 1e-6));
}

TEST(VitTest, DropPathDropsWholeSamplesAtItsRateAndKeepsTheMean) {
  torch::manual_seed(7);
  const int64_t samples = 20000;
  const at::Tensor x = at::ones({samples, 3, 2});
  const at::Tensor y = DropPath(x, 0.25, /*training=*/true);
  const at::Tensor per_sample = y.reshape({samples, -1});
  // Each sample is all zero or all 1 / 0.75.
  const at::Tensor dropped = per_sample.eq(0).all(1);
  const at::Tensor kept = per_sample.sub(1.0 / 0.75).abs().lt(1e-6).all(1);
  EXPECT_TRUE(dropped.logical_or(kept).all().item<bool>());
  const double drop_fraction = dropped.to(at::kDouble).mean().item<double>();
  // Binomial standard deviation sqrt(0.25 * 0.75 / 20000) = 0.003.
  EXPECT_NEAR(drop_fraction, 0.25, 0.015);
  EXPECT_NEAR(y.mean().item<double>(), 1.0, 0.02);
  EXPECT_TRUE(at::equal(DropPath(x, 0.25, /*training=*/false), x));
  EXPECT_TRUE(at::equal(DropPath(x, 0.0, /*training=*/true), x));
  // Rates rise linearly over the blocks, as timm's linspace(0, rate, depth).
  BackboneOptions options;
  options.drop_path_rate = 0.1;
  options.image_size = 32;
  const auto model = Build("vit_tiny", options);
  ASSERT_EQ(model->blocks->size(), 12u);
  EXPECT_DOUBLE_EQ(model->blocks[0]->as<TransformerBlock>()->drop_path_rate, 0.0);
  EXPECT_NEAR(model->blocks[11]->as<TransformerBlock>()->drop_path_rate, 0.1, 1e-12);
  EXPECT_NEAR(model->blocks[5]->as<TransformerBlock>()->drop_path_rate, 0.1 * 5 / 11, 1e-12);
}

TEST(VitTest, InitializationFollowsMocoV3) {
  torch::manual_seed(11);
  BackboneOptions options;
  options.image_size = 32;
  options.num_classes = 5;
  const auto model = Build("vit_small", options);
  const auto& block = *model->blocks[0]->as<TransformerBlock>();
  const double qkv_bound = std::sqrt(6.0 / (384 + 384));
  EXPECT_LE(block.attn->qkv->weight.abs().max().item<double>(), qkv_bound);
  EXPECT_GT(block.attn->qkv->weight.abs().max().item<double>(), 0.99 * qkv_bound);
  const double fc1_bound = std::sqrt(6.0 / (384 + 1536));
  EXPECT_LE(block.mlp->fc1->weight.abs().max().item<double>(), fc1_bound);
  EXPECT_GT(block.mlp->fc1->weight.abs().max().item<double>(), 0.99 * fc1_bound);
  EXPECT_EQ(block.attn->qkv->bias.abs().max().item<double>(), 0.0);
  EXPECT_EQ(model->head->bias.abs().max().item<double>(), 0.0);
  const double patch_bound = std::sqrt(6.0 / (3 * 16 * 16 + 384));
  const at::Tensor patch = model->patch_embed->proj->weight;
  EXPECT_LE(patch.abs().max().item<double>(), patch_bound);
  EXPECT_GT(patch.abs().max().item<double>(), 0.99 * patch_bound);
  const double cls_std = model->cls_token.std().item<double>();
  EXPECT_GT(cls_std, 0.5e-6);
  EXPECT_LT(cls_std, 2e-6);
  EXPECT_TRUE(patch.requires_grad());
}

TEST(VitTest, StopGradConv1FreezesThePatchProjection) {
  BackboneOptions options;
  options.image_size = 32;
  options.stop_grad_conv1 = true;
  const auto model = Build("vit_tiny", options);
  EXPECT_FALSE(model->patch_embed->proj->weight.requires_grad());
  EXPECT_FALSE(model->patch_embed->proj->bias.requires_grad());
  model->forward(at::randn({2, 3, 32, 32})).sum().backward();
  EXPECT_FALSE(model->patch_embed->proj->weight.grad().defined());
  EXPECT_TRUE(model->cls_token.grad().defined());
  EXPECT_TRUE(model->blocks[0]->as<TransformerBlock>()->attn->qkv->weight.grad().defined());
}

TEST(VitTest, BadOptionsGetOneSentence) {
  BackboneOptions options;
  options.image_size = 40;
  auto model = CreateBackbone("vit_small", options);
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().message(),
            "backbone \"vit_small\" needs an image size that is a multiple of its 16 px patches, "
            "got 40");
  EXPECT_FALSE(CreateBackbone("vit_huge").ok());
  EXPECT_FALSE(CreateBackbone("vit_small_patchx").ok());
  options = BackboneOptions();
  options.stop_grad_conv1 = true;
  model = CreateBackbone("resnet18", options);
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().message(),
            "backbone \"resnet18\": stop-grad conv1 and drop path are ViT options");
  // A ViT fed images of another size than it was built for.
  options = BackboneOptions();
  options.image_size = 32;
  const auto vit = Build("vit_tiny_patch8", options);
  try {
    vit->forward(at::randn({1, 3, 64, 64}));
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("was built for 32 px images, got 64x64"),
              std::string::npos);
  }
}

}  // namespace
}  // namespace ssl::backbones
