#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <gtest/gtest.h>

#include <cmath>

#include "ssl/optim/optimizer.h"
#include "ssl/optim/schedules.h"

namespace ssl::optim {
namespace {

at::Tensor Param(std::vector<float> values, std::vector<int64_t> shape) {
  at::Tensor t = at::tensor(values).reshape(shape);
  t.set_requires_grad(true);
  return t;
}

void SetGrad(at::Tensor& p, std::vector<float> values) {
  p.mutable_grad() = at::tensor(values).reshape(p.sizes());
}

TEST(LarsTest, MatrixStepIsTrustScaledWithDecay) {
  // p = [[3, 4]] (norm 5), g = [[0.6, 0.8]], wd 0.1: d = [0.9, 1.2] (norm 1.5),
  // scaled by 0.001 * 5 / 1.5 = 1/300 -> [0.003, 0.004]; lr 10 -> p = [2.97, 3.96].
  at::Tensor w = Param({3, 4}, {1, 2});
  auto lars = MakeLars({w}, {.lr = 10, .weight_decay = 0.1});
  SetGrad(w, {0.6f, 0.8f});
  lars->Step();
  EXPECT_NEAR(w[0][0].item<double>(), 2.97, 1e-6);
  EXPECT_NEAR(w[0][1].item<double>(), 3.96, 1e-6);
  // Second step, by hand in double: mu = 0.9 mu + d'.
  const double p0 = 2.97, p1 = 3.96, g0 = 0.6, g1 = 0.8;
  const double d0 = g0 + 0.1 * p0, d1 = g1 + 0.1 * p1;
  const double q = 0.001 * std::hypot(p0, p1) / std::hypot(d0, d1);
  const double mu0 = 0.9 * 0.003 + q * d0, mu1 = 0.9 * 0.004 + q * d1;
  lars->Step();
  EXPECT_NEAR(w[0][0].item<double>(), p0 - 10 * mu0, 1e-5);
  EXPECT_NEAR(w[0][1].item<double>(), p1 - 10 * mu1, 1e-5);
}

TEST(LarsTest, VectorsGetNeitherDecayNorTrustAndZeroNormsAreSafe) {
  at::Tensor bias = Param({1, -2}, {2});
  at::Tensor zero = Param({0, 0, 0, 0}, {2, 2});
  at::Tensor frozen = Param({5}, {1});  // never gets a gradient
  auto lars = MakeLars({bias, zero, frozen}, {.lr = 10, .weight_decay = 0.1});
  SetGrad(bias, {0.5f, 0.5f});
  SetGrad(zero, {1, 1, 1, 1});
  lars->Step();
  EXPECT_FLOAT_EQ(bias[0].item<float>(), -4.0f);      // 1 - 10 * 0.5
  EXPECT_FLOAT_EQ(zero[0][0].item<float>(), -10.0f);  // ||p|| = 0: no scaling
  lars->Step();
  EXPECT_FLOAT_EQ(bias[0].item<float>(), -13.5f);  // mu = 0.95
  EXPECT_FLOAT_EQ(frozen[0].item<float>(), 5.0f);
  const c10::impl::GenericDict state =
      lars->StateDict().toGenericDict().at("state").toGenericDict();
  EXPECT_EQ(state.size(), 2u);  // no state for the parameter without gradient
  EXPECT_TRUE(state.contains(0));
  EXPECT_FALSE(state.contains(2));
}

TEST(SgdTest, MomentumAndWeightDecayAsTorch) {
  at::Tensor p = Param({1}, {1});
  auto sgd = MakeSgd({p}, {.lr = 0.1, .weight_decay = 0.5, .momentum = 0.9});
  SetGrad(p, {2});
  sgd->Step();
  EXPECT_NEAR(p.item<double>(), 0.75, 1e-6);  // buf = 2.5
  sgd->Step();
  EXPECT_NEAR(p.item<double>(), 0.2875, 1e-6);  // buf = 0.9 * 2.5 + 2.375
}

TEST(AdamWTest, FirstStepMovesByLrAfterDecoupledDecay) {
  at::Tensor p = Param({1}, {1});
  auto adamw = MakeAdamW({p}, {.lr = 0.1, .weight_decay = 0.01});
  SetGrad(p, {0.5});
  adamw->Step();
  // p = 1 * (1 - 0.001) - 0.1 * (0.05 / 0.1) / (sqrt(0.00025 / 0.001) + 1e-8)
  EXPECT_NEAR(p.item<double>(), 0.999 - 0.1 * 0.5 / (0.5 + 1e-8), 1e-6);
}

TEST(OptimizerStateTest, RoundTripContinuesIdentically) {
  for (auto make : {&MakeLars, &MakeSgd, &MakeAdamW}) {
    at::Tensor a = Param({1, 2, 3, 4}, {2, 2}), b = a.detach().clone().set_requires_grad(true);
    auto first = make({a}, {.lr = 0.5, .weight_decay = 0.01});
    SetGrad(a, {0.1f, -0.2f, 0.3f, 0.4f});
    first->Step();
    first->Step();
    // A fresh optimizer on a copy of the weights, loaded from the state dict.
    b.detach().copy_(a.detach());
    auto second = make({b}, {.lr = 99, .weight_decay = 99});
    ASSERT_TRUE(second->LoadStateDict(first->StateDict()).ok()) << first->name();
    EXPECT_DOUBLE_EQ(second->lr(), 0.5);
    SetGrad(b, {0.1f, -0.2f, 0.3f, 0.4f});
    first->Step();
    second->Step();
    EXPECT_TRUE(a.equal(b)) << first->name();
  }
  at::Tensor x = Param({1}, {1}), y = Param({1}, {1});
  auto one = MakeSgd({x}, {}), two = MakeSgd({x, y}, {});
  EXPECT_EQ(two->LoadStateDict(one->StateDict()).message(),
            "optimizer state covers 1 parameters, the model has 2");
}

TEST(OptimizerTest, ZeroGradClearsGradients) {
  at::Tensor p = Param({1}, {1});
  auto sgd = MakeSgd({p}, {.lr = 1});
  SetGrad(p, {1});
  sgd->ZeroGrad();
  EXPECT_FALSE(p.grad().defined());
}

TEST(SchedulesTest, ValuesAtLandmarks) {
  EXPECT_DOUBLE_EQ(ScaledLearningRate(0.6, 4096), 9.6);
  EXPECT_DOUBLE_EQ(WarmupCosineLearningRate(1.0, 10, 100, 0), 0.0);
  EXPECT_DOUBLE_EQ(WarmupCosineLearningRate(1.0, 10, 100, 5), 0.5);
  EXPECT_DOUBLE_EQ(WarmupCosineLearningRate(1.0, 10, 100, 10), 1.0);
  EXPECT_NEAR(WarmupCosineLearningRate(1.0, 10, 100, 55), 0.5, 1e-12);
  EXPECT_NEAR(WarmupCosineLearningRate(1.0, 10, 100, 100), 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(CosineMomentum(0.99, 100, 0), 0.99);
  EXPECT_NEAR(CosineMomentum(0.99, 100, 50), 0.995, 1e-12);
  EXPECT_NEAR(CosineMomentum(0.996, 1000, 1000), 1.0, 1e-12);
  EXPECT_NEAR(CosineLearningRate(0.4, 90, 45), 0.2, 1e-12);
}

}  // namespace
}  // namespace ssl::optim
