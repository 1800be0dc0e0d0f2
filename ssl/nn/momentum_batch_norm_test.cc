// Momentum BN (a mode of ssl::nn::BatchNorm): against Momentum^2 Teacher's own module
// (golden values from tools/make_momentum_bn_golden.py) and against independent
// computations of its normalization, two-view running update, eval mode and the double
// unbiasing quirk, in 1-d and 2-d.
#include <ATen/ops/arange.h>
#include <ATen/ops/batch_norm.h>
#include <ATen/ops/cos.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/sin.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/var_mean.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "ssl/core/constants.h"
#include "ssl/nn/batch_norm.h"

namespace ssl::nn {
namespace {

// The golden script's input formula.
at::Tensor Fill(const std::vector<int64_t>& shape, int phase) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  const at::Tensor i = at::arange(numel, at::kDouble);
  return (at::sin(0.37 * i + phase) * 2.0 + 0.3 * at::cos(1.7 * i)).reshape(shape).to(at::kFloat);
}

std::map<std::string, std::vector<double>> ReadGolden(const std::string& name) {
  std::ifstream in(std::string(std::getenv("TEST_SRCDIR")) + "/" + std::getenv("TEST_WORKSPACE") +
                   "/ssl/nn/testdata/momentum_bn_" + name + ".txt");
  std::map<std::string, std::vector<double>> golden;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string key;
    fields >> key;
    for (double v; fields >> v;) golden[key].push_back(v);
  }
  return golden;
}

BatchNorm Make(int spatial_dims, int64_t channels,
               const std::shared_ptr<MomentumBatchNormSchedule>& schedule) {
  BatchNorm bn = spatial_dims == 2 ? BatchNorm2d(channels) : BatchNorm1d(channels);
  ConfigureBatchNorm(*bn, MomentumBatchNormSetting(schedule));
  torch::NoGradGuard no_grad;
  bn->weight.copy_(1.0 + 0.1 * at::arange(channels, at::kFloat));
  bn->bias.copy_(0.05 * at::arange(channels, at::kFloat) - 0.1);
  bn->running_mean.copy_(0.2 * at::arange(channels, at::kFloat));
  bn->running_var.copy_(1.0 + 0.3 * at::arange(channels, at::kFloat));
  return bn;
}

void ExpectClose(const at::Tensor& actual, const std::vector<double>& expected,
                 const std::string& what) {
  const at::Tensor flat = actual.flatten().to(at::kDouble);
  ASSERT_EQ(flat.size(0), static_cast<int64_t>(expected.size())) << what;
  for (size_t i = 0; i < expected.size(); ++i) {
    ASSERT_NEAR(flat[i].item<double>(), expected[i], 2e-5 * (1 + std::abs(expected[i])))
        << what << " [" << i << "]";
  }
}

class MomentumBnGoldenTest : public ::testing::TestWithParam<int> {};

TEST_P(MomentumBnGoldenTest, MatchesTheOriginalModuleOverTwoSteps) {
  const int spatial = GetParam();
  const std::vector<int64_t> shape =
      spatial == 2 ? std::vector<int64_t>{4, 3, 2, 3} : std::vector<int64_t>{6, 5};
  const auto golden = ReadGolden(spatial == 2 ? "2d" : "1d");
  ASSERT_FALSE(golden.empty());
  auto schedule = std::make_shared<MomentumBatchNormSchedule>();
  BatchNorm bn = Make(spatial, shape[1], schedule);
  bn->train();
  for (int step = 0; step < 2; ++step) {
    // The method's schedule: m_bn = (cos(pi t / T) + 1) / 2 with T = 4 (total_iters).
    schedule->m_bn = (std::cos(kPi * step / 4) + 1) / 2;
    for (int view : {2, 1}) {
      const std::string key = "step" + std::to_string(step) + "_view" + std::to_string(view);
      ExpectClose(bn->forward(Fill(shape, 10 * step + view)), golden.at(key + "_out"), key);
    }
    const std::string prefix = "step" + std::to_string(step);
    ExpectClose(bn->running_mean, golden.at(prefix + "_running_mean"), prefix + " running mean");
    ExpectClose(bn->running_var, golden.at(prefix + "_running_var"), prefix + " running var");
    EXPECT_NEAR((std::cos(kPi * (step + 1) / 4) + 1) / 2, golden.at(prefix + "_momentum_after")[0],
                1e-12);
  }
}

INSTANTIATE_TEST_SUITE_P(OneAndTwoD, MomentumBnGoldenTest, ::testing::Values(1, 2));

// Normalization by m * batch + (1 - m) * running statistics, written out.
at::Tensor Reference(const at::Tensor& x, const at::Tensor& running_mean,
                     const at::Tensor& running_var, const at::Tensor& weight,
                     const at::Tensor& bias, double m, bool double_unbias) {
  auto [var, mean] = at::var_mean(x, {0, 2, 3}, /*unbiased=*/false);
  const double n = static_cast<double>(x.numel() / x.size(1));
  // Biased variance -> unbiased -> the quirk's second factor.
  const at::Tensor batch_var = double_unbias ? var * (n / (n - 1)) * (n / (n - 1)) : var;
  const at::Tensor stat_mean = m * mean + (1 - m) * running_mean;
  const at::Tensor stat_var = m * batch_var + (1 - m) * running_var;
  return (x - stat_mean.view({1, -1, 1, 1})) / (stat_var.view({1, -1, 1, 1}) + 1e-5).sqrt() *
             weight.view({1, -1, 1, 1}) +
         bias.view({1, -1, 1, 1});
}

