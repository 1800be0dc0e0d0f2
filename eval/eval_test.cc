#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <gtest/gtest.h>

#include <cmath>

#include "eval/features.h"
#include "eval/knn.h"
#include "eval/linear.h"
#include "ssl/backbones/backbone.h"
#include "ssl/core/constants.h"
#include "ssl/data/synthetic.h"
#include "ssl/data/test_util.h"
#include "ssl/data/views.h"

namespace ssl::eval {
namespace {

TEST(KnnTest, WeightedVotesAsComputedByHand) {
  // Bank on the unit circle: class 0 at 0 and 10 degrees, class 1 at 30 degrees.
  auto point = [](double degrees) {
    const double r = degrees * kPi / 180;
    return std::vector<float>{static_cast<float>(std::cos(r)), static_cast<float>(std::sin(r))};
  };
  std::vector<float> bank_values;
  for (double d : {0.0, 10.0, 30.0}) {
    for (float v : point(d)) bank_values.push_back(v);
  }
  FeatureSet bank{at::tensor(bank_values).reshape({3, 2}),
                  at::tensor(std::vector<int64_t>{0, 0, 1})};
  // Query at 25 degrees: neighbours 30 (cos 5 = 0.9962, class 1) then 10 (cos 15 =
  // 0.9659, class 0). At T = 0.5, k = 1 -> class 1; k = 2 -> class 1 (weight 7.33 vs
  // 6.90); k = 3 adds 0 degrees (cos 25 = 0.9063, weight 6.13): class 0 sums to 13.03.
  const std::vector<float> q = point(25);
  FeatureSet query{at::tensor(q).reshape({1, 2}) * 3.0, at::tensor(std::vector<int64_t>{1})};
  const std::vector<KnnResult> results = KnnClassify(bank, query, {1, 2, 3}, 0.5, 2);
  EXPECT_DOUBLE_EQ(results[0].top1, 100.0);
  EXPECT_DOUBLE_EQ(results[1].top1, 100.0);
  EXPECT_DOUBLE_EQ(results[2].top1, 0.0);
  EXPECT_LT(std::exp(0.9659 / 0.5), std::exp(0.9962 / 0.5));
  // At T = 0.07 the nearest neighbour dominates even with three votes.
  EXPECT_DOUBLE_EQ(KnnClassify(bank, query, {3}, 0.07, 2)[0].top1, 100.0);
  // k beyond the bank is clamped; with 2 classes top-5 is always a hit.
  EXPECT_DOUBLE_EQ(KnnClassify(bank, query, {200}, 0.07, 2)[0].top5, 100.0);
}

TEST(KnnTest, SeparatedClustersAreFullyCorrect) {
  const at::Tensor centres = at::randn({4, 16}) * 10;
  std::vector<at::Tensor> train, test;
  std::vector<int64_t> train_labels, test_labels;
  for (int c = 0; c < 4; ++c) {
    train.push_back(centres[c] + at::randn({25, 16}) * 0.1);
    test.push_back(centres[c] + at::randn({5, 16}) * 0.1);
    train_labels.insert(train_labels.end(), 25, c);
    test_labels.insert(test_labels.end(), 5, c);
  }
  const std::vector<KnnResult> results =
      KnnClassify({at::cat(train), at::tensor(train_labels)},
                  {at::cat(test), at::tensor(test_labels)}, {20, 200}, 0.07, 4);
  EXPECT_DOUBLE_EQ(results[0].top1, 100.0);
  EXPECT_EQ(results[1].k, 200);
}

class LinearEvalTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new std::string(data::testing::MakeTempDir("linear_data"));
    data::SyntheticDatasetOptions options;
    options.num_classes = 3;
    options.train_per_class = 24;
    options.val_per_class = 8;
    options.image_size = 32;
    ASSERT_TRUE(data::WriteSyntheticImageFolder(options, *root_).ok());
  }
  static std::string* root_;
};
std::string* LinearEvalTest::root_ = nullptr;

