#include "ssl/methods/swav.h"

#include <ATen/ops/allclose.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/eye.h>
#include <ATen/ops/full.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "ssl/methods/sinkhorn.h"
#include "ssl/nn/state_dict.h"

namespace ssl::methods {
namespace {

using Matrix = std::vector<std::vector<double>>;

Matrix ToMatrix(const at::Tensor& t) {
  const at::Tensor d = t.to(at::kDouble).contiguous();
  Matrix m(d.size(0), std::vector<double>(d.size(1)));
  for (int64_t i = 0; i < d.size(0); ++i) {
    for (int64_t j = 0; j < d.size(1); ++j) m[i][j] = d[i][j].item<double>();
  }
  return m;
}

// Sinkhorn-Knopp written out on plain doubles: Q = exp(S / eps)^T, Q /= sum; repeat
// rows to 1/K, columns to 1/B; finally columns to 1. Returns B x K.
Matrix ReferenceSinkhorn(const Matrix& scores, double eps, int iters) {
  const size_t b = scores.size(), k = scores[0].size();
  Matrix q(k, std::vector<double>(b));
  double total = 0;
  for (size_t i = 0; i < k; ++i) {
    for (size_t j = 0; j < b; ++j) total += q[i][j] = std::exp(scores[j][i] / eps);
  }
  for (auto& row : q) {
    for (double& v : row) v /= total;
  }
  for (int it = 0; it < iters; ++it) {
    for (auto& row : q) {
      double sum = 0;
      for (double v : row) sum += v;
      for (double& v : row) v /= sum * k;
    }
    for (size_t j = 0; j < b; ++j) {
      double sum = 0;
      for (size_t i = 0; i < k; ++i) sum += q[i][j];
      for (size_t i = 0; i < k; ++i) q[i][j] /= sum * b;
    }
  }
  Matrix codes(b, std::vector<double>(k));
  for (size_t j = 0; j < b; ++j) {
    double sum = 0;
    for (size_t i = 0; i < k; ++i) sum += q[i][j];
    for (size_t i = 0; i < k; ++i) codes[j][i] = q[i][j] / sum;
  }
  return codes;
}

void ExpectNear(const at::Tensor& actual, const Matrix& expected, double tolerance) {
  ASSERT_EQ(actual.size(0), static_cast<int64_t>(expected.size()));
  ASSERT_EQ(actual.size(1), static_cast<int64_t>(expected[0].size()));
  for (size_t i = 0; i < expected.size(); ++i) {
    for (size_t j = 0; j < expected[0].size(); ++j) {
      ASSERT_NEAR(actual[i][j].item<double>(), expected[i][j], tolerance) << i << "," << j;
    }
  }
}

TEST(SinkhornTest, MatchesAnIndependentComputation) {
  at::manual_seed(0);
  const at::Tensor scores = at::randn({6, 4}).mul(0.3);
  auto local = distributed::MakeLocalCommunicator();
  for (bool double_precision : {false, true}) {
    SinkhornOptions options;
    options.double_precision = double_precision;
    const at::Tensor codes = DistributedSinkhorn(scores, options, *local);
    EXPECT_EQ(codes.scalar_type(), at::kFloat);
    ExpectNear(codes, ReferenceSinkhorn(ToMatrix(scores), 0.05, 3), 1e-5);
  }
}

TEST(SinkhornTest, ConvergesToAnEquipartitionAndHardAssignmentIsOneHot) {
  at::manual_seed(1);
  const at::Tensor scores = at::randn({12, 3}).mul(0.1);
  auto local = distributed::MakeLocalCommunicator();
  SinkhornOptions options;
  options.num_iters = 200;
  const at::Tensor codes = DistributedSinkhorn(scores, options, *local);
  // Rows are distributions; every prototype gets B / K of the mass.
  EXPECT_TRUE(at::allclose(codes.sum(1), at::ones({12}), 1e-5, 1e-5));
  EXPECT_TRUE(at::allclose(codes.sum(0), at::full({3}, 4.0), 1e-3, 1e-3)) << codes.sum(0);
  options.hard_assignment = true;
  const at::Tensor hard = DistributedSinkhorn(scores, options, *local);
  EXPECT_TRUE(hard.sum(1).eq(1).all().item<bool>());
  EXPECT_TRUE(hard.argmax(1).equal(codes.argmax(1)));
  EXPECT_EQ(hard.eq(0).sum().item<int64_t>(), 12 * 2);
}

TEST(SinkhornTest, HugeScoresDoNotOverflow) {
  // exp(40 / 0.05) overflows float32 and float64 without the max subtraction.
  const at::Tensor scores = at::tensor({40.0f, 0.0f, 0.0f, 40.0f}).reshape({2, 2});
  auto local = distributed::MakeLocalCommunicator();
  const at::Tensor codes = DistributedSinkhorn(scores, SinkhornOptions(), *local);
  EXPECT_TRUE(codes.isfinite().all().item<bool>());
  EXPECT_NEAR(codes[0][0].item<double>(), 1.0, 1e-6);
  EXPECT_NEAR(codes[1][1].item<double>(), 1.0, 1e-6);
}

SwavOptions Tiny() {
  SwavOptions options;
  options.arch = "resnet18w0.0625";  // 32 features
  options.cifar_stem = true;
  options.head = nn::SwavHeadOptions().dims({32, 16, 8}).num_clusters({10});
  options.crops.counts = {2, 2};
  options.crops.sizes = {16, 8};
  options.crops.scale_mins = {0.14, 0.05};
  options.crops.scale_maxs = {1.0, 0.14};
  return options;
}

std::shared_ptr<SwavImpl> Make(const SwavOptions& options) {
  absl::StatusOr<std::shared_ptr<SwavImpl>> made =
      SwavImpl::Create(options, distributed::MakeLocalCommunicator());
  EXPECT_TRUE(made.ok()) << made.status();
  return *made;
}

std::vector<at::Tensor> Crops(int64_t batch) {
  return {at::randn({2 * batch, 3, 16, 16}), at::randn({2 * batch, 3, 8, 8})};
}

StepContext Step(int64_t global_step) {
  StepContext step;
  step.global_step = global_step;
  step.total_steps = 100;
  step.iterations_per_epoch = 100;
  step.epochs = 1;
  step.iteration = global_step;
  return step;
}

TEST(SwavLossTest, MatchesAnIndependentComputation) {
  SwavOptions options = Tiny();
  options.crops.counts = {2, 1};  // 3 crops
  options.crops.sizes = {16, 8};
  options.temperature = 0.2;
  for (bool double_precision : {false, true}) {
    options.use_double_precision = double_precision;
    auto swav = Make(options);
    at::manual_seed(2);
    const int64_t b = 4, k = 5;
    const at::Tensor scores = at::randn({3 * b, k}).mul(0.5);
    const double loss = swav->SwappedPredictionLoss(scores, {}, false).item<double>();
    // For each assignment crop a in {0, 1}: codes q_a of its rows; every other crop c
    // contributes -mean_n sum_k q_a log softmax(s_c / T); averaged over c, then over a.
    const Matrix s = ToMatrix(scores);
    double expected = 0;
    for (int assign : {0, 1}) {
      const Matrix q =
          ReferenceSinkhorn(Matrix(s.begin() + assign * b, s.begin() + (assign + 1) * b), 0.05, 3);
      double sub = 0;
      for (int crop = 0; crop < 3; ++crop) {
        if (crop == assign) continue;
        for (int64_t n = 0; n < b; ++n) {
          const std::vector<double>& row = s[crop * b + n];
          double norm = 0;
          for (double v : row) norm += std::exp(v / 0.2);
          for (int64_t j = 0; j < k; ++j) {
            sub -= q[n][j] * (row[j] / 0.2 - std::log(norm)) / b;
          }
        }
      }
      expected += sub / 2;
    }
    EXPECT_NEAR(loss, expected / 2, 1e-5) << "double precision " << double_precision;
  }
}

TEST(SwavLossTest, EqualScoresGiveExactlyLogK) {
  auto swav = Make(Tiny());
  const at::Tensor scores = at::zeros({4 * 3, 10});
  EXPECT_NEAR(swav->SwappedPredictionLoss(scores, {}, false).item<double>(), std::log(10.0), 1e-5);
}

TEST(SwavTest, LossAtInitializationIsNearLogK) {
  // Random embeddings and prototypes score near zero: the swapped predictions are close
  // to uniform, so the loss starts just above ln K (8.0 for VISSL's 3000 prototypes).
  SwavOptions options = Tiny();
  options.head = nn::SwavHeadOptions().dims({32, 64, 128}).num_clusters({3000});
  auto swav = Make(options);
  at::manual_seed(3);
  swav->BeforeStep(Step(0));
  const double loss = swav->Loss(Crops(16), Step(0)).item<double>();
  EXPECT_GT(loss, std::log(3000.0) - 0.05);
  EXPECT_LT(loss, std::log(3000.0) + 0.5);
}

// The indicator helpers of method.h, on inputs whose values are known by hand.
TEST(IndicatorTest, EmbeddingSpreadIsZeroAtCollapseAndOneForAnEvenSpread) {
  // Every row the same: no spread at all, whatever its length.
  EXPECT_NEAR(EmbeddingSpread(at::ones({8, 4}).mul(3)), 0.0, 1e-12);
  // +-e_i for each of d = 4 axes: each dimension holds +1, -1 and six zeros (std
  // 1/sqrt(4)), so the mean std times sqrt(4) is exactly 1; lengths do not matter.
  const at::Tensor axes = at::eye(4, at::kDouble);
  EXPECT_NEAR(EmbeddingSpread(at::cat({axes.mul(2), axes.neg()})), 1.0, 1e-12);
  // +-e_1 only: dimension 1 has std 1, the other three 0: (1 / 4) * sqrt(4) = 0.5.
  const at::Tensor e1 = axes.narrow(0, 0, 1);
  EXPECT_NEAR(EmbeddingSpread(at::cat({e1, e1.neg()})), 0.5, 1e-12);
}

TEST(IndicatorTest, PerplexitiesAndEntropyOfKnownDistributions) {
  EXPECT_NEAR(MeanRowPerplexity(at::full({3, 5}, 0.2, at::kDouble)), 5.0, 1e-9);  // uniform: K
  const at::Tensor one_hot = at::eye(4, at::kDouble);
  EXPECT_NEAR(MeanRowPerplexity(one_hot), 1.0, 1e-12);
  EXPECT_NEAR(PerplexityOfMeanRow(one_hot), 4.0, 1e-9);  // four samples, four prototypes
  // Rows spread over 2 and over 4 entries: entropies ln 2 and ln 4, mean ln sqrt(8).
  const at::Tensor mixed =
      at::tensor({0.5, 0.5, 0.0, 0.0, 0.25, 0.25, 0.25, 0.25}, at::kDouble).view({2, 4});
  EXPECT_NEAR(MeanRowPerplexity(mixed), std::sqrt(8.0), 1e-9);
  // The mean row (0.375, 0.375, 0.125, 0.125).
  const double h = -2 * (0.375 * std::log(0.375) + 0.125 * std::log(0.125));
  EXPECT_NEAR(PerplexityOfMeanRow(mixed), std::exp(h), 1e-9);
  EXPECT_NEAR(MeanSoftmaxEntropy(at::zeros({2, 7})), std::log(7.0), 1e-9);
  EXPECT_NEAR(MeanSoftmaxEntropy(at::tensor({0.0, 1000.0}).view({1, 2})), 0.0, 1e-9);
}

TEST(SwavTest, IndicatorsTellACollapsedBatchFromAHealthyOne) {
  SwavOptions options = Tiny();
  options.head = nn::SwavHeadOptions().dims({32, 64, 16}).num_clusters({20});
  auto swav = Make(options);
  EXPECT_TRUE(swav->Indicators().empty());  // nothing before the first step
  auto value = [&swav](const std::string& name) {
    for (const Indicator& indicator : swav->Indicators()) {
      if (indicator.name == name) return indicator.value;
    }
    ADD_FAILURE() << "no indicator " << name;
    return 0.0;
  };
  at::manual_seed(4);
  swav->BeforeStep(Step(0));
  const double healthy_loss = swav->Loss(Crops(8), Step(0)).item<double>();
  EXPECT_GT(value("embedding_spread"), 0.3);
  EXPECT_GT(value("prototypes_used"), 1);
  EXPECT_NEAR(value("loss_minus_ln_k"), healthy_loss - std::log(20.0), 1e-6);
  // Every crop the same image (one resolution): identical embeddings (spread 0), one
  // argmax prototype, and Sinkhorn's equipartition makes every code uniform (perplexity
  // K); uniform codes against any prediction cost at least ln K.
  options.crops.counts = {4};
  options.crops.sizes = {16};
  options.crops.scale_mins = {0.14};
  options.crops.scale_maxs = {1.0};
  swav = Make(options);
  swav->BeforeStep(Step(0));
  swav->Loss({at::randn({1, 3, 16, 16}).expand({32, 3, 16, 16}).contiguous()}, Step(0));
  EXPECT_NEAR(value("embedding_spread"), 0.0, 1e-4);
  EXPECT_EQ(value("prototypes_used"), 1);
  EXPECT_NEAR(value("codes_perplexity"), 20.0, 1e-3);
  EXPECT_NEAR(value("codes_batch_perplexity"), 20.0, 1e-3);
  EXPECT_GE(value("loss_minus_ln_k"), -1e-6);
  EXPECT_LE(value("prediction_entropy"), std::log(20.0) + 1e-9);
  int shown = 0;
  for (const Indicator& indicator : swav->Indicators()) shown += indicator.on_progress_line;
  EXPECT_EQ(shown, 2);
}

TEST(SwavTest, PrototypesAreNormalizedBeforeEachStepUnlessAskedNot) {
  for (bool normalize : {true, false}) {
    SwavOptions options = Tiny();
    options.normalize_last_layer = normalize;
    auto swav = Make(options);
    swav->BeforeStep(Step(0));
    const at::Tensor norms = swav->head->prototypes[0]->weight.norm(2, {1});
    EXPECT_EQ(at::allclose(norms, at::ones_like(norms), 1e-6, 1e-6), normalize);
  }
}

TEST(SwavTest, QueueFillsFromItsStartIsUsedOnceFullAndResumes) {
  SwavOptions options = Tiny();
  options.head = nn::SwavHeadOptions().dims({32, 8}).use_bn(false).num_clusters({10});
  options.queue_length = 8;  // two batches of 4
  options.queue_start_iter = 1;
  options.queue_rule = SwavOptions::QueueRule::kSwavRepo;
  auto swav = Make(options);
  ASSERT_EQ(swav->local_queue_length(), 8);
  at::manual_seed(4);
  std::vector<std::vector<at::Tensor>> batches;
  for (int i = 0; i < 4; ++i) batches.push_back(Crops(4));
  std::vector<bool> used;
  std::vector<int64_t> filled;
  for (int64_t step = 0; step < 4; ++step) {
    swav->BeforeStep(Step(step));
    used.push_back(swav->using_queue());
    swav->Loss(batches[step], Step(step));
    filled.push_back(swav->queue_filled());
  }
  EXPECT_EQ(filled, (std::vector<int64_t>{0, 4, 8, 8}));
  EXPECT_EQ(used, (std::vector<bool>{false, false, false, true}));
  // Newest first: the last step's assignment-crop embeddings lead each queue. The
  // 16 px group (crops 0 and 1) ran through the trunk as one batch; rerunning it in
  // train mode reproduces the same features (the head has no BN here).
  {
    c10::AutoGradMode no_grad(false);
    const at::Tensor embedding =
        swav->head->forward(swav->EvalBackbone().Features(batches[3][0])).embedding;
    const at::Tensor queue = swav->embedding_queue();
    EXPECT_EQ(queue.sizes(), (at::IntArrayRef{2, 8, 8}));
    EXPECT_TRUE(at::allclose(queue[0].narrow(0, 0, 4), embedding.narrow(0, 0, 4), 1e-5, 1e-6));
    EXPECT_TRUE(at::allclose(queue[1].narrow(0, 0, 4), embedding.narrow(0, 4, 4), 1e-5, 1e-6));
    // The previous step's embeddings moved one batch back.
    const at::Tensor previous =
        swav->head->forward(swav->EvalBackbone().Features(batches[2][0])).embedding;
    EXPECT_TRUE(at::allclose(queue[0].narrow(0, 4, 4), previous.narrow(0, 0, 4), 1e-5, 1e-6));
  }
  // The queue changes the codes once in use.
  const at::Tensor scores = at::randn({16, 10});
  const at::Tensor without = swav->SwappedPredictionLoss(scores, {}, false);
  std::vector<at::Tensor> queue_scores = {at::randn({8, 10}), at::randn({8, 10})};
  const at::Tensor with = swav->SwappedPredictionLoss(scores, queue_scores, false);
  EXPECT_NE(without.item<double>(), with.item<double>());
  // Checkpointed and restored exactly, fill level included.
  const c10::impl::GenericDict state = swav->ExtraState();
  EXPECT_TRUE(state.contains("swav_criterion.local_emb_queue"));
  EXPECT_EQ(state.at("swav_criterion.local_queue0").toTensor().sizes(),
            (at::IntArrayRef{2, 8, 10}));
  EXPECT_EQ(state.at("swav_criterion.num_iteration").toTensor().item<int64_t>(), 4);
  auto restored = Make(options);
  ASSERT_TRUE(restored->LoadExtraState(state).ok());
  EXPECT_TRUE(restored->embedding_queue().equal(swav->embedding_queue()));
  EXPECT_EQ(restored->queue_filled(), 8);
  restored->BeforeStep(Step(4));
  EXPECT_TRUE(restored->using_queue());
  // A checkpoint from a run with another queue length is refused.
  SwavOptions longer = options;
  longer.queue_length = 16;
  EXPECT_FALSE(Make(longer)->LoadExtraState(state).ok());
}

TEST(SwavTest, VisslsQueueStartsWithRandomRowsAndIsUsedFromItsStartIteration) {
  SwavOptions options = Tiny();
  options.head = nn::SwavHeadOptions().dims({32, 8}).use_bn(false).num_clusters({10});
  options.queue_length = 8;
  options.queue_start_iter = 2;
  ASSERT_EQ(options.queue_rule, SwavOptions::QueueRule::kVissl);  // the default
  at::manual_seed(5);
  auto swav = Make(options);
  // Uniform in +-sqrt(3 / 8): every coordinate inside, squared norms about 1 on average.
  const at::Tensor initial = swav->embedding_queue().clone();
  EXPECT_LE(initial.abs().max().item<double>(), std::sqrt(3.0 / 8));
  EXPECT_GT(initial.abs().min().item<double>(), 0);
  EXPECT_NEAR(initial.pow(2).sum(2).mean().item<double>(), 1.0, 0.25);
  EXPECT_EQ(swav->queue_filled(), 8);
  std::vector<bool> used;
  for (int64_t step = 0; step < 3; ++step) {
    swav->BeforeStep(Step(step));
    used.push_back(swav->using_queue());
    swav->Loss(Crops(4), Step(step));
  }
  EXPECT_EQ(used, (std::vector<bool>{false, false, true}));
  // Only the step that used the queue enqueued: one batch in front, the rest shifted back.
  EXPECT_TRUE(swav->embedding_queue()[0].narrow(0, 4, 4).equal(initial[0].narrow(0, 0, 4)));
  EXPECT_FALSE(swav->embedding_queue()[0].narrow(0, 0, 4).equal(initial[0].narrow(0, 0, 4)));
}

TEST(SwavTest, ParameterGroupsFollowVisslsRegularizationAndFreezing) {
  SwavOptions options = Tiny();
  options.regularize_bn = false;
  options.prototypes_frozen_iters = 313;
  auto swav = Make(options);
  std::map<std::string, methods::ParameterGroup> groups;
  int64_t total = 0;
  for (methods::ParameterGroup& group : swav->ParameterGroups()) {
    total += static_cast<int64_t>(group.parameters.size());
    groups[group.name] = group;
  }
  EXPECT_EQ(total, static_cast<int64_t>(swav->parameters().size()));
  ASSERT_EQ(groups.count("prototypes"), 1u);
  EXPECT_EQ(groups["prototypes"].frozen_iterations, 313);
  EXPECT_TRUE(groups["prototypes"].parameters[0].is_same(swav->head->prototypes[0]->weight));
  EXPECT_TRUE(groups["trunk_unregularized"].no_weight_decay);
  EXPECT_TRUE(groups["head_unregularized"].no_weight_decay);
  // regularize_bn off: every BN weight and bias is decay-free; conv and Linear weights
  // and the head's Linear biases (regularize_bias on) are decayed.
  for (const at::Tensor& p : groups["trunk_unregularized"].parameters) EXPECT_EQ(p.dim(), 1);
  for (const at::Tensor& p : groups["trunk_regularized"].parameters) EXPECT_EQ(p.dim(), 4);
  EXPECT_FALSE(groups["prototypes"].no_weight_decay);
}

TEST(SwavTest, NonRegularizedParametersAreMatchedByNameAsVisslDoes) {
  SwavOptions options = Tiny();
  // Substrings of VISSL's names: the stem convolution, and the prototypes.
  options.non_regularized_parameters = {"_feature_blocks.conv1.", "prototypes0"};
  auto swav = Make(options);
  std::map<std::string, methods::ParameterGroup> groups;
  for (methods::ParameterGroup& group : swav->ParameterGroups()) groups[group.name] = group;
  auto holds = [](const methods::ParameterGroup& group, const at::Tensor& tensor) {
    for (const at::Tensor& p : group.parameters) {
      if (p.is_same(tensor)) return true;
    }
    return false;
  };
  const auto named = swav->named_parameters();
  const at::Tensor stem = named["trunk._feature_blocks.conv1.weight"];
  EXPECT_TRUE(holds(groups["trunk_unregularized"], stem));
  EXPECT_FALSE(holds(groups["trunk_regularized"], stem));
  // Other convolutions keep their weight decay.
  EXPECT_TRUE(
      holds(groups["trunk_regularized"], named["trunk._feature_blocks.layer1.0.conv1.weight"]));
  EXPECT_TRUE(groups["prototypes"].no_weight_decay);
  EXPECT_TRUE(holds(groups["prototypes"], swav->head->prototypes[0]->weight));
}

TEST(SwavTest, StateDictUsesVisslNames) {
  auto swav = Make(Tiny());
  std::set<std::string> keys;
  for (const auto& [key, tensor] : nn::StateDict(*swav)) keys.insert(key);
  for (const char* key :
       {"trunk._feature_blocks.conv1.weight", "trunk._feature_blocks.layer4.1.bn2.running_var",
        "heads.0.projection_head.0.weight", "heads.0.projection_head.0.bias",
        "heads.0.projection_head.1.running_mean", "heads.0.projection_head.3.weight",
        "heads.0.prototypes0.weight"}) {
    EXPECT_TRUE(keys.count(key)) << key;
  }
  EXPECT_FALSE(keys.count("heads.0.prototypes0.bias"));
}

TEST(SwavTest, BadOptionsAreOneClearSentence) {
  auto local = distributed::MakeLocalCommunicator();
  SwavOptions options = Tiny();
  options.head.dims({2048, 128});
  EXPECT_EQ(SwavImpl::Create(options, local).status().message(),
            "swav_head dims start with 2048 but the trunk resnet18w0.0625 gives 32 features; the "
            "first dim must equal the trunk's width");
  options = Tiny();
  options.crops_for_assign = {0, 4};
  EXPECT_EQ(SwavImpl::Create(options, local).status().message(),
            "crops_for_assign holds crop 4, outside the 4 crops [0, 3]");
  options = Tiny();
  options.temperature = 0;
  EXPECT_FALSE(SwavImpl::Create(options, local).ok());
}

}  // namespace
}  // namespace ssl::methods
