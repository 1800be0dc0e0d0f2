#include <ATen/Context.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/full.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <utility>

#include "ssl/core/constants.h"
#include "ssl/optim/grad_scaler.h"
#include "ssl/optim/optimizer.h"
#include "ssl/optim/param_scheduler.h"
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

// The multi-tensor (_foreach) group updates of LARS, SGD and AdamW give, bit for bit,
// what the per-tensor arithmetic below (each optimizer's documented rule, one parameter
// at a time) gives: over three steps, with matrices, vectors, a 4-d kernel, a parameter
// without gradient, a zero matrix and a group without decay or trust ratio.
TEST(OptimizerTest, GroupUpdatesEqualThePerTensorArithmetic) {
  const OptimizerOptions options{.lr = 0.3, .weight_decay = 0.05, .momentum = 0.9};
  auto make_params = [] {
    at::manual_seed(7);
    std::vector<at::Tensor> params = {at::randn({3, 4}), at::randn({4}), at::randn({2, 1, 3, 3}),
                                      at::randn({5}), at::zeros({2, 2}), at::randn({6, 2})};
    for (at::Tensor& p : params) p.set_requires_grad(true);
    return params;
  };
  auto grads_at = [](int step, const std::vector<at::Tensor>& params) {
    at::manual_seed(100 + step);
    std::vector<at::Tensor> grads;
    for (const at::Tensor& p : params) grads.push_back(at::randn(p.sizes()));
    return grads;
  };
  using Reference = std::function<void(at::Tensor&, const at::Tensor&, double, int,
                                       std::map<std::string, at::Tensor>&)>;
  const Reference lars = [&](at::Tensor& p, const at::Tensor& g, double wd, int group,
                             std::map<std::string, at::Tensor>& state) {
    at::Tensor update = g;
    if (p.dim() > 1 && group == 0) {
      update = g.add(p, wd);
      const double pn = p.norm().item<double>(), un = update.norm().item<double>();
      const double ratio = pn > 0 && un > 0 ? options.trust_coefficient * pn / un : 1.0;
      update = update.mul(at::scalar_tensor(ratio, at::kDouble).to(at::kFloat));
    }
    at::Tensor& mu = state["mu"];
    if (!mu.defined()) mu = at::zeros_like(p);
    mu.mul_(options.momentum).add_(update);
    p.add_(mu, -options.lr);
  };
  const Reference sgd = [&](at::Tensor& p, const at::Tensor& g, double wd, int,
                            std::map<std::string, at::Tensor>& state) {
    at::Tensor update = wd != 0 ? g.add(p, wd) : g;
    at::Tensor& buffer = state["momentum_buffer"];
    buffer = buffer.defined() ? buffer.mul_(options.momentum).add_(update) : update.clone();
    p.add_(buffer, -options.lr);
  };
  const Reference adamw = [&](at::Tensor& p, const at::Tensor& g, double wd, int,
                              std::map<std::string, at::Tensor>& state) {
    if (!state["exp_avg"].defined()) {
      state["exp_avg"] = at::zeros_like(p);
      state["exp_avg_sq"] = at::zeros_like(p);
    }
    at::Tensor& count = state["t"];
    count = count.defined() ? count.add(1) : at::ones({});
    const double t = count.item<double>();
    p.mul_(1 - options.lr * wd);
    state["exp_avg"].mul_(options.beta1).add_(g, 1 - options.beta1);
    state["exp_avg_sq"].mul_(options.beta2).addcmul_(g, g, 1 - options.beta2);
    const at::Tensor denom = state["exp_avg_sq"]
                                 .sqrt()
                                 .div_(std::sqrt(1 - std::pow(options.beta2, t)))
                                 .add_(options.eps);
    p.addcdiv_(state["exp_avg"], denom, -options.lr / (1 - std::pow(options.beta1, t)));
  };
  using MakeFromGroups =
      std::unique_ptr<Optimizer> (*)(std::vector<ParamGroup>, OptimizerOptions);
  const std::vector<std::pair<MakeFromGroups, Reference>> cases = {
      {&MakeLars, lars}, {&MakeSgd, sgd}, {&MakeAdamW, adamw}};
  for (const auto& [make, reference] : cases) {
    std::vector<at::Tensor> ours = make_params(), theirs = make_params();
    // Group 0: decay and trust ratio; group 1 (the last two): neither.
    auto optimizer = make({ParamGroup{{ours[0], ours[1], ours[2], ours[3]}, 0.05, false},
                           ParamGroup{{ours[4], ours[5]}, 0.0, true}},
                          options);
    std::vector<std::map<std::string, at::Tensor>> states(ours.size());
    for (int step = 0; step < 3; ++step) {
      const std::vector<at::Tensor> grads = grads_at(step, ours);
      for (size_t i = 0; i < ours.size(); ++i) {
        if (i == 3) continue;  // never gets a gradient
        ours[i].mutable_grad() = grads[i];
        at::NoGradGuard no_grad;
        reference(theirs[i], grads[i], i < 4 ? 0.05 : 0.0, i < 4 ? 0 : 1, states[i]);
      }
      optimizer->Step();
      for (size_t i = 0; i < ours.size(); ++i) {
        EXPECT_TRUE(ours[i].equal(theirs[i])) << optimizer->name() << " step " << step
                                              << " parameter " << i;
      }
    }
  }
}

