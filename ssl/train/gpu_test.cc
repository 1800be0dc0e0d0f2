// The engine on a CUDA GPU, against itself on the CPU: the fp32 step equals the CPU step
// within floating-point tolerance, fp16 and bf16 autocast keep the losses near fp32's
// (with the fp16 loss scaler saved and restored), a resumed run equals an uninterrupted
// one bitwise under deterministic algorithms, and split BN on one GPU matches the CPU.
// Every test skips without a GPU; tools/gpu/build_and_bench.sh runs them on the lent
// GPU machine (tagged manual in Bazel, which has no CUDA LibTorch here).
#include <ATen/Context.h>
#include <ATen/ops/allclose.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/randn_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ssl/core/device.h"
#include "ssl/data/synthetic.h"
#include "ssl/data/test_util.h"
#include "ssl/methods/mocov3.h"
#include "ssl/optim/optimizer.h"
#include "ssl/train/checkpointer.h"
#include "ssl/train/pretrain.h"

namespace ssl::train {
namespace {

class GpuEngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new std::string(data::testing::MakeTempDir("gpu_data"));
    data::SyntheticDatasetOptions options;
    options.num_classes = 2;
    options.train_per_class = 16;  // 32 images: 4 iterations of 8
    options.val_per_class = 1;
    options.image_size = 32;
    ASSERT_TRUE(data::WriteSyntheticImageFolder(options, *data_).ok());
  }
  void SetUp() override {
    if (!CudaAvailable()) GTEST_SKIP() << "no CUDA GPU";
    // fp32 means fp32: no TF32 in cuBLAS or cuDNN for the comparisons with the CPU.
    at::globalContext().setAllowTF32CuBLAS(false);
    at::globalContext().setAllowTF32CuDNN(false);
  }

  struct Run {
    std::vector<double> losses;
    TrainingSnapshot snapshot;
  };

  static Run Train(const std::string& name, c10::Device device, MixedPrecision amp, int epochs = 2,
                   int max_epochs_this_run = 0, const std::string& bn = "local",
                   const std::string& dir_in = "") {
    const std::string dir = dir_in.empty() ? data::testing::MakeTempDir(name) : dir_in;
    PretrainOptions options;
    options.data = *data_ + "/train";
    options.output_dir = dir;
    options.batch_size = 8;
    options.epochs = epochs;
    options.max_epochs_this_run = max_epochs_this_run;
    options.resume = "latest";
    options.learning_rate = [](const methods::StepContext&) { return 0.05; };
    options.optimizer = "lars";
    options.optimizer_options.weight_decay = 1e-6;
    options.print_freq = 1;
    options.workers = 2;
    options.bn = bn;
    options.split_bn_splits = 2;
    options.device = device;
    options.amp = amp;
    options.deterministic = true;
    PrepareDevice(device, /*deterministic=*/true);
    at::manual_seed(0);
    auto moco = *methods::MocoV3Impl::Create(methods::MocoV3Options{.arch = "resnet18w0.25",
                                                                    .cifar_stem = true,
                                                                    .dim = 16,
                                                                    .mlp_dim = 32,
                                                                    .image_size = 32},
                                             distributed::MakeLocalCommunicator());
    const absl::StatusOr<PretrainResult> result =
        RunPretraining(*moco, options, distributed::MakeLocalCommunicator());
    EXPECT_TRUE(result.ok()) << result.status();
    Run run;
    std::ifstream metrics(dir + "/metrics.jsonl");
    for (std::string line; std::getline(metrics, line);) {
      const nlohmann::json record = nlohmann::json::parse(line);
      if (record["type"] == "iteration") run.losses.push_back(record["loss"].get<double>());
    }
    absl::StatusOr<std::string> latest = Checkpointer(dir, MocoV3Layout()).Latest();
    EXPECT_TRUE(latest.ok());
    absl::StatusOr<TrainingSnapshot> snapshot = ReadSnapshot(*latest);
    EXPECT_TRUE(snapshot.ok()) << snapshot.status();
    if (snapshot.ok()) run.snapshot = *std::move(snapshot);
    return run;
  }

