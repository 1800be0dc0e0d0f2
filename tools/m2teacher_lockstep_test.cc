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
#include <gtest/gtest.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <memory>
#include <string>

#include "ssl/methods/m2teacher.h"
#include "ssl/optim/optimizer.h"
#include "tools/lockstep_testing.h"
#include "tools/m2teacher_recipes.h"

namespace ssl::tools {
namespace {

constexpr int64_t kBatch = 8;
constexpr int64_t kSize = 64;
constexpr int64_t kItersPerEpoch = 5;
constexpr int kEpochs = 4;
constexpr size_t kSteps = kItersPerEpoch * kEpochs;
constexpr size_t kMinTensors = 180;  // student, teacher and Momentum BN statistics

// The scenario's description overrides: the parity recipe made small (MLPs 512-64-32,
// 64 px, 4 epochs of 5 iterations, 1 warmup epoch), with the reference's optimizer.
LockstepRun Train(const std::string& scenario, const std::string& extra_overrides = "",
                  bool double_unbias = true) {
  absl::StatusOr<M2TeacherRecipe> recipe =
      FindM2TeacherRecipe("cpu/momentum2_teacher_resnet18_64px");
  EXPECT_TRUE(recipe.ok());
  const std::string optimizer = scenario == "sgd"
                                    ? "optimizer=sgd,basic_lr_per_img=0.0125,weight_decay=1e-4"
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
      item.value().copy_(LockstepInitialValue(item.key(), item.value()));
    }
  }
  method.UpdateTeacher(0.0);  // the original's momentum_update(m=0)
  method.train();

  // The optimizer as the engine builds it from the method's groups.
  optim::OptimizerOptions optimizer_options;
  optimizer_options.weight_decay = recipe->weight_decay;
  optimizer_options.momentum = 0.9;
  optimizer_options.trust_coefficient = 0.001;
  absl::StatusOr<std::unique_ptr<optim::Optimizer>> made = optim::MakeOptimizer(
      recipe->optimizer, EngineParamGroups(method, recipe->weight_decay), optimizer_options);
  EXPECT_TRUE(made.ok()) << made.status();

  LockstepRun run;
  for (int64_t s = 0; s < static_cast<int64_t>(kSteps); ++s) {
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
    const at::Tensor loss =
        method.Loss({LockstepBatch(s, 1, kBatch, kSize), LockstepBatch(s, 2, kBatch, kSize)}, step);
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

TEST(M2TeacherLockstep, SgdDescriptionMatchesTheOriginalFor20Steps) {
  ExpectLockstep(Train("sgd"), ReadLockstepReference("m2teacher_lockstep_sgd.txt"), kSteps,
                 kMinTensors);
}

TEST(M2TeacherLockstep, LarsDescriptionMatchesTheOriginalFor20Steps) {
  ExpectLockstep(Train("lars"), ReadLockstepReference("m2teacher_lockstep_lars.txt"), kSteps,
                 kMinTensors);
}

// The comparison can fail: the same run with Momentum BN's variance unbiased once
// instead of the original's twice, or a different teacher momentum, leaves lockstep.
TEST(M2TeacherLockstep, DepartsFromTheOriginalWhenTheMethodDiffers) {
  const LockstepReference reference = ReadLockstepReference("m2teacher_lockstep_sgd.txt");
  EXPECT_TRUE(
      LeavesLockstep(Train("sgd", "", /*double_unbias=*/false), reference, kSteps, kMinTensors));
  EXPECT_TRUE(LeavesLockstep(Train("sgd", ",param_momentum=0.9"), reference, kSteps, kMinTensors));
}

}  // namespace
}  // namespace ssl::tools