using MakeFromParams = std::unique_ptr<Optimizer> (*)(std::vector<at::Tensor>, OptimizerOptions);

TEST(OptimizerStateTest, RoundTripContinuesIdentically) {
  for (MakeFromParams make :
       {MakeFromParams(&MakeLars), MakeFromParams(&MakeSgd), MakeFromParams(&MakeAdamW)}) {
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
            "optimizer param group 0 covers 1 parameters, the model has 2");
}

TEST(OptimizerStateTest, GroupsKeepTheirWeightDecayAndPyTorchIndices) {
  at::Tensor a = Param({1, 2}, {2}), b = Param({3}, {1}), c = Param({4, 5, 6, 7}, {2, 2});
  auto sgd = MakeSgd({ParamGroup{{a, b}, 0.5, false}, ParamGroup{{c}, 0.0, true}},
                     {.lr = 0.1, .momentum = 0.9});
  ASSERT_EQ(sgd->num_groups(), 2);
  SetGrad(a, {0, 0});
  SetGrad(c, {0, 0, 0, 0});
  sgd->Step();
  EXPECT_NEAR(a[1].item<double>(), 2 - 0.1 * 0.5 * 2, 1e-6);  // decay only in group 0
  EXPECT_FLOAT_EQ(c[0][0].item<float>(), 4.0f);
  const c10::impl::GenericDict dict = sgd->StateDict().toGenericDict();
  const c10::impl::GenericList groups = dict.at("param_groups").toList();
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups.get(0).toGenericDict().at("weight_decay").toDouble(), 0.5);
  EXPECT_EQ(groups.get(1).toGenericDict().at("params").toIntList().get(0), 2);  // a=0, b=1, c=2
  auto one_group = MakeSgd({ParamGroup{{a, b, c}, 0.5, false}}, {});
  EXPECT_EQ(one_group->LoadStateDict(sgd->StateDict()).message(),
            "optimizer state has 2 param groups, expected 1");
}