  static const c10::Device kCuda;
  static const c10::Device kCpu;
  static std::string* data_;
};
const c10::Device GpuEngineTest::kCuda(c10::kCUDA, 0);
const c10::Device GpuEngineTest::kCpu(c10::kCPU);
std::string* GpuEngineTest::data_ = nullptr;

double MaxAbsDifference(const TrainingSnapshot& a, const TrainingSnapshot& b) {
  double worst = 0;
  for (const auto& item : a.model) {
    const at::Tensor x = item.value().toTensor();
    const at::Tensor y = b.model.at(item.key()).toTensor();
    if (!x.is_floating_point()) continue;
    worst = std::max(worst, (x.to(at::kDouble) - y.to(at::kDouble)).abs().max().item<double>());
  }
  return worst;
}

bool BitwiseEqual(const TrainingSnapshot& a, const TrainingSnapshot& b) {
  for (const auto& item : a.model) {
    if (!item.value().toTensor().equal(b.model.at(item.key()).toTensor())) return false;
  }
  return true;
}

// LARS, LARC and Momentum^2 Teacher's LARS keep their trust ratios on the GPU; the steps
// must equal the CPU's scalar arithmetic, zero-norm and excluded groups included.
TEST_F(GpuEngineTest, TrustRatioOptimizersOnTheDeviceEqualTheCpu) {
  for (const std::string name : {"lars", "larc", "m2t_lars", "sgd", "adamw"}) {
    auto make = [&](c10::Device device) {
      at::manual_seed(3);
      std::vector<at::Tensor> params = {at::randn({8, 4}), at::randn({8}), at::zeros({3, 3})};
      for (at::Tensor& p : params) p = p.to(device).requires_grad_();
      std::vector<optim::ParamGroup> groups = {{{params[0], params[2]}, 1e-4, false},
                                               {{params[1]}, 0.0, true}};
      optim::OptimizerOptions hyper;
      hyper.lr = 0.3;
      hyper.momentum = 0.9;
      hyper.clip = name == "larc";
      return std::make_pair(params, *optim::MakeOptimizer(name, groups, hyper));
    };
    auto [cpu_params, cpu_optimizer] = make(kCpu);
    auto [gpu_params, gpu_optimizer] = make(kCuda);
    for (int step = 0; step < 3; ++step) {
      at::manual_seed(10 + step);
      for (size_t i = 0; i < cpu_params.size(); ++i) {
        const at::Tensor grad = i == 2 ? at::zeros_like(cpu_params[i]) : at::randn_like(cpu_params[i]);
        cpu_params[i].mutable_grad() = grad;
        gpu_params[i].mutable_grad() = grad.to(kCuda);
      }
      cpu_optimizer->Step();
      gpu_optimizer->Step();
    }
    for (size_t i = 0; i < cpu_params.size(); ++i) {
      EXPECT_TRUE(at::allclose(gpu_params[i].cpu(), cpu_params[i], 1e-5, 1e-6))
          << name << " parameter " << i;
    }
  }
}

TEST_F(GpuEngineTest, Fp32StepEqualsTheCpuStep) {
  const Run cpu = Train("gpu_vs_cpu_cpu", kCpu, MixedPrecision::kOff);
  const Run gpu = Train("gpu_vs_cpu_gpu", kCuda, MixedPrecision::kOff);
  ASSERT_EQ(cpu.losses.size(), 8u);
  ASSERT_EQ(gpu.losses.size(), cpu.losses.size());
  for (size_t i = 0; i < cpu.losses.size(); ++i) {
    EXPECT_NEAR(gpu.losses[i], cpu.losses[i], 1e-4 * std::abs(cpu.losses[i])) << i;
  }
  EXPECT_LT(MaxAbsDifference(gpu.snapshot, cpu.snapshot), 1e-3);
}

