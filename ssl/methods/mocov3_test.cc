#include "ssl/methods/mocov3.h"

#include <ATen/ops/allclose.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/eye.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>
#include <gtest/gtest.h>

#include <cmath>

#include "ssl/backbones/vit.h"
#include "ssl/nn/state_dict.h"
#include "ssl/optim/optimizer.h"
#include "ssl/optim/schedules.h"

namespace ssl::methods {
namespace {

// A stand-in for a 2-process group, seen from rank 1: the other rank's keys come first.
class FakeRankOne : public distributed::Communicator {
 public:
  explicit FakeRankOne(at::Tensor other_keys) : other_keys_(std::move(other_keys)) {}
  int rank() const override { return 1; }
  int world_size() const override { return 2; }
  int local_world_size() const override { return 2; }
  at::Tensor AllGather(const at::Tensor& t) override { return at::cat({other_keys_, t.detach()}); }
  void AllReduceSum(at::Tensor&) override {}
  std::unique_ptr<distributed::PendingReduction> AllReduceSumAsync(at::Tensor) override {
    return nullptr;
  }
  void Broadcast(at::Tensor&, int) override {}
  void Barrier() override {}
  absl::StatusOr<std::shared_ptr<distributed::Communicator>> Subgroup(int) override {
    return absl::UnimplementedError("not needed by the loss");
  }

