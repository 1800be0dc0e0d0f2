#include "eval/finetune.h"

#include <ATen/ops/arange.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/randn.h>
#include <gtest/gtest.h>

#include <cmath>

#include "eval/mixup.h"
#include "ssl/backbones/vit.h"
#include "ssl/core/constants.h"
#include "ssl/data/synthetic.h"
#include "ssl/data/test_util.h"
#include "ssl/train/checkpoint.h"

namespace ssl::eval {
namespace {

MixupOptions TenClasses() {
  MixupOptions options;
  options.num_classes = 10;
  return options;
}

TEST(MixupTest, SmoothedOneHotAndSoftTargetCrossEntropy) {
  const at::Tensor labels = at::tensor({3, 0}, at::kLong);
  const at::Tensor targets = SmoothedOneHot(labels, 10, 0.1);
  EXPECT_NEAR(targets[0][3].item<double>(), 0.91, 1e-6);  // 1 - 0.1 + 0.1 / 10
  EXPECT_NEAR(targets[0][4].item<double>(), 0.01, 1e-6);
  EXPECT_NEAR(targets.sum(1)[1].item<double>(), 1.0, 1e-6);
  // With hard one-hots it is the ordinary cross entropy.
  const at::Tensor logits = at::randn({2, 10});
  EXPECT_NEAR(SoftTargetCrossEntropy(logits, SmoothedOneHot(labels, 10, 0.0)).item<double>(),
              at::cross_entropy_loss(logits, labels).item<double>(), 1e-6);
}

// Mixup: x = lam x + (1 - lam) x.flip(0), targets mixed with the same lam.
TEST(MixupTest, MixupBlendsWithTheFlippedBatch) {
  MixupOptions options = TenClasses();
  options.cutmix_alpha = 0;  // Mixup only
  const at::Tensor original = at::randn({4, 3, 8, 8});
  const at::Tensor labels = at::tensor({1, 2, 3, 4}, at::kLong);
  at::Tensor images = original.clone();
  Rng rng(3);
  MixDraw draw;
  const at::Tensor targets = MixBatch(images, labels, options, rng, &draw);
  ASSERT_FALSE(draw.cutmix);
  const double lam = draw.lambda;
  ASSERT_GT(lam, 0);
  ASSERT_LT(lam, 1);
  EXPECT_TRUE(at::allclose(images, original * lam + original.flip(0) * (1 - lam), 1e-5, 1e-6));
  const at::Tensor smooth = SmoothedOneHot(labels, 10, 0.1);
  EXPECT_TRUE(at::allclose(targets, smooth * lam + smooth.flip(0) * (1 - lam)));
  EXPECT_NEAR(targets[0][1].item<double>(), 0.9 * lam + 0.01, 1e-6);
  EXPECT_NEAR(targets[0][4].item<double>(), 0.9 * (1 - lam) + 0.01, 1e-6);
}

// CutMix: the box holds the flipped batch, the rest is untouched, and lambda is the
// unpasted area's fraction.
TEST(MixupTest, CutMixPastesABoxAndCorrectsLambda) {
  MixupOptions options = TenClasses();
  options.mixup_alpha = 0;  // CutMix only
  const at::Tensor original = at::randn({2, 3, 20, 16});
  const at::Tensor labels = at::tensor({0, 5}, at::kLong);
  int boxes = 0;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    at::Tensor images = original.clone();
    Rng rng(seed);
    MixDraw draw;
    const at::Tensor targets = MixBatch(images, labels, options, rng, &draw);
    ASSERT_TRUE(draw.cutmix);
    const int64_t area = (draw.y1 - draw.y0) * (draw.x1 - draw.x0);
    EXPECT_NEAR(draw.lambda, 1.0 - area / 320.0, 1e-12);
    at::Tensor expected = original.clone();
    if (area > 0) {
      ++boxes;
      expected.narrow(2, draw.y0, draw.y1 - draw.y0)
          .narrow(3, draw.x0, draw.x1 - draw.x0)
          .copy_(original.flip(0)
                     .narrow(2, draw.y0, draw.y1 - draw.y0)
                     .narrow(3, draw.x0, draw.x1 - draw.x0));
    }
    EXPECT_TRUE(at::equal(images, expected)) << seed;
    EXPECT_NEAR(targets[0][0].item<double>(), 0.9 * draw.lambda + 0.01, 1e-6);
  }
  EXPECT_GT(boxes, 10);
}

TEST(MixupTest, SwitchProbabilityAndLambdaDistribution) {
  const MixupOptions options = TenClasses();  // mixup 0.8, cutmix 1.0, switch 0.5
  int cutmix = 0, mixups = 0;
  double mixup_lambda = 0;
  const at::Tensor labels = at::tensor({0, 1}, at::kLong);
  for (uint64_t seed = 0; seed < 4000; ++seed) {
    at::Tensor images = at::zeros({2, 1, 4, 4});
    Rng rng(seed);
    MixDraw draw;
    MixBatch(images, labels, options, rng, &draw);
    if (draw.cutmix) {
      ++cutmix;
    } else {
      ++mixups;
      mixup_lambda += draw.lambda;
    }
  }
  EXPECT_NEAR(cutmix / 4000.0, 0.5, 0.03);
  EXPECT_NEAR(mixup_lambda / mixups, 0.5, 0.02);  // Beta(0.8, 0.8) has mean 1/2
}

TEST(FinetuneScheduleTest, WarmupThenTimmsCosine) {
  FinetuneOptions options;
  options.epochs = 100;
  options.warmup_epochs = 5;
  const double peak = 1e-3;
  EXPECT_DOUBLE_EQ(FinetuneLearningRate(options, peak, 0), 1e-6);
  EXPECT_NEAR(FinetuneLearningRate(options, peak, 2), 1e-6 + 2 * (peak - 1e-6) / 5, 1e-15);
  EXPECT_NEAR(FinetuneLearningRate(options, peak, 5),
              1e-5 + 0.5 * (peak - 1e-5) * (1 + std::cos(kPi * 5 / 100)), 1e-15);
  EXPECT_NEAR(FinetuneLearningRate(options, peak, 50), 1e-5 + 0.5 * (peak - 1e-5), 1e-15);
  // DeiT's loop steps the scheduler after each epoch with that epoch's index: epochs 0
  // and 1 train at warmup_lr, epoch e >= 1 at the schedule's value for e - 1.
  EXPECT_DOUBLE_EQ(FinetuneEpochLearningRate(options, peak, 0), 1e-6);
  EXPECT_DOUBLE_EQ(FinetuneEpochLearningRate(options, peak, 1), 1e-6);
  EXPECT_DOUBLE_EQ(FinetuneEpochLearningRate(options, peak, 3),
                   FinetuneLearningRate(options, peak, 2));
  EXPECT_DOUBLE_EQ(FinetuneEpochLearningRate(options, peak, 99),
                   FinetuneLearningRate(options, peak, 98));
}

class FinetuneRunTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new std::string(data::testing::MakeTempDir("finetune_data"));
    data::SyntheticDatasetOptions options;
    options.num_classes = 3;
    options.train_per_class = 8;
    options.val_per_class = 2;
    options.image_size = 32;
    ASSERT_TRUE(data::WriteSyntheticImageFolder(options, *root_).ok());
  }
  static FinetuneOptions Tiny(const std::string& output_dir) {
    FinetuneOptions options;
    options.epochs = 2;
    options.warmup_epochs = 1;
    options.batch_size = 6;
    options.image_size = 16;
    options.model_ema = true;
    options.model_ema_decay = 0.9;
    options.output_dir = output_dir;
    options.workers = 2;
    options.seed = 5;
    options.verbose = false;
    return options;
  }
  static ModelFactory VitFactory() {
    return []() -> absl::StatusOr<std::shared_ptr<backbones::Backbone>> {
      backbones::BackboneOptions options;
      options.num_classes = 3;
      options.image_size = 16;
      options.drop_path_rate = 0.1;
      return backbones::CreateBackbone("vit_tiny_patch8", options);
    };
  }
  static std::string* root_;
};
std::string* FinetuneRunTest::root_ = nullptr;