// p = [[3, 4]] (norm 5), g = [[0.8, -0.6]] (norm 1, orthogonal to p), wd 0.1: the three
// trust-ratio optimizers differ in where the decay enters the ratio and the lr the
// momentum.
TEST(LarcTest, AdaptiveLrOverGradNormPlusDecayThenSgdMomentum) {
  at::Tensor w = Param({3, 4}, {1, 2});
  auto larc = MakeLarc({ParamGroup{{w}, 0.1, false}}, {.lr = 10, .momentum = 0.9});
  SetGrad(w, {0.8f, -0.6f});
  larc->Step();
  // adaptive = 0.001 * 5 / (1 + 0.1 * 5 + 1e-8); d = g + 0.1 p = [1.1, -0.2].
  const double adaptive = 0.001 * 5 / (1.5 + 1e-8);
  const double p0 = 3 - 10 * 1.1 * adaptive, p1 = 4 + 10 * 0.2 * adaptive;
  EXPECT_NEAR(w[0][0].item<double>(), p0, 1e-6);
  EXPECT_NEAR(w[0][1].item<double>(), p1, 1e-6);
  larc->Step();
  const double n = std::hypot(p0, p1);
  const double a2 = 0.001 * n / (1 + 0.1 * n + 1e-8);
  const double b0 = 0.9 * 1.1 * adaptive + (0.8 + 0.1 * p0) * a2;
  const double b1 = 0.9 * -0.2 * adaptive + (-0.6 + 0.1 * p1) * a2;
  EXPECT_NEAR(w[0][0].item<double>(), p0 - 10 * b0, 1e-5);
  EXPECT_NEAR(w[0][1].item<double>(), p1 - 10 * b1, 1e-5);
  EXPECT_TRUE(
      larc->StateDict().toGenericDict().at("state").toGenericDict().at(0).toGenericDict().contains(
          "momentum_buffer"));
}

TEST(LarcTest, ClipCapsTheAdaptiveLrAtTheLrAndZeroNormsStepWithoutDecay) {
  at::Tensor w = Param({3, 4}, {1, 2});
  auto clipped = MakeLarc({ParamGroup{{w}, 0.1, false}}, {.lr = 10, .clip = true});
  SetGrad(w, {0.8f, -0.6f});
  clipped->Step();
  const double adaptive = std::min(0.001 * 5 / (1.5 + 1e-8) / 10, 1.0);
  EXPECT_NEAR(w[0][0].item<double>(), 3 - 10 * 1.1 * adaptive, 1e-7);
  at::Tensor zero = Param({0, 0}, {2});
  auto larc = MakeLarc({ParamGroup{{zero}, 0.1, false}}, {.lr = 10});
  SetGrad(zero, {1, 2});
  larc->Step();
  EXPECT_FLOAT_EQ(zero[1].item<float>(), -20.0f);  // raw gradient, no decay, no scaling
}

TEST(M2TeacherLarsTest, LocalLrInsideTheMomentumAndExcludedGroupsKeepDecay) {
  at::Tensor w = Param({3, 4}, {1, 2});
  at::Tensor bias = Param({2}, {1});
  auto lars = MakeM2TeacherLars({ParamGroup{{w}, 0.1, false}, ParamGroup{{bias}, 0.1, true}},
                                {.lr = 10, .momentum = 0.9});
  SetGrad(w, {0.8f, -0.6f});
  SetGrad(bias, {1});
  lars->Step();
  const double local_lr = 10 * 0.001 * 5 / (1 + 0.1 * 5);  // 1/30
  EXPECT_NEAR(w[0][0].item<double>(), 3 - local_lr * 1.1, 1e-6);
  EXPECT_NEAR(w[0][1].item<double>(), 4 + local_lr * 0.2, 1e-6);
  EXPECT_NEAR(bias[0].item<double>(), 2 - 10 * (1 + 0.1 * 2), 1e-5);  // plain lr, with decay
  const c10::impl::GenericList groups =
      lars->StateDict().toGenericDict().at("param_groups").toList();
  EXPECT_TRUE(groups.get(1).toGenericDict().at("lars_exclude").toBool());
}

TEST(OptimizerTest, ByNameAndUnknownNames) {
  at::Tensor p = Param({1}, {1});
  for (const char* name : {"lars", "larc", "m2t_lars", "sgd", "adamw"}) {
    auto made = MakeOptimizer(name, {ParamGroup{{p}, 0, false}}, {});
    ASSERT_TRUE(made.ok()) << name;
    EXPECT_EQ((*made)->name(), name);
  }
  EXPECT_EQ(MakeOptimizer("adam", {}, {}).status().message(),
            "optimizer must be lars, larc, m2t_lars, sgd or adamw, got \"adam\"");
}

TEST(OptimizerTest, ZeroGradClearsGradients) {
  at::Tensor p = Param({1}, {1});
  auto sgd = MakeSgd({p}, {.lr = 1});
  SetGrad(p, {1});
  sgd->ZeroGrad();
  EXPECT_FALSE(p.grad().defined());
}