TEST_F(GpuEngineTest, Fp16AndBf16LossesStayNearFp32AndTheScalerIsSaved) {
  const Run fp32 = Train("gpu_amp_fp32", kCuda, MixedPrecision::kOff);
  const Run fp16 = Train("gpu_amp_fp16", kCuda, MixedPrecision::kFloat16);
  const Run bf16 = Train("gpu_amp_bf16", kCuda, MixedPrecision::kBFloat16);
  ASSERT_EQ(fp16.losses.size(), fp32.losses.size());
  ASSERT_EQ(bf16.losses.size(), fp32.losses.size());
  for (size_t i = 0; i < fp32.losses.size(); ++i) {
    EXPECT_NEAR(fp16.losses[i], fp32.losses[i], 0.01 * std::abs(fp32.losses[i])) << i;
    EXPECT_NEAR(bf16.losses[i], fp32.losses[i], 0.03 * std::abs(fp32.losses[i])) << i;
  }
  // GradScaler's state: 8 steps below the growth interval, so the scale is 2^16 halved
  // once per overflow, and the tracker counts the clean steps since the last one.
  ASSERT_EQ(fp16.snapshot.scaler.size(), 5u);
  const double scale = fp16.snapshot.scaler.at("scale").toDouble();
  const int64_t clean = fp16.snapshot.scaler.at("_growth_tracker").toInt();
  EXPECT_GT(scale, 0);
  EXPECT_LE(scale, 65536.0);
  EXPECT_EQ(std::log2(scale), std::round(std::log2(scale)));
  EXPECT_LE(clean, 8);
  EXPECT_EQ(scale == 65536.0, clean == 8);
  EXPECT_EQ(bf16.snapshot.scaler.size(), 0u);
  EXPECT_EQ(fp32.snapshot.model.at("base_encoder.conv1.weight").toTensor().scalar_type(),
            at::kFloat);
  EXPECT_EQ(fp16.snapshot.model.at("base_encoder.conv1.weight").toTensor().scalar_type(),
            at::kFloat);
}

TEST_F(GpuEngineTest, ResumeIsBitwiseWithDeterministicAlgorithms) {
  for (MixedPrecision amp : {MixedPrecision::kOff, MixedPrecision::kFloat16}) {
    const Run straight = Train("gpu_resume_straight_" + AmpName(amp), kCuda, amp);
    const std::string dir = data::testing::MakeTempDir("gpu_resume_chunked_" + AmpName(amp));
    Train("", kCuda, amp, 2, /*max_epochs_this_run=*/1, "local", dir);
    const Run resumed = Train("", kCuda, amp, 2, 0, "local", dir);
    EXPECT_TRUE(BitwiseEqual(straight.snapshot, resumed.snapshot)) << AmpName(amp);
    if (amp == MixedPrecision::kFloat16) {
      EXPECT_EQ(resumed.snapshot.scaler.at("_growth_tracker").toInt(),
                straight.snapshot.scaler.at("_growth_tracker").toInt());
    }
  }
}

TEST_F(GpuEngineTest, SplitBatchNormOnOneGpuMatchesTheCpu) {
  const Run cpu = Train("gpu_split_cpu", kCpu, MixedPrecision::kOff, 1, 0, "split");
  const Run gpu = Train("gpu_split_gpu", kCuda, MixedPrecision::kOff, 1, 0, "split");
  ASSERT_EQ(gpu.losses.size(), cpu.losses.size());
  for (size_t i = 0; i < cpu.losses.size(); ++i) {
    EXPECT_NEAR(gpu.losses[i], cpu.losses[i], 1e-4 * std::abs(cpu.losses[i])) << i;
  }
  EXPECT_LT(MaxAbsDifference(gpu.snapshot, cpu.snapshot), 1e-3);
}

}  // namespace
}  // namespace ssl::train