// Everything random in a step (crops, RandAugment, erasing, Mixup/CutMix, drop path)
// follows from (seed, epoch, step), so 1 + 1 resumed epochs equal 2 straight ones.
TEST_F(FinetuneRunTest, KilledAfterAnEpochAndResumedEqualsAStraightRun) {
  auto train = data::ImageFolder::Open(*root_ + "/train");
  auto val = data::ImageFolder::Open(*root_ + "/val");
  ASSERT_TRUE(train.ok() && val.ok());
  const std::string straight = data::testing::MakeTempDir("ft_straight");
  const std::string split = data::testing::MakeTempDir("ft_split");
  auto full = RunFinetune(VitFactory(), *train, *val, Tiny(straight));
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->epochs_done, 2);
  FinetuneOptions first = Tiny(split);
  first.max_epochs_this_run = 1;
  ASSERT_TRUE(RunFinetune(VitFactory(), *train, *val, first).ok());
  FinetuneOptions second = Tiny(split);
  second.resume = true;
  auto resumed = RunFinetune(VitFactory(), *train, *val, second);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->epochs_done, 2);
  EXPECT_EQ(resumed->top1, full->top1);
  EXPECT_EQ(resumed->ema_top1, full->ema_top1);
  EXPECT_GE(full->ema_top1, 0);  // measured beside the model's own accuracy
  auto a = train::LoadIValue(straight + "/checkpoint.pth");
  auto b = train::LoadIValue(split + "/checkpoint.pth");
  ASSERT_TRUE(a.ok() && b.ok());
  for (const char* part : {"model", "model_ema"}) {
    const auto left = a->toGenericDict().at(part).toGenericDict();
    const auto right = b->toGenericDict().at(part).toGenericDict();
    ASSERT_EQ(left.size(), right.size());
    for (const auto& entry : left) {
      EXPECT_TRUE(at::equal(entry.value().toTensor(), right.at(entry.key()).toTensor()))
          << part << " " << entry.key().toStringRef();
    }
  }
  // DeiT's layout; AdamW groups as timm makes them: [no decay, decay 0.05].
  const auto dict = a->toGenericDict();
  EXPECT_EQ(dict.at("epoch").toInt(), 1);
  const auto groups = dict.at("optimizer").toGenericDict().at("param_groups").toList();
  ASSERT_EQ(groups.size(), 2u);
  const auto no_decay = groups.get(0).toGenericDict(), decay = groups.get(1).toGenericDict();
  EXPECT_EQ(no_decay.at("weight_decay").toDouble(), 0.0);
  EXPECT_EQ(decay.at("weight_decay").toDouble(), 0.05);
  // Decayed: per block qkv, proj, fc1, fc2 weights, plus patch_embed and head weights.
  EXPECT_EQ(decay.at("params").toList().size(), 12u * 4 + 2);
  // Not decayed: cls_token, patch/head biases, final norm, per block 2 norms x 2 + 4 biases.
  EXPECT_EQ(no_decay.at("params").toList().size(), 1u + 2 + 2 + 12 * 8);
}

