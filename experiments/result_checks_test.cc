#include "experiments/result_checks.h"

#include <gtest/gtest.h>

namespace ssl::experiments {
namespace {

TEST(ResultChecksTest, FindsPretrainedBaselineAndGainMetrics) {
  const nlohmann::json results = {
      {"pretrained", {{"knn_top1_k20", 61.5}, {"linear_mode", "augmented"}}},
      {"random_init", {{"knn_top1_k20", 20.0}}}};
  EXPECT_DOUBLE_EQ(*FindMetric(results, "knn_top1_k20"), 61.5);
  EXPECT_DOUBLE_EQ(*FindMetric(results, "random_init.knn_top1_k20"), 20.0);
  EXPECT_DOUBLE_EQ(*FindMetric(results, "gain.knn_top1_k20"), 41.5);
  EXPECT_FALSE(FindMetric(results, "linear_top1"));
  EXPECT_FALSE(FindMetric(results, "linear_mode"));  // not a number
  EXPECT_FALSE(FindMetric(results, "gain.linear_top1"));
}

TEST(ResultChecksTest, ParsesChecks) {
  const std::optional<Check> check = ParseCheck("gain.knn_top1_k20:30.5:4");
  ASSERT_TRUE(check);
  EXPECT_EQ(check->metric, "gain.knn_top1_k20");
  EXPECT_DOUBLE_EQ(check->reference, 30.5);
  EXPECT_DOUBLE_EQ(check->tolerance, 4);
  EXPECT_FALSE(check->at_least);
  EXPECT_TRUE(check->Passes(26.5));
  EXPECT_TRUE(check->Passes(34.5));
  EXPECT_FALSE(check->Passes(34.6));
  EXPECT_FALSE(ParseCheck("linear_top1:68.9"));
  EXPECT_FALSE(ParseCheck("linear_top1:x:1"));
  EXPECT_FALSE(ParseCheck("linear_top1:68.9:1x"));
}

TEST(ResultChecksTest, FloorsPassAtOrAboveTheirBound) {
  const std::optional<Check> floor = ParseCheck("pretrain.loss_below_ln_k:>=:0.5");
  ASSERT_TRUE(floor);
  EXPECT_EQ(floor->metric, "pretrain.loss_below_ln_k");
  EXPECT_TRUE(floor->at_least);
  EXPECT_TRUE(floor->Passes(0.5));
  EXPECT_TRUE(floor->Passes(3.0));
  EXPECT_FALSE(floor->Passes(0.49));
  EXPECT_FALSE(floor->Passes(-1));
  EXPECT_EQ(floor->Describe(), ">= 0.50");
  EXPECT_EQ(ParseCheck("a:1:0.25")->Describe(), "1.00 +- 0.25");
  EXPECT_FALSE(ParseCheck("a:>=:"));
  EXPECT_FALSE(ParseCheck("a:>:1"));
}

}  // namespace
}  // namespace ssl::experiments