TEST_F(LinearEvalTest, TrainsOnlyTheClassifierAndPassesTheSanityCheck) {
  backbones::BackboneOptions backbone_options;
  backbone_options.cifar_stem = true;
  auto backbone = *backbones::CreateBackbone("resnet18w0.125", backbone_options);
  const auto train = *data::ImageFolder::Open(*root_ + "/train");
  const auto val = *data::ImageFolder::Open(*root_ + "/val");
  for (bool cached : {true, false}) {
    LinearEvalOptions options;
    options.epochs = 3;
    options.batch_size = 24;
    options.image_size = 32;
    options.resize = 32;
    options.cached_features = cached;
    options.verbose = false;
    absl::StatusOr<LinearEvalResult> result = RunLinearEval(*backbone, train, val, options);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_TRUE(result->frozen_weights_unchanged);
    EXPECT_EQ(result->mode, cached ? "cached-features" : "augmented");
    EXPECT_GE(result->best_top1, result->top1);
    EXPECT_GE(result->top5, result->top1);
    EXPECT_DOUBLE_EQ(result->top5, 100.0);  // 3 classes: top-5 always hits
    EXPECT_FALSE(backbone->is_training());
    EXPECT_EQ(result->ToJson()["epochs"], 3);
  }
  LinearEvalOptions bad;
  bad.epochs = 0;
  EXPECT_FALSE(RunLinearEval(*backbone, train, val, bad).ok());
}

// Momentum^2 Teacher's classifier BN normalizes over the 32 images each GPU sees: with
// groups the training differs from whole-batch statistics, with one group per batch it
// is the same run, and a batch that does not split is refused in one sentence.
TEST_F(LinearEvalTest, ClassifierBatchNormOverGroupsOfSamples) {
  backbones::BackboneOptions backbone_options;
  backbone_options.cifar_stem = true;
  auto backbone = *backbones::CreateBackbone("resnet18w0.125", backbone_options);
  const auto train = *data::ImageFolder::Open(*root_ + "/train");
  const auto val = *data::ImageFolder::Open(*root_ + "/val");
  const auto run = [&](int64_t samples, int64_t batch) {
    LinearEvalOptions options;
    options.epochs = 2;
    options.batch_size = batch;
    options.image_size = 32;
    options.resize = 32;
    options.cached_features = true;
    options.classifier_bn = true;
    options.classifier_bn_samples = samples;
    options.schedule = "cos_iter";
    options.verbose = false;
    return RunLinearEval(*backbone, train, val, options);
  };
  const absl::StatusOr<LinearEvalResult> whole = run(0, 24);
  const absl::StatusOr<LinearEvalResult> one_group = run(24, 24);
  const absl::StatusOr<LinearEvalResult> groups = run(8, 24);
  ASSERT_TRUE(whole.ok() && one_group.ok() && groups.ok()) << groups.status();
  EXPECT_GT(whole->train_loss, 0);
  EXPECT_DOUBLE_EQ(one_group->train_loss, whole->train_loss);  // 72 images: no batch dropped
  EXPECT_DOUBLE_EQ(one_group->top1, whole->top1);
  EXPECT_GT(std::abs(groups->train_loss - whole->train_loss), 1e-6);
  EXPECT_EQ(run(32, 24).status().message(),
            "the classifier's BatchNorm groups of 32 samples need a batch that is a multiple of "
            "it and at most the 72 training images, got 24");
  EXPECT_FALSE(run(7, 24).ok());
}

TEST_F(LinearEvalTest, FeaturesFollowTheFolderOrder) {
  backbones::BackboneOptions backbone_options;
  backbone_options.cifar_stem = true;
  auto backbone = *backbones::CreateBackbone("resnet18w0.125", backbone_options);
  const auto val = *data::ImageFolder::Open(*root_ + "/val");
  ExtractOptions options;
  options.batch_size = 5;  // ragged last batch kept
  absl::StatusOr<FeatureSet> set =
      ExtractFeatures(*backbone, val, data::EvalViews(32, 32), options);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->features.sizes(), (at::IntArrayRef{24, 64}));
  for (int i = 0; i < 24; ++i) EXPECT_EQ(set->labels[i].item<int64_t>(), val.samples()[i].label);
  EXPECT_TRUE(backbone->is_training());  // mode restored
  // The saved file is what Python's torch.load reads.
  const std::string path = data::testing::MakeTempDir("features") + "/val.pth";
  ASSERT_TRUE(SaveFeatures(*set, val.classes(), path).ok());
  if (system("/usr/bin/python3 -c 'import torch' 2>/dev/null") != 0) return;
  const std::string check =
      "/usr/bin/python3 -c \"import torch, sys; d = torch.load(sys.argv[1]); "
      "assert d['features'].shape == (24, 64), d['features'].shape; "
      "assert d['labels'].tolist()[:8] == [0] * 8; assert d['classes'][0] == '00_disk'\" ";
  EXPECT_EQ(system((check + path).c_str()), 0);
}

}  // namespace
}  // namespace ssl::eval