// DeiT evaluates the model itself even when it keeps an EMA: with an EMA that never
// moves from the initial weights (decay 1), the reported accuracy is the same with and
// without it, and the EMA's own accuracy is reported apart.
TEST_F(FinetuneRunTest, EvaluatesTheModelNotItsEma) {
  auto train = data::ImageFolder::Open(*root_ + "/train");
  auto val = data::ImageFolder::Open(*root_ + "/val");
  ASSERT_TRUE(train.ok() && val.ok());
  FinetuneOptions with_ema = Tiny(data::testing::MakeTempDir("ft_with_ema"));
  with_ema.model_ema_decay = 1.0;
  FinetuneOptions without_ema = Tiny(data::testing::MakeTempDir("ft_without_ema"));
  without_ema.model_ema = false;
  auto a = RunFinetune(VitFactory(), *train, *val, with_ema);
  auto b = RunFinetune(VitFactory(), *train, *val, without_ema);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->top1, b->top1);
  EXPECT_EQ(a->top5, b->top5);
  EXPECT_GE(a->ema_top1, 0);
  EXPECT_EQ(b->ema_top1, -1);
}

TEST_F(FinetuneRunTest, BadOptionsAreOneSentence) {
  auto train = data::ImageFolder::Open(*root_ + "/train");
  ASSERT_TRUE(train.ok());
  FinetuneOptions options = Tiny(data::testing::MakeTempDir("ft_bad"));
  options.batch_size = 5;
  EXPECT_EQ(RunFinetune(VitFactory(), *train, *train, options).status().message(),
            "fine-tuning needs epochs >= 1 and an even batch >= 2 (Mixup pairs samples), got 2 "
            "and 5");
  options = Tiny(options.output_dir);
  options.rand_augment = "rand-m20";
  EXPECT_FALSE(RunFinetune(VitFactory(), *train, *train, options).ok());
  options = Tiny(options.output_dir);
  options.crop_scale_min = 0;
  EXPECT_EQ(RunFinetune(VitFactory(), *train, *train, options).status().message(),
            "crop scale minimum must be in (0, 1], got 0");
  options = Tiny(options.output_dir);
  options.batch_size = 1000;
  const std::string message(RunFinetune(VitFactory(), *train, *train, options).status().message());
  EXPECT_NE(message.find("1000"), std::string::npos) << message;
}

}  // namespace
}  // namespace ssl::eval