 private:
  at::Tensor other_keys_;
};

MocoV3Options Tiny() {
  MocoV3Options options;
  options.arch = "resnet18w0.125";
  options.cifar_stem = true;
  options.dim = 16;
  options.mlp_dim = 32;
  return options;
}

std::shared_ptr<MocoV3Impl> Make(
    MocoV3Options options,
    std::shared_ptr<distributed::Communicator> comm = distributed::MakeLocalCommunicator()) {
  absl::StatusOr<std::shared_ptr<MocoV3Impl>> model = MocoV3Impl::Create(options, comm);
  EXPECT_TRUE(model.ok()) << model.status();
  return *model;
}

// Plain double-precision InfoNCE: queries vs all keys, positive of row i at column
// offset + i, times 2T.
double ReferenceLoss(const at::Tensor& q, const at::Tensor& k_all, int64_t offset, double t) {
  const int64_t b = q.size(0), n = k_all.size(0), d = q.size(1);
  auto normalized = [d](const at::Tensor& x, int64_t row) {
    std::vector<double> v(d);
    double norm = 0;
    for (int64_t c = 0; c < d; ++c) norm += std::pow(x[row][c].item<double>(), 2);
    for (int64_t c = 0; c < d; ++c) v[c] = x[row][c].item<double>() / std::sqrt(norm);
    return v;
  };
  double total = 0;
  for (int64_t i = 0; i < b; ++i) {
    const std::vector<double> qi = normalized(q, i);
    std::vector<double> logits(n);
    double max_logit = -1e300;
    for (int64_t j = 0; j < n; ++j) {
      const std::vector<double> kj = normalized(k_all, j);
      double dot = 0;
      for (int64_t c = 0; c < d; ++c) dot += qi[c] * kj[c];
      logits[j] = dot / t;
      max_logit = std::max(max_logit, logits[j]);
    }
    double sum = 0;
    for (double l : logits) sum += std::exp(l - max_logit);
    total += -(logits[offset + i] - max_logit - std::log(sum));
  }
  return total / b * 2 * t;
}

TEST(MocoV3LossTest, MatchesAnIndependentComputation) {
  MocoV3Options options = Tiny();
  options.temperature = 0.7;
  auto model = Make(options);
  const at::Tensor q = at::randn({5, 16}), k = at::randn({5, 16});
  EXPECT_NEAR(model->ContrastiveLoss(q, k).item<double>(), ReferenceLoss(q, k, 0, 0.7), 1e-5);
}

TEST(MocoV3LossTest, KnownValueForOrthonormalMatchingPairs) {
  // q_i = k_i = e_i (B = 4): logits 1/T on the diagonal, 0 elsewhere, so each row's
  // cross-entropy is -1/T + log(e^(1/T) + 3), times 2T.
  const at::Tensor basis = at::eye(8).narrow(0, 0, 4);
  for (double t : {1.0, 0.5}) {
    MocoV3Options options = Tiny();
    options.temperature = t;
    auto model = Make(options);
    const double expected = 2 * t * (-1 / t + std::log(std::exp(1 / t) + 3));
    EXPECT_NEAR(model->ContrastiveLoss(basis * 3.0, basis).item<double>(), expected, 1e-6);
  }
  EXPECT_NEAR(2 * (std::log(std::exp(1.0) + 3) - 1), 1.48734, 1e-5);  // the T = 1 figure
}

TEST(MocoV3LossTest, GatheredKeysPutPositivesAtThisRanksOffset) {
  // Each rank gathers already-normalized keys.
  const at::Tensor other = at::randn({3, 16});
  const at::Tensor other_normalized = other / other.norm(2, {1}, true);
  auto model = Make(Tiny(), std::make_shared<FakeRankOne>(other_normalized));
  const at::Tensor q = at::randn({3, 16}), k = at::randn({3, 16});
  const double expected = ReferenceLoss(q, at::cat({other, k}), 3, 1.0);
  EXPECT_NEAR(model->ContrastiveLoss(q, k).item<double>(), expected, 1e-5);
}

TEST(MocoV3Test, StateDictKeysFollowTheOriginalLayout) {
  auto model = Make(Tiny());
  std::set<std::string> keys;
  for (const auto& [key, tensor] : nn::StateDict(*model)) keys.insert(key);
  for (const char* key : {"base_encoder.conv1.weight", "base_encoder.layer4.1.bn2.running_var",
                          "base_encoder.fc.0.weight", "base_encoder.fc.4.running_mean",
                          "momentum_encoder.fc.3.weight", "predictor.0.weight",
                          "predictor.1.running_mean", "predictor.3.weight"}) {
    EXPECT_TRUE(keys.count(key)) << key;
  }
  EXPECT_FALSE(keys.count("predictor.4.running_mean"));      // no last BN on the predictor
  EXPECT_FALSE(keys.count("momentum_encoder.fc.4.weight"));  // last BN has no affine
}

TEST(MocoV3Test, MomentumEncoderStartsAsACopyAndFollowsTheEma) {
  auto model = Make(Tiny());
  const auto base = model->base_encoder->parameters();
  const auto momentum = model->momentum_encoder->parameters();
  ASSERT_EQ(base.size(), momentum.size());
  for (size_t i = 0; i < base.size(); ++i) {
    ASSERT_TRUE(base[i].equal(momentum[i]));
    ASSERT_FALSE(momentum[i].requires_grad());
  }
  {
    c10::AutoGradMode no_grad(false);
    base[0].add_(1.0);
  }
  const at::Tensor before = momentum[0].clone();
  const at::Tensor running_mean =
      model->momentum_encoder->named_buffers()["bn1.running_mean"].clone();
  model->UpdateMomentumEncoder(0.9);
  // builder.py's `param_m * m + param_b * (1 - m)`, rounded the same way.
  EXPECT_TRUE(momentum[0].equal(before * 0.9 + base[0].detach() * (1.0 - 0.9)));
  EXPECT_FALSE(momentum[0].equal(before));
  EXPECT_TRUE(model->momentum_encoder->named_buffers()["bn1.running_mean"].equal(running_mean));
}

TEST(MocoV3Test, BeforeStepAppliesTheEmaWithTheScheduledMomentum) {
  for (const bool cosine : {true, false}) {
    MocoV3Options options = Tiny();
    options.momentum = 0.9;
    options.momentum_cosine = cosine;
    auto model = Make(options);
    {
      c10::AutoGradMode no_grad(false);
      for (at::Tensor& p : model->base_encoder->parameters()) p.add_(1.0);
    }
    const at::Tensor before = model->momentum_encoder->parameters()[0].clone();
    const at::Tensor base = model->base_encoder->parameters()[0].detach().clone();
    StepContext step;
    step.epoch = 5;
    step.iteration = 50;
    step.iterations_per_epoch = 100;
    step.epochs = 10;
    model->BeforeStep(step);
    const double m = cosine ? optim::CosineMomentum(0.9, 10, 5.5) : 0.9;
    ASSERT_EQ(model->ScheduledValues().size(), 1u);
    EXPECT_EQ(model->ScheduledValues()[0].first, "momentum");
    EXPECT_DOUBLE_EQ(model->ScheduledValues()[0].second, m);
    EXPECT_TRUE(
        model->momentum_encoder->parameters()[0].allclose(before * m + base * (1 - m), 1e-6, 1e-7));
  }
}

TEST(MocoV3Test, MomentumUpdateHappensBeforeTheKeys) {
  auto model = Make(Tiny());
  {
    c10::AutoGradMode no_grad(false);
    for (at::Tensor& p : model->base_encoder->parameters()) p.add_(at::randn(p.sizes()) * 0.05);
  }
  const at::Tensor x1 = at::randn({8, 3, 32, 32}), x2 = at::randn({8, 3, 32, 32});
  // m = 0 copies the base encoder: keys must then come from the base weights.
  const double loss = model->forward(x1, x2, 0.0).item<double>();
  c10::AutoGradMode no_grad(false);
  const at::Tensor q1 = model->predictor->forward(model->base_encoder->forward(x1));
  const at::Tensor q2 = model->predictor->forward(model->base_encoder->forward(x2));
  const at::Tensor k1 = model->base_encoder->forward(x1), k2 = model->base_encoder->forward(x2);
  const double expected =
      model->ContrastiveLoss(q1, k2).item<double>() + model->ContrastiveLoss(q2, k1).item<double>();
  EXPECT_NEAR(loss, expected, 1e-5);
}

TEST(MocoV3Test, GradientsReachBaseAndPredictorButNeverTheMomentumEncoder) {
  auto model = Make(Tiny());
  const at::Tensor loss =
      model->forward(at::randn({8, 3, 32, 32}), at::randn({8, 3, 32, 32}), 0.99);
  loss.backward();
  for (const at::Tensor& p : model->momentum_encoder->parameters())
    EXPECT_FALSE(p.grad().defined());
  for (const at::Tensor& p : model->predictor->parameters()) {
    ASSERT_TRUE(p.grad().defined());
    EXPECT_GT(p.grad().abs().sum().item<double>(), 0);
  }
  EXPECT_GT(model->base_encoder->parameters()[0].grad().abs().sum().item<double>(), 0);
}

// --batch_views: both views as one interleaved batch per encoder, each with its own BN
// statistics, is the two-pass step rounded differently: same loss, gradients and BN
// running statistics, over two steps (the second with the first's running statistics).
TEST(MocoV3Test, OneBatchOfBothViewsEqualsOnePassPerView) {
  MocoV3Options options = Tiny();
  auto two_passes = Make(options);
  options.batch_views = true;
  auto one_batch = Make(options);
  {
    c10::AutoGradMode no_grad(false);
    const auto from = two_passes->parameters(), to = one_batch->parameters();
    for (size_t i = 0; i < from.size(); ++i) to[i].copy_(from[i]);
  }
  for (int step = 0; step < 2; ++step) {
    const at::Tensor x1 = at::randn({8, 3, 32, 32}), x2 = at::randn({8, 3, 32, 32});
    const at::Tensor expected = two_passes->forward(x1, x2, 0.99);
    const at::Tensor loss = one_batch->forward(x1, x2, 0.99);
    EXPECT_NEAR(loss.item<double>(), expected.item<double>(), 1e-5);
    expected.backward();
    loss.backward();
  }
  const auto expected_parameters = two_passes->named_parameters();
  for (const auto& parameter : one_batch->named_parameters()) {
    SCOPED_TRACE(parameter.key());
    const at::Tensor& reference = expected_parameters[parameter.key()];
    ASSERT_EQ(parameter.value().grad().defined(), reference.grad().defined());
    if (!reference.grad().defined()) continue;
    EXPECT_TRUE(at::allclose(parameter.value().grad(), reference.grad(), 1e-3, 1e-5))
        << (parameter.value().grad() - reference.grad()).abs().max().item<double>();
  }
  const auto expected_buffers = two_passes->named_buffers();
  for (const auto& buffer : one_batch->named_buffers()) {
    SCOPED_TRACE(buffer.key());
    const at::Tensor& reference = expected_buffers[buffer.key()];
    if (buffer.value().scalar_type() == at::kLong) {
      EXPECT_TRUE(buffer.value().equal(reference)) << "num_batches_tracked";
    } else {
      EXPECT_TRUE(at::allclose(buffer.value(), reference, 1e-4, 1e-6));
    }
  }
  // Evaluation (a single batch) is unaffected by the option.
  one_batch->eval();
  two_passes->eval();
  const at::Tensor x = at::randn({4, 3, 32, 32});
  c10::AutoGradMode no_grad(false);
  EXPECT_TRUE(at::allclose(one_batch->base_encoder->forward(x),
                           two_passes->base_encoder->forward(x), 1e-4, 1e-5));
}

TEST(MocoV3Test, InitialLossIsAboutFourLogB) {
  // Sanity figure from the paper's code: ~2 ln B per term at T = 1 (13.9 for B = 32).
  auto model = Make(Tiny());
  const double loss =
      model->forward(at::randn({32, 3, 32, 32}), at::randn({32, 3, 32, 32}), 0.99).item<double>();
  EXPECT_NEAR(loss, 4 * std::log(32.0), 0.1 * 4 * std::log(32.0));
}

TEST(MocoV3Test, EmbeddingSpreadIndicatorFollowsTheLastStep) {
  auto model = Make(Tiny());
  EXPECT_TRUE(model->Indicators().empty());
  model->Loss({at::randn({16, 3, 32, 32}), at::randn({16, 3, 32, 32})}, StepContext());
  ASSERT_EQ(model->Indicators().size(), 1u);
  EXPECT_EQ(model->Indicators()[0].name, "embedding_spread");
  EXPECT_GT(model->Indicators()[0].value, 0.1);
  // One image repeated: every prediction the same, so no spread.
  const at::Tensor same = at::randn({1, 3, 32, 32}).expand({16, 3, 32, 32}).contiguous();
  model->Loss({same, same}, StepContext());
  EXPECT_NEAR(model->Indicators()[0].value, 0.0, 1e-4);
}

MocoV3Options TinyVit() {
  MocoV3Options options;
  options.arch = "vit_tiny_patch8";
  options.image_size = 16;
  options.dim = 16;
  options.mlp_dim = 32;
  options.temperature = 0.2;
  options.stop_grad_conv1 = true;
  return options;
}

// MoCo_ViT of builder.py: projector 3 layers with last BN in the head slot, predictor
// 2 layers with last BN.
TEST(MocoV3VitTest, HeadsFollowMocoVitLayout) {
  auto model = Make(TinyVit());
  std::set<std::string> keys;
  for (const auto& [key, tensor] : nn::StateDict(*model)) keys.insert(key);
  for (const char* key :
       {"base_encoder.cls_token", "base_encoder.pos_embed", "base_encoder.patch_embed.proj.weight",
        "base_encoder.blocks.11.attn.qkv.weight", "base_encoder.norm.weight",
        "base_encoder.head.0.weight", "base_encoder.head.3.weight", "base_encoder.head.6.weight",
        "base_encoder.head.7.running_mean", "momentum_encoder.head.6.weight", "predictor.0.weight",
        "predictor.3.weight", "predictor.4.running_mean"}) {
    EXPECT_TRUE(keys.count(key)) << key;
  }
  EXPECT_FALSE(keys.count("base_encoder.head.8.weight"));
  EXPECT_FALSE(keys.count("base_encoder.fc.0.weight"));
  EXPECT_EQ(model->base_encoder->parameters()[0].size(-1), 192);  // cls token width
  const auto where = model->Backbones();
  EXPECT_EQ(where[0].second.head_prefixes, std::vector<std::string>{"head."});
  EXPECT_EQ(model->Config()["stop_grad_conv1"], true);
}

// --stop-grad-conv1 freezes the patch projection in both encoders; the EMA of equal
// frozen tensors leaves them equal; everything else learns.
TEST(MocoV3VitTest, StopGradConv1KeepsThePatchProjectionAcrossAStep) {
  torch::manual_seed(0);
  auto model = Make(TinyVit());
  auto* base = dynamic_cast<backbones::VisionTransformerImpl*>(model->base_encoder.get());
  auto* momentum = dynamic_cast<backbones::VisionTransformerImpl*>(model->momentum_encoder.get());
  ASSERT_NE(base, nullptr);
  ASSERT_NE(momentum, nullptr);
  const at::Tensor patch_before = base->patch_embed->proj->weight.clone();
  const at::Tensor qkv_before =
      base->blocks[0]->as<backbones::TransformerBlock>()->attn->qkv->weight.clone();
  model->forward(at::randn({8, 3, 16, 16}), at::randn({8, 3, 16, 16}), 0.99).backward();
  EXPECT_FALSE(base->patch_embed->proj->weight.grad().defined());
  EXPECT_FALSE(base->pos_embed.grad().defined());
  auto optimizer = optim::MakeOptimizer(
      "adamw", {{.params = nn::Parameters(*model), .weight_decay = 0.1}}, {.lr = 0.01});
  ASSERT_TRUE(optimizer.ok()) << optimizer.status();
  (*optimizer)->Step();
  model->UpdateMomentumEncoder(0.9);
  EXPECT_TRUE(at::equal(base->patch_embed->proj->weight, patch_before));
  // builder.py's EMA runs over every parameter, so the frozen copy only sees rounding.
  EXPECT_TRUE(at::allclose(momentum->patch_embed->proj->weight, patch_before, 0, 1e-7));
  EXPECT_FALSE(
      at::equal(base->blocks[0]->as<backbones::TransformerBlock>()->attn->qkv->weight, qkv_before));
}

TEST(MocoV3Test, BadOptionsAreOneClearError) {
  MocoV3Options options = Tiny();
  options.arch = "resnet7";
  EXPECT_EQ(MocoV3Impl::Create(options, distributed::MakeLocalCommunicator()).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = Tiny();
  options.temperature = 0;
  EXPECT_EQ(MocoV3Impl::Create(options, distributed::MakeLocalCommunicator()).status().message(),
            "moco temperature must be > 0, got 0");
  options = TinyVit();
  options.image_size = 20;
  EXPECT_EQ(MocoV3Impl::Create(options, distributed::MakeLocalCommunicator()).status().message(),
            "backbone \"vit_tiny_patch8\" needs an image size that is a multiple of its 8 px "
            "patches, got 20");
  options = Tiny();
  options.stop_grad_conv1 = true;
  EXPECT_EQ(MocoV3Impl::Create(options, distributed::MakeLocalCommunicator()).status().message(),
            "backbone \"resnet18w0.125\": stop-grad conv1 and drop path are ViT options");
}

}  // namespace
}  // namespace ssl::methods