TEST(MomentumBnTest, NormalizationAtMbnOneZeroAndBetweenWithAndWithoutTheQuirk) {
  at::manual_seed(0);
  for (bool quirk : {true, false}) {
    for (double m : {1.0, 0.0, 0.3}) {
      auto schedule = std::make_shared<MomentumBatchNormSchedule>();
      schedule->m_bn = m;
      schedule->double_unbias = quirk;
      BatchNorm bn = Make(2, 3, schedule);
      bn->train();
      const at::Tensor x = at::randn({5, 3, 4, 4}) * 2 + 1;
      const at::Tensor expected = Reference(x, bn->running_mean.clone(), bn->running_var.clone(),
                                            bn->weight.detach(), bn->bias.detach(), m, quirk);
      EXPECT_TRUE(bn->forward(x).allclose(expected, 1e-4, 1e-5)) << "m " << m << " quirk " << quirk;
    }
  }
  // m_bn = 0 is plain BN in eval mode on the running statistics.
  auto schedule = std::make_shared<MomentumBatchNormSchedule>();
  schedule->m_bn = 0;
  BatchNorm bn = Make(2, 3, schedule);
  bn->train();
  const at::Tensor x = at::randn({5, 3, 4, 4});
  const at::Tensor plain = at::batch_norm(x, bn->weight.detach(), bn->bias.detach(),
                                          bn->running_mean.clone(), bn->running_var.clone(),
                                          /*training=*/false, 0.1, 1e-5, false);
  EXPECT_TRUE(bn->forward(x).allclose(plain, 1e-5, 1e-6));
}

TEST(MomentumBnTest, TheSecondViewUpdatesTheRunningStatisticsWithTheMeanOfBoth) {
  for (bool quirk : {true, false}) {
    auto schedule = std::make_shared<MomentumBatchNormSchedule>();
    schedule->m_bn = 0.6;
    schedule->double_unbias = quirk;
    BatchNorm bn = Make(1, 4, schedule);
    bn->train();
    const at::Tensor mean0 = bn->running_mean.clone(), var0 = bn->running_var.clone();
    const at::Tensor a = at::randn({8, 4}), b = at::randn({8, 4}) * 3;
    bn->forward(a);
    EXPECT_TRUE(bn->running_mean.equal(mean0));  // held, not applied
    bn->forward(b);
    auto [var_a, mean_a] = at::var_mean(a, {0}, /*unbiased=*/true);
    auto [var_b, mean_b] = at::var_mean(b, {0}, /*unbiased=*/true);
    const double factor = quirk ? 8.0 / 7.0 : 1.0;
    EXPECT_TRUE(bn->running_mean.allclose(0.6 * (mean_a + mean_b) / 2 + 0.4 * mean0, 1e-5, 1e-6));
    EXPECT_TRUE(
        bn->running_var.allclose(0.6 * (var_a + var_b) / 2 * factor + 0.4 * var0, 1e-5, 1e-6));
    // A third call starts the next pair.
    const at::Tensor after = bn->running_mean.clone();
    bn->forward(a);
    EXPECT_TRUE(bn->running_mean.equal(after));
  }
}

TEST(MomentumBnTest, EvalModeIsPlainBatchNormAndUpdatesNothing) {
  auto schedule = std::make_shared<MomentumBatchNormSchedule>();
  schedule->m_bn = 0.7;
  BatchNorm bn = Make(2, 3, schedule);
  bn->eval();
  const at::Tensor x = at::randn({2, 3, 4, 4});
  const at::Tensor mean0 = bn->running_mean.clone();
  const at::Tensor plain = at::batch_norm(x, bn->weight.detach(), bn->bias.detach(),
                                          bn->running_mean.clone(), bn->running_var.clone(),
                                          /*training=*/false, 0.1, 1e-5, false);
  EXPECT_TRUE(bn->forward(x).allclose(plain, 1e-6, 1e-6));
  bn->forward(x);
  EXPECT_TRUE(bn->running_mean.equal(mean0));
  EXPECT_FALSE(bn->pending_mean.defined());
}

TEST(MomentumBnTest, TheEnginesBatchNormChoiceLeavesMomentumBnAlone) {
  auto schedule = std::make_shared<MomentumBatchNormSchedule>();
  BatchNorm momentum = Make(2, 3, schedule);
  EXPECT_EQ(ConfigureBatchNorm(*momentum, BatchNormSetting()), 0);
  EXPECT_EQ(momentum->setting.mode, BatchNormMode::kMomentum);
  BatchNorm plain = BatchNorm2d(3);
  EXPECT_EQ(ConfigureBatchNorm(*plain, MomentumBatchNormSetting(schedule)), 1);
  // State dict keys are plain BN's, so a teacher loads into a plain-BN backbone.
  std::vector<std::string> keys;
  for (const auto& item : momentum->named_buffers()) keys.push_back(item.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"running_mean", "running_var", "num_batches_tracked"}));
}

}  // namespace
}  // namespace ssl::nn