// GradScaler against torch.cuda.amp.GradScaler's rules, worked by hand: scale 2^16,
// unscale by the reciprocal, skip on inf/NaN with backoff 0.5, growth x2 after
// growth_interval clean steps, and its state_dict keys and values.
TEST(GradScalerTest, ScalesUnscalesSkipsBacksOffAndGrows) {
  GradScalerOptions options;
  options.init_scale = 1024;
  options.growth_interval = 3;
  GradScaler scaler(options);
  at::Tensor w = at::full({2}, 1.0).requires_grad_();
  const at::Tensor loss = w.mul(at::tensor({3.0f, 5.0f})).sum();
  const at::Tensor scaled = scaler.Scale(loss);
  EXPECT_FLOAT_EQ(scaled.item<float>(), 8 * 1024);
  scaled.backward();
  EXPECT_FLOAT_EQ(w.grad()[0].item<float>(), 3 * 1024);
  scaler.Unscale({w});
  EXPECT_TRUE(w.grad().equal(at::tensor({3.0f, 5.0f})));
  EXPECT_FALSE(scaler.FoundInf());
  scaler.Update();
  EXPECT_EQ(scaler.scale(), 1024);
  EXPECT_EQ(scaler.StateDict().toGenericDict().at("_growth_tracker").toInt(), 1);

  // An overflow: found, the step is to be skipped, the scale halves, the count resets.
  w.mutable_grad() = at::tensor({INFINITY, 1.0f});
  scaler.Unscale({w});
  EXPECT_TRUE(scaler.FoundInf());
  scaler.Update();
  EXPECT_EQ(scaler.scale(), 512);
  EXPECT_EQ(scaler.StateDict().toGenericDict().at("_growth_tracker").toInt(), 0);
  w.mutable_grad() = at::tensor({NAN, 1.0f});
  scaler.Unscale({w});
  EXPECT_TRUE(scaler.FoundInf());
  scaler.Update();
  EXPECT_EQ(scaler.scale(), 256);

  // Three clean steps: x2 on the third.
  for (int i = 0; i < 3; ++i) {
    w.mutable_grad() = at::tensor({256.0f, 512.0f});
    scaler.Unscale({w});
    EXPECT_FALSE(scaler.FoundInf());
    EXPECT_TRUE(w.grad().equal(at::tensor({1.0f, 2.0f})));
    scaler.Update();
    EXPECT_EQ(scaler.scale(), i < 2 ? 256 : 512) << i;
  }

  // PyTorch's state_dict, and a round trip into a fresh scaler.
  const c10::impl::GenericDict state = scaler.StateDict().toGenericDict();
  EXPECT_EQ(state.size(), 5u);
  EXPECT_EQ(state.at("scale").toDouble(), 512);
  EXPECT_EQ(state.at("growth_factor").toDouble(), 2.0);
  EXPECT_EQ(state.at("backoff_factor").toDouble(), 0.5);
  EXPECT_EQ(state.at("growth_interval").toInt(), 3);
  EXPECT_EQ(state.at("_growth_tracker").toInt(), 0);
  GradScaler restored;
  ASSERT_TRUE(restored.LoadStateDict(state).ok());
  EXPECT_EQ(restored.scale(), 512);
  EXPECT_FLOAT_EQ(restored.Scale(at::full({}, 2.0)).item<float>(), 1024);
  EXPECT_EQ(restored.StateDict().toGenericDict().at("growth_interval").toInt(), 3);
}

TEST(GradScalerTest, DisabledPassesThroughAndBadStatesAreRefused) {
  GradScalerOptions options;
  options.enabled = false;
  GradScaler off(options);
  const at::Tensor loss = at::full({}, 3.0);
  EXPECT_TRUE(off.Scale(loss).is_same(loss));
  EXPECT_FALSE(off.FoundInf());
  EXPECT_EQ(off.StateDict().toGenericDict().size(), 0u);

  GradScaler scaler;
  // A checkpoint of a run without fp16 has an empty scaler: the initial scale stays.
  EXPECT_TRUE(
      scaler.LoadStateDict(c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get()))
          .ok());
  EXPECT_EQ(scaler.scale(), 65536);
  c10::impl::GenericDict bad(c10::StringType::get(), c10::AnyType::get());
  bad.insert("scale", 1.0);
  EXPECT_EQ(scaler.LoadStateDict(bad).message(), "the scaler state lacks \"growth_factor\"");
  EXPECT_EQ(scaler.LoadStateDict(c10::IValue(int64_t{3})).message(),
            "the scaler state is not a dict");
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

