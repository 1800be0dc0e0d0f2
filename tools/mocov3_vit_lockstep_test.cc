// Lockstep with moco-v3's own code for ViTs: 20 training steps of MoCo v3 (MoCo_ViT of
// builder.py around vits.py's VisionTransformerMoCo with --stop-grad-conv1, AdamW over
// all parameters, main_moco.py's per-iteration lr and momentum schedules), from the same
// weights on the same batches as tools/make_mocov3_vit_lockstep_reference.py ran them.
// Compares the loss of every step, and after the last step every parameter of the base
// encoder, the momentum encoder and the predictor and their BN running statistics.
//
// The step is the engine's (ssl/train/pretrain.cc) with main_moco's schedules
// (tools/moco_flags.cc): lr, BeforeStep (momentum and EMA), Loss, zero_grad, backward,
// optimizer step.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <memory>
#include <string>

#include "ssl/distributed/communicator.h"
#include "ssl/methods/mocov3.h"
#include "ssl/optim/optimizer.h"
#include "ssl/optim/schedules.h"
#include "tools/lockstep_testing.h"

namespace ssl::tools {
namespace {

constexpr int64_t kBatch = 8;
constexpr int64_t kSize = 32;
constexpr int64_t kItersPerEpoch = 5;
constexpr int kEpochs = 4;
constexpr double kWarmupEpochs = 1;
constexpr double kBaseLr = 0.05;
constexpr double kWeightDecay = 0.1;
constexpr size_t kSteps = kItersPerEpoch * kEpochs;
constexpr size_t kMinTensors = 330;  // 3 x 12 blocks x 12 tensors, heads, BN statistics

struct Variant {
  bool stop_grad_conv1 = true;
  double momentum = 0.99;
};

LockstepRun Train(const Variant& variant = {}) {
  methods::MocoV3Options options;
  options.arch = "vit_tiny_patch8";
  options.image_size = kSize;
  options.dim = 32;
  options.mlp_dim = 64;
  options.temperature = 0.2;
  options.momentum = variant.momentum;
  options.momentum_cosine = true;
  options.stop_grad_conv1 = variant.stop_grad_conv1;
  absl::StatusOr<std::shared_ptr<methods::MocoV3Impl>> created =
      methods::MocoV3Impl::Create(options, distributed::MakeLocalCommunicator());
  EXPECT_TRUE(created.ok()) << created.status();
  methods::MocoV3Impl& method = **created;
  method.to(at::kDouble);  // see the M2T reference script: float32 makes this chaotic
  {
    torch::NoGradGuard no_grad;
    for (const auto& item : method.named_parameters()) {
      const std::string& name = item.key();
      if (name.rfind("momentum_encoder.", 0) == 0) continue;
      if (name.size() >= 9 && name.compare(name.size() - 9, 9, "pos_embed") == 0) continue;
      item.value().copy_(LockstepInitialValue(name, item.value()));
    }
  }
  method.UpdateMomentumEncoder(0.0);  // the copy MoCo.__init__ makes
  method.train();

  optim::OptimizerOptions optimizer_options;
  optimizer_options.weight_decay = kWeightDecay;
  absl::StatusOr<std::unique_ptr<optim::Optimizer>> made =
      optim::MakeOptimizer("adamw", EngineParamGroups(method, kWeightDecay), optimizer_options);
  EXPECT_TRUE(made.ok()) << made.status();

  const double peak_lr = optim::ScaledLearningRate(kBaseLr, kBatch);
  LockstepRun run;
  for (int64_t s = 0; s < static_cast<int64_t>(kSteps); ++s) {
    methods::StepContext step;
    step.epoch = s / kItersPerEpoch;
    step.iteration = s % kItersPerEpoch;
    step.iterations_per_epoch = kItersPerEpoch;
    step.epochs = kEpochs;
    step.global_step = s;
    step.total_steps = kSteps;
    step.lr =
        optim::WarmupCosineLearningRate(peak_lr, kWarmupEpochs, kEpochs, step.FractionalEpoch());
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
  for (const auto& item : method.named_buffers()) run.tensors[item.key()] = item.value();
  return run;
}

TEST(MocoV3VitLockstep, MatchesTheOriginalFor20AdamWSteps) {
  ExpectLockstep(Train(), ReadLockstepReference("mocov3_vit_lockstep.txt"), kSteps, kMinTensors);
}

// The comparison can fail: a patch projection that trains, or a different momentum,
// leaves lockstep.
TEST(MocoV3VitLockstep, DepartsFromTheOriginalWhenTheMethodDiffers) {
  const LockstepReference reference = ReadLockstepReference("mocov3_vit_lockstep.txt");
  Variant trained_patches;
  trained_patches.stop_grad_conv1 = false;
  EXPECT_TRUE(LeavesLockstep(Train(trained_patches), reference, kSteps, kMinTensors));
  Variant other_momentum;
  other_momentum.momentum = 0.9;
  EXPECT_TRUE(LeavesLockstep(Train(other_momentum), reference, kSteps, kMinTensors));
}

}  // namespace
}  // namespace ssl::tools
