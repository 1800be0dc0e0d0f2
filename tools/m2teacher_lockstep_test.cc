// Lockstep with Momentum^2 Teacher's own code: 20 training steps of the method, its
// description's optimizer (SGD, or the B 4096 recipe's LARS_SGD with its parameter
// groups) and its warmcos schedule, from the same weights on the same batches as
// tools/make_m2teacher_lockstep_reference.py ran them through the original's
// m2_teacher.py, resnet_mbn.py, optimizer.py and tools/train.py loop. Compares the loss
// of every step, and after the last step every student and teacher parameter and the
// teacher's Momentum BN running statistics.
//
// The step is the engine's (ssl/train/pretrain.cc): lr from the schedule, BeforeStep
// (teacher EMA and Momentum BN weight), Loss, zero_grad, backward, optimizer step.
#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "ssl/methods/m2teacher.h"
#include "ssl/optim/optimizer.h"
#include "tools/m2teacher_recipes.h"

namespace ssl::tools {
namespace {

constexpr int64_t kBatch = 8;
constexpr int64_t kSize = 64;
constexpr int64_t kItersPerEpoch = 5;
constexpr int kEpochs = 4;
// Relative tolerances (float64 on both sides; the reference holds 10 significant digits,
// and the two sides differed by at most 5e-10 when this was written): the loss, a
// tensor's sum and sum of |x| (relative to its sum of |x|), a sampled element (relative
// to the tensor's mean |x|).
constexpr double kLossTolerance = 1e-7;
constexpr double kSumTolerance = 1e-7;
constexpr double kElementTolerance = 1e-6;

struct Reference {
  std::vector<double> losses;
  // name -> {count, sum, sum of |x|, x[0], x[n/3], x[2n/3], x[n-1]}
  std::map<std::string, std::vector<double>> tensors;
};

Reference ReadReference(const std::string& scenario) {
  std::ifstream in(std::string(std::getenv("TEST_SRCDIR")) + "/" + std::getenv("TEST_WORKSPACE") +
                   "/tools/testdata/m2teacher_lockstep_" + scenario + ".txt");
  Reference reference;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string key;
    fields >> key;
    std::vector<double> values;
    for (double v; fields >> v;) values.push_back(v);
    if (key == "losses") {
      reference.losses = values;
    } else {
      reference.tensors[key] = values;
    }
  }
  return reference;
}

// The reference script's integer hash: u(j, seed) in [0, 1), exact in both languages.
at::Tensor Uniform(int64_t count, int64_t seed) {
  constexpr uint64_t kMask = 0xFFFFFFFFULL;
  std::vector<double> values(count);
  for (int64_t j = 0; j < count; ++j) {
    uint64_t h = (static_cast<uint64_t>(j) * 2654435761ULL + static_cast<uint64_t>(seed) * 40503ULL +
                  12345ULL) &
                 kMask;
    h ^= h >> 15;
    h = (h * 0x2C1B3C6DULL) & kMask;
    h ^= h >> 12;
    h = (h * 0x297A2D39ULL) & kMask;
    h ^= h >> 15;
    values[j] = static_cast<double>(h) / 4294967296.0;
  }
  return at::tensor(values, at::kDouble);
}

at::Tensor InitialValue(const std::string& name, const at::Tensor& param) {
  int64_t seed = 0;
  for (unsigned char c : name) seed += c;
  const at::Tensor wave = Uniform(param.numel(), seed) * 2.0 - 1.0;
  at::Tensor value;
  if (param.dim() > 1) {
    const int64_t fan_in = param.numel() / param.size(0);
    value = wave * std::sqrt(6.0 / fan_in);
  } else if (name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0) {
    value = wave * 0.1 + 1.0;
  } else {
    value = wave * 0.05;
  }
  return value.reshape(param.sizes());
}

at::Tensor Batch(int64_t step, int view) {
  return (Uniform(kBatch * 3 * kSize * kSize, 100000 + 10 * step + view) * 4.0 - 2.0)
      .reshape({kBatch, 3, kSize, kSize});
}

// The largest |actual - expected| / tolerance seen, printed at the end of a comparison.
double worst_ratio = 0;
std::string worst_what;

// |actual - expected| <= tolerance, with a message naming what differs.
void ExpectNear(double actual, double expected, double tolerance, const std::string& what) {
  const double ratio = std::abs(actual - expected) / tolerance;
  if (ratio > worst_ratio) {
    worst_ratio = ratio;
    worst_what = what;
  }
  EXPECT_LE(std::abs(actual - expected), tolerance)
      << what << ": " << actual << " here, " << expected << " in the original";
}

struct TrainedRun {
  std::vector<double> losses;
  std::map<std::string, at::Tensor> tensors;
};

// The scenario's description overrides: the parity recipe made small (MLPs 512-64-32,
// 64 px, 4 epochs of 5 iterations, 1 warmup epoch), with the reference's optimizer.
TrainedRun Train(const std::string& scenario, const std::string& extra_overrides = "",
          bool double_unbias = true) {
  absl::StatusOr<M2TeacherRecipe> recipe =
      FindM2TeacherRecipe("cpu/momentum2_teacher_resnet18_64px");
  EXPECT_TRUE(recipe.ok());
  const std::string optimizer =
      scenario == "sgd" ? "optimizer=sgd,basic_lr_per_img=0.0125,weight_decay=1e-4"
                        : "optimizer=m2t_lars,basic_lr_per_img=0.25,weight_decay=1e-6";
  EXPECT_TRUE(ApplyM2TeacherOverrides("hidden_dim=64,low_dim=32,image_size=64,max_epoch=4,"
                                      "warmup_epochs=1,param_momentum=0.99," +
                                          optimizer + extra_overrides,
                                      &*recipe)
                  .ok());

  // The method as m2teacher_train builds it from the description.
  methods::M2TeacherOptions options = M2TeacherMethodOptions(*recipe);
  options.double_unbias = double_unbias;
  absl::StatusOr<std::shared_ptr<methods::M2TeacherImpl>> created =
      methods::M2TeacherImpl::Create(options);
  EXPECT_TRUE(created.ok()) << created.status();
  methods::M2TeacherImpl& method = **created;
  method.to(at::kDouble);  // see the reference script: float32 makes this run chaotic
  {
    torch::NoGradGuard no_grad;
    for (const auto& item : method.student_encoder->named_parameters()) {
      item.value().copy_(InitialValue(item.key(), item.value()));
    }
  }
  method.UpdateTeacher(0.0);  // the original's momentum_update(m=0)
  method.train();

  // The optimizer as the engine builds it from the method's groups.
  std::vector<optim::ParamGroup> groups;
  for (methods::ParameterGroup& group : method.ParameterGroups()) {
    groups.push_back(optim::ParamGroup{std::move(group.parameters),
                                       group.no_weight_decay ? 0.0 : recipe->weight_decay,
                                       group.no_trust_ratio});
  }
  optim::OptimizerOptions optimizer_options;
  optimizer_options.weight_decay = recipe->weight_decay;
  optimizer_options.momentum = 0.9;
  optimizer_options.trust_coefficient = 0.001;
  absl::StatusOr<std::unique_ptr<optim::Optimizer>> made =
      optim::MakeOptimizer(recipe->optimizer, std::move(groups), optimizer_options);
  EXPECT_TRUE(made.ok()) << made.status();

  TrainedRun run;
  for (int64_t s = 0; s < kItersPerEpoch * kEpochs; ++s) {
    methods::StepContext step;
    step.epoch = s / kItersPerEpoch;
    step.iteration = s % kItersPerEpoch;
    step.iterations_per_epoch = kItersPerEpoch;
    step.epochs = kEpochs;
    step.global_step = s;
    step.total_steps = kItersPerEpoch * kEpochs;
    step.lr = M2TeacherLearningRate(*recipe, "warmcos", kBatch, s, kItersPerEpoch, kEpochs);
    (*made)->set_lr(step.lr);
    method.BeforeStep(step);
    const at::Tensor loss = method.Loss({Batch(s, 1), Batch(s, 2)}, step);
    (*made)->ZeroGrad();
    loss.backward();
    (*made)->Step();
    run.losses.push_back(loss.item<double>());
  }
  for (const auto& item : method.named_parameters()) run.tensors[item.key()] = item.value();
  for (const auto& item : method.teacher_encoder->named_buffers()) {
    run.tensors["teacher_encoder." + item.key()] = item.value();
  }
  return run;
}

// Every step's loss, then every tensor's summary, within the tolerances above.
void ExpectLockstep(const TrainedRun& run, const Reference& reference) {
  ASSERT_EQ(reference.losses.size(), 20u) << "reference file missing or truncated";
  worst_ratio = 0;
  ASSERT_EQ(run.losses.size(), reference.losses.size());
  std::ostringstream both;  // every step's pair, printed once when any differs
  both.precision(9);
  bool losses_agree = true;
  for (size_t s = 0; s < run.losses.size(); ++s) {
    both << "\n  step " << s + 1 << ": " << run.losses[s] << " here, " << reference.losses[s]
         << " in the original";
    const double tolerance = kLossTolerance * std::max(1.0, reference.losses[s]);
    const double ratio = std::abs(run.losses[s] - reference.losses[s]) / tolerance;
    losses_agree &= ratio <= 1;
    if (ratio > worst_ratio) {
      worst_ratio = ratio;
      worst_what = "loss at step " + std::to_string(s + 1);
    }
  }
  EXPECT_TRUE(losses_agree) << "the losses leave lockstep:" << both.str();
  ASSERT_GE(reference.tensors.size(), 180u);
  for (const auto& [name, expected] : reference.tensors) {
    auto found = run.tensors.find(name);
    ASSERT_NE(found, run.tensors.end()) << name << " is missing here";
    const at::Tensor flat = found->second.detach().to(at::kDouble).flatten();
    const int64_t n = flat.numel();
    ASSERT_EQ(n, static_cast<int64_t>(expected[0])) << name;
    const double abs_sum = expected[2];
    const double mean_abs = abs_sum / n;
    ExpectNear(flat.sum().item<double>(), expected[1], kSumTolerance * abs_sum + 1e-12,
               name + " sum");
    ExpectNear(flat.abs().sum().item<double>(), abs_sum, kSumTolerance * abs_sum + 1e-12,
               name + " sum |x|");
    const int64_t picks[] = {0, n / 3, 2 * n / 3, n - 1};
    for (int k = 0; k < 4; ++k) {
      ExpectNear(flat[picks[k]].item<double>(), expected[3 + k],
                 kElementTolerance * mean_abs + 1e-12,
                 name + " element " + std::to_string(picks[k]));
    }
  }
  std::cout << "largest deviation: " << worst_ratio << " of its tolerance (" << worst_what
            << ")\n";
}

TEST(M2TeacherLockstep, SgdDescriptionMatchesTheOriginalFor20Steps) {
  ExpectLockstep(Train("sgd"), ReadReference("sgd"));
}

TEST(M2TeacherLockstep, LarsDescriptionMatchesTheOriginalFor20Steps) {
  ExpectLockstep(Train("lars"), ReadReference("lars"));
}

// The comparison can fail: the same run with Momentum BN's variance unbiased once
// instead of the original's twice, or a different teacher momentum, leaves lockstep.
TEST(M2TeacherLockstep, DepartsFromTheOriginalWhenTheMethodDiffers) {
  const Reference reference = ReadReference("sgd");
  for (const TrainedRun& run : {Train("sgd", "", /*double_unbias=*/false),
                         Train("sgd", ",param_momentum=0.9")}) {
    ::testing::TestPartResultArray failures;
    {
      ::testing::ScopedFakeTestPartResultReporter reporter(
          ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &failures);
      ExpectLockstep(run, reference);
    }
    EXPECT_GT(failures.size(), 0) << "a different method passed the lockstep comparison";
  }
}

}  // namespace
}  // namespace ssl::tools