ScheduleSpec VisslWarmupCosine(const std::string& cosine_scaling) {
  ScheduleSpec linear{.name = "linear", .start_value = 0.6, .end_value = 4.8};
  ScheduleSpec cosine{.name = "cosine", .start_value = 4.8, .end_value = 0.0048};
  ScheduleSpec composite{.name = "composite"};
  composite.schedulers = {linear, cosine};
  composite.lengths = {0.1, 0.9};
  composite.interval_scaling = {"rescaled", cosine_scaling};
  return composite;
}

TEST(ParamSchedulerTest, VisslCompositeAtItsKnots) {
  const ScheduleSpec fixed = VisslWarmupCosine("fixed");
  ASSERT_TRUE(ValidateSchedule(fixed).ok());
  EXPECT_DOUBLE_EQ(ScheduleValue(fixed, 0.0, 100), 0.6);
  EXPECT_NEAR(ScheduleValue(fixed, 0.05, 100), 2.7, 1e-12);  // halfway through the warmup
  // At the knot the cosine takes over and, "fixed", sees the global where: it does not
  // restart at 4.8 (VISSL's swav configs behave this way).
  const double at_knot = 0.0048 + 0.5 * (4.8 - 0.0048) * (1 + std::cos(kPi * 0.1));
  EXPECT_NEAR(ScheduleValue(fixed, 0.1, 100), at_knot, 1e-12);
  EXPECT_NEAR(ScheduleValue(fixed, 1.0, 100), 0.0048, 1e-12);
  const ScheduleSpec rescaled = VisslWarmupCosine("rescaled");
  EXPECT_NEAR(ScheduleValue(rescaled, 0.1, 100), 4.8, 1e-12);
  EXPECT_NEAR(ScheduleValue(rescaled, 0.55, 100), (4.8 + 0.0048) / 2, 1e-12);
  // Per step over 10 epochs of 100 steps: step 50 is where 0.05.
  EXPECT_NEAR(ScheduleValueAt(fixed, 50, 100, 10), 2.7, 1e-12);
  ScheduleSpec per_epoch = fixed;
  per_epoch.update_interval = "epoch";
  EXPECT_DOUBLE_EQ(ScheduleValueAt(per_epoch, 99, 100, 10), 0.6);  // still epoch 0
}

TEST(ParamSchedulerTest, MultistepAndErrors) {
  ScheduleSpec steps{.name = "multistep", .values = {0.1, 0.01, 0.001}, .milestones = {30, 60}};
  ASSERT_TRUE(ValidateSchedule(steps).ok());
  EXPECT_DOUBLE_EQ(ScheduleValue(steps, 0.29, 100), 0.1);
  EXPECT_DOUBLE_EQ(ScheduleValue(steps, 0.30, 100), 0.01);
  EXPECT_DOUBLE_EQ(ScheduleValue(steps, 0.99, 100), 0.001);
  ScheduleSpec bad = VisslWarmupCosine("fixed");
  bad.lengths = {0.1, 0.5};
  EXPECT_EQ(ValidateSchedule(bad).message(), "composite schedule lengths must sum to 1, got 0.6");
  bad = VisslWarmupCosine("stretched");
  EXPECT_EQ(ValidateSchedule(bad).message(),
            "composite interval_scaling must be rescaled or fixed, got \"stretched\"");
  EXPECT_EQ(ValidateSchedule(ScheduleSpec{.name = "poly"}).message(),
            "unknown schedule \"poly\"; known: constant, linear, cosine, multistep, composite");
}

}  // namespace
}  // namespace ssl::optim
