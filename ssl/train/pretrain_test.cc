// The engine's wiring, method-independently: a recording fake method checks what the
// loop hands it (step positions, learning rates, crop groups), what reaches the
// optimizer (frozen and decay-free groups), what the metrics and checkpoints record,
// exact resume of the method's extra state, and the stop on a non-finite loss.
#include "ssl/train/pretrain.h"

#include <ATen/Context.h>
#include <ATen/ops/allclose.h>
#include <ATen/ops/full.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/tensor.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>

#include "ssl/core/device.h"
#include "ssl/data/synthetic.h"
#include "ssl/data/test_util.h"
#include "ssl/distributed/process_group.h"
#include "ssl/methods/mocov3.h"
#include "ssl/optim/grad_scaler.h"
#include "ssl/train/checkpoint.h"
#include "ssl/train/checkpointer.h"
#include "ssl/train/pretrained.h"

namespace ssl::train {
namespace {
namespace fs = std::filesystem;
using methods::StepContext;

constexpr int64_t kFrozenIterations = 3;

class RecordingMethod : public methods::Method {
 public:
  RecordingMethod() {
    backbones::BackboneOptions options;
    options.cifar_stem = true;
    trunk_ = register_module("trunk", *backbones::CreateBackbone("resnet18w0.0625", options));
    frozen = register_parameter("frozen", at::ones({2}));
    undecayed = register_parameter("undecayed", at::ones({2}));
    decayed = register_parameter("decayed", at::ones({2}));
  }
  std::string name() const override { return "recording"; }
  data::ViewRecipe Views() const override {
    data::CropAugmentation big, small;
    big.size = 16;
    small.size = 8;
    return data::ViewRecipe{{data::CropGroup{1, big}, data::CropGroup{2, small}}};
  }
  void BeforeStep(const StepContext& step) override {
    steps.push_back(step);
    frozen_values.push_back(frozen.detach().clone());
  }
  at::Tensor Loss(const std::vector<at::Tensor>& groups, const StepContext& step) override {
    shapes.push_back({groups[0].sizes().vec(), groups[1].sizes().vec()});
    if (step.global_step == nan_at_step) return at::scalar_tensor(NAN);
    // Every parameter gets a gradient: the frozen one a real one, the others zero.
    return trunk_->Features(groups[0]).mean() + frozen.sum() + undecayed.sum() * 0 +
           decayed.sum() * 0;
  }
  std::vector<methods::ParameterGroup> ParameterGroups() override {
    methods::ParameterGroup trunk{"trunk", trunk_->parameters()};
    methods::ParameterGroup frozen_group{"frozen", {frozen}};
    frozen_group.frozen_iterations = kFrozenIterations;
    methods::ParameterGroup plain{"decayed", {decayed}};
    methods::ParameterGroup no_decay{"undecayed", {undecayed}};
    no_decay.no_weight_decay = true;
    return {trunk, frozen_group, plain, no_decay};
  }
  c10::impl::GenericDict ExtraState() override {
    c10::impl::GenericDict state = methods::NewStateDict();
    state.insert("steps_seen", static_cast<int64_t>(steps.size()) + steps_before);
    return state;
  }
  absl::Status LoadExtraState(const c10::impl::GenericDict& state) override {
    steps_before = state.at("steps_seen").toInt();
    return absl::OkStatus();
  }
  backbones::Backbone& EvalBackbone() override { return *trunk_; }
  std::vector<std::pair<std::string, methods::BackboneLocation>> Backbones() const override {
    return {{"trunk", {"resnet18w0.0625", true, "trunk.", {}}}};
  }
  std::vector<std::pair<std::string, double>> ScheduledValues() const override {
    return {{"scheduled", steps.empty() ? 0.0 : 0.5 * steps.back().global_step}};
  }
  std::vector<std::string> DumpDiagnostics(const std::string& dir) override {
    const std::string path = dir + "/recording_dump.txt";
    std::ofstream(path) << "dumped\n";
    return {path};
  }
  nlohmann::json Config() const override { return {{"image_size", 16}}; }

  std::vector<StepContext> steps;
  std::vector<at::Tensor> frozen_values;
  std::vector<std::vector<std::vector<int64_t>>> shapes;
  int64_t steps_before = 0;
  int64_t nan_at_step = -1;
  at::Tensor frozen, undecayed, decayed;

 private:
  std::shared_ptr<backbones::Backbone> trunk_;
};

double Schedule(const StepContext& step) { return 0.01 + 0.001 * step.global_step; }

class PretrainEngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new std::string(data::testing::MakeTempDir("engine_data"));
    data::SyntheticDatasetOptions options;
    options.num_classes = 2;
    options.train_per_class = 12;  // 24 images: 3 iterations of 8
    options.val_per_class = 1;
    options.image_size = 24;
    ASSERT_TRUE(data::WriteSyntheticImageFolder(options, *data_).ok());
  }

  static PretrainOptions Options(const std::string& output_dir) {
    PretrainOptions options;
    options.data = *data_ + "/train";
    options.output_dir = output_dir;
    options.batch_size = 8;
    options.epochs = 3;
    options.learning_rate = Schedule;
    options.optimizer = "sgd";
    options.optimizer_options.weight_decay = 0.5;
    options.optimizer_options.momentum = 0;
    options.print_freq = 1;
    options.workers = 1;
    options.bn = "local";
    return options;
  }

  static std::vector<nlohmann::json> Records(const std::string& dir, const std::string& type) {
    std::vector<nlohmann::json> records;
    std::ifstream file(dir + "/metrics.jsonl");
    for (std::string line; std::getline(file, line);) {
      const nlohmann::json record = nlohmann::json::parse(line);
      if (record["type"] == type) records.push_back(record);
    }
    return records;
  }

  static std::string* data_;
};
std::string* PretrainEngineTest::data_ = nullptr;

TEST_F(PretrainEngineTest, TheMethodReceivesEveryStepWithItsScheduledValues) {
  const std::string dir = data::testing::MakeTempDir("engine_wiring");
  at::manual_seed(0);
  auto holder = std::make_shared<RecordingMethod>();
  RecordingMethod& method = *holder;
  absl::StatusOr<PretrainResult> result =
      RunPretraining(method, Options(dir), distributed::MakeLocalCommunicator());
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(method.steps.size(), 9u);
  for (size_t i = 0; i < method.steps.size(); ++i) {
    const StepContext& step = method.steps[i];
    EXPECT_EQ(step.global_step, static_cast<int64_t>(i));
    EXPECT_EQ(step.epoch, static_cast<int64_t>(i / 3));
    EXPECT_EQ(step.iteration, static_cast<int64_t>(i % 3));
    EXPECT_EQ(step.iterations_per_epoch, 3);
    EXPECT_EQ(step.epochs, 3);
    EXPECT_EQ(step.total_steps, 9);
    EXPECT_DOUBLE_EQ(step.lr, Schedule(step));
    EXPECT_DOUBLE_EQ(step.FractionalEpoch(), i / 3.0);
    // Crop groups arrive crop-major, one tensor per group.
    EXPECT_EQ(method.shapes[i][0], (std::vector<int64_t>{8, 3, 16, 16}));
    EXPECT_EQ(method.shapes[i][1], (std::vector<int64_t>{16, 3, 8, 8}));
  }
  // metrics.jsonl: one record per iteration (print_freq 1) with the lr the optimizer
  // stepped with and the method's scheduled value, and one per epoch.
  const std::vector<nlohmann::json> iterations = Records(dir, "iteration");
  ASSERT_EQ(iterations.size(), 9u);
  for (int64_t i = 0; i < 9; ++i) {
    EXPECT_EQ(iterations[i]["global_step"], i);
    EXPECT_DOUBLE_EQ(iterations[i]["lr"].get<double>(), 0.01 + 0.001 * i);
    EXPECT_DOUBLE_EQ(iterations[i]["scheduled"].get<double>(), 0.5 * i);
  }
  const std::vector<nlohmann::json> epochs = Records(dir, "epoch");
  ASSERT_EQ(epochs.size(), 3u);
  // The loader's batch memory is allocated in the first epoch and reused after it.
  const int64_t allocations = epochs[0]["loader_batch_allocations"].get<int64_t>();
  EXPECT_GE(allocations, 1);
  EXPECT_LE(allocations, 4);  // prefetch 2 + 2
  EXPECT_EQ(epochs[2]["loader_batch_allocations"].get<int64_t>(), allocations);
  EXPECT_EQ(result->epochs_completed, 3);
}

TEST_F(PretrainEngineTest, ProfileTraceHoldsTheFirstEpochsOperators) {
  const std::string dir = data::testing::MakeTempDir("engine_profile");
  at::manual_seed(0);
  auto holder = std::make_shared<RecordingMethod>();
  PretrainOptions options = Options(dir);
  options.epochs = 2;
  options.profile_trace = dir + "/trace.json";
  ASSERT_TRUE(RunPretraining(*holder, options, distributed::MakeLocalCommunicator()).ok());
  // Epochs of 3 iterations are shorter than the profiled span: all three, once.
  std::ifstream file(options.profile_trace);
  ASSERT_TRUE(file.good());
  const nlohmann::json trace = nlohmann::json::parse(file);
  ASSERT_TRUE(trace.is_array());
  int steps = 0, operators = 0;
  for (const nlohmann::json& event : trace) {
    const std::string name = event.value("name", "");
    if (name.rfind("aten::", 0) == 0) ++operators;
    // RecordingMethod's loss starts with a full mean: one MeanBackward0 per step.
    if (name == "MeanBackward0") ++steps;
  }
  EXPECT_GT(operators, 0);
  EXPECT_EQ(steps, 3);

  options.output_dir = data::testing::MakeTempDir("engine_profile_bad");
  options.profile_trace = "/nonexistent-directory/trace.json";
  const absl::StatusOr<PretrainResult> refused =
      RunPretraining(*holder, options, distributed::MakeLocalCommunicator());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(std::string(refused.status().message()),
            "cannot write the profile trace /nonexistent-directory/trace.json");
}

TEST_F(PretrainEngineTest, FrozenParametersWaitAndDecayFollowsTheGroups) {
  const std::string dir = data::testing::MakeTempDir("engine_groups");
  at::manual_seed(0);
  auto holder = std::make_shared<RecordingMethod>();
  RecordingMethod& method = *holder;
  PretrainOptions options = Options(dir);
  options.epochs = 2;
  ASSERT_TRUE(RunPretraining(method, options, distributed::MakeLocalCommunicator()).ok());
  // Steps 0..2 saw the initial value before and after their updates; step 3 is the
  // first whose gradient reached the optimizer.
  for (int64_t i = 0; i <= kFrozenIterations; ++i) {
    EXPECT_TRUE(method.frozen_values[i].equal(at::ones({2}))) << "step " << i;
  }
  EXPECT_FALSE(method.frozen_values[kFrozenIterations + 1].equal(at::ones({2})));
  EXPECT_NEAR(method.frozen_values[kFrozenIterations + 1][0].item<double>(),
              1 - Schedule(method.steps[kFrozenIterations]) * (1 + 0.5), 1e-6);
  // Zero gradients: decay alone moves `decayed`; the decay-free group stays put.
  EXPECT_TRUE(method.undecayed.equal(at::ones({2})));
  double expected = 1;
  for (const StepContext& step : method.steps) expected *= 1 - step.lr * 0.5;
  EXPECT_NEAR(method.decayed[0].item<double>(), expected, 1e-6);
}

TEST_F(PretrainEngineTest, ResumeRestoresWeightsOptimizerAndExtraState) {
  const std::string dir = data::testing::MakeTempDir("engine_resume");
  PretrainOptions options = Options(dir);
  options.max_epochs_this_run = 2;
  at::manual_seed(0);
  auto first_holder = std::make_shared<RecordingMethod>();
  RecordingMethod& first = *first_holder;
  ASSERT_TRUE(RunPretraining(first, options, distributed::MakeLocalCommunicator()).ok());
  // The checkpoint records which method wrote it and where its backbone is.
  const std::string checkpoint = dir + "/checkpoint_0001.pth.tar";
  absl::StatusOr<CheckpointConfig> config = ReadCheckpointConfig(checkpoint);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->method, "recording");
  EXPECT_EQ(config->prefix, "trunk.");
  EXPECT_EQ(config->epoch, 2);
  ASSERT_TRUE(LoadPretrainedBackbone(checkpoint).ok());

  options.max_epochs_this_run = 0;
  options.resume = "latest";
  at::manual_seed(1);  // different initial weights: all must come from the checkpoint
  auto second_holder = std::make_shared<RecordingMethod>();
  RecordingMethod& second = *second_holder;
  absl::StatusOr<PretrainResult> resumed =
      RunPretraining(second, options, distributed::MakeLocalCommunicator());
  ASSERT_TRUE(resumed.ok());
  ASSERT_EQ(second.steps.size(), 3u);
  // Resuming the finished run again trains nothing and reports its last epoch's loss.
  auto third_holder = std::make_shared<RecordingMethod>();
  absl::StatusOr<PretrainResult> finished =
      RunPretraining(*third_holder, options, distributed::MakeLocalCommunicator());
  ASSERT_TRUE(finished.ok());
  EXPECT_TRUE(third_holder->steps.empty());
  EXPECT_EQ(finished->epochs_completed, 3);
  EXPECT_NE(resumed->final_loss, 0);
  EXPECT_DOUBLE_EQ(finished->final_loss, resumed->final_loss);
  EXPECT_EQ(second.steps.front().global_step, 6);
  EXPECT_EQ(second.steps_before, 6);  // the extra state came back
  EXPECT_TRUE(second.frozen_values.front().equal(first.frozen.detach()));

  // A checkpoint of another method is refused with one sentence.
  at::manual_seed(0);
  auto moco = *methods::MocoV3Impl::Create(
      methods::MocoV3Options{
          .arch = "resnet18w0.0625", .cifar_stem = true, .dim = 8, .mlp_dim = 8, .image_size = 16},
      distributed::MakeLocalCommunicator());
  options.resume = checkpoint;
  const absl::Status refused =
      RunPretraining(*moco, options, distributed::MakeLocalCommunicator()).status();
  EXPECT_EQ(refused.message(),
            "cannot resume mocov3 from " + checkpoint + ": it is a recording checkpoint");
}

TEST_F(PretrainEngineTest, ANonFiniteLossStopsWithTheEngineAndMethodDiagnostics) {
  const std::string dir = data::testing::MakeTempDir("engine_nan");
  at::manual_seed(0);
  auto holder = std::make_shared<RecordingMethod>();
  RecordingMethod& method = *holder;
  method.nan_at_step = 4;
  const absl::Status status =
      RunPretraining(method, Options(dir), distributed::MakeLocalCommunicator()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_NE(std::string(status.message()).find("loss became nan at epoch 1 iteration 1"),
            std::string::npos)
      << status;
  EXPECT_NE(std::string(status.message()).find("recording_dump.txt"), std::string::npos);
  EXPECT_TRUE(fs::exists(dir + "/nan_diagnostic_epoch0001_iter000001.pth"));
  EXPECT_TRUE(fs::exists(dir + "/checkpoint_0000.pth.tar"));
  EXPECT_FALSE(fs::exists(dir + "/checkpoint_0001.pth.tar"));
}

// Two processes (threads here, each in its own Gloo process group on loopback): when
// only rank 1's loss becomes non-finite, both stop at that step at once, instead of
// rank 0 waiting in its next collective until the timeout.
TEST_F(PretrainEngineTest, ANonFiniteLossOnOneProcessStopsEveryProcess) {
  const std::string dir = data::testing::MakeTempDir("engine_nan_two");
  const int port = 29600 + static_cast<int>(getpid() % 10000);
  std::vector<absl::Status> statuses(2);
  std::vector<std::thread> ranks;
  const auto start = std::chrono::steady_clock::now();
  for (int rank = 0; rank < 2; ++rank) {
    ranks.emplace_back([&, rank] {
      distributed::ProcessGroupOptions group;
      group.config.world_size = group.config.local_world_size = 2;
      group.config.rank = group.config.local_rank = rank;
      group.config.master_port = port;
      group.config.source = "flags";
      group.timeout = std::chrono::seconds(60);
      absl::StatusOr<std::shared_ptr<distributed::Communicator>> communicator =
          distributed::CreateCommunicator(group);
      if (!communicator.ok()) {
        statuses[rank] = communicator.status();
        return;
      }
      auto method = std::make_shared<RecordingMethod>();
      if (rank == 1) method->nan_at_step = 4;
      statuses[rank] = RunPretraining(*method, Options(dir), *communicator).status();
    });
  }
  for (std::thread& rank : ranks) rank.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 30);  // the collective timeout is 60 s
  EXPECT_NE(std::string(statuses[1].message()).find("loss became nan at epoch 1 iteration 1"),
            std::string::npos)
      << statuses[1];
  EXPECT_EQ(statuses[0].message(),
            "another process's loss became non-finite at epoch 1 iteration 1; this process "
            "(rank 0) stops with it");
}

TEST_F(PretrainEngineTest, VisslLayoutRoundTripsAndLinksTheNewest) {
  const std::string dir = data::testing::MakeTempDir("engine_vissl");
  PretrainOptions options = Options(dir);
  options.layout = VisslLayout();
  options.checkpoint_every = 2;
  at::manual_seed(0);
  auto holder = std::make_shared<RecordingMethod>();
  RecordingMethod& method = *holder;
  ASSERT_TRUE(RunPretraining(method, options, distributed::MakeLocalCommunicator()).ok());
  // Phases 0..2: saved after phase 1 (every 2) and the final one.
  EXPECT_FALSE(fs::exists(dir + "/model_phase0.torch"));
  EXPECT_TRUE(fs::exists(dir + "/model_phase1.torch"));
  EXPECT_TRUE(fs::exists(dir + "/model_final_checkpoint_phase2.torch"));
  EXPECT_EQ(fs::read_symlink(dir + "/checkpoint.torch").string(),
            "model_final_checkpoint_phase2.torch");
  absl::StatusOr<TrainingSnapshot> snapshot = ReadSnapshot(dir + "/checkpoint.torch");
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_EQ(snapshot->epochs_done, 3);
  EXPECT_EQ(snapshot->global_step, 9);
  EXPECT_EQ(snapshot->extra.at("steps_seen").toInt(), 9);
  EXPECT_TRUE(snapshot->model.at("trunk.conv1.weight")
                  .toTensor()
                  .equal(method.EvalBackbone().named_parameters()["conv1.weight"]));
}

// Mixed precision through the engine on the CPU: bf16 autocast (the CPU's only autocast
// type) must change the arithmetic yet keep MoCo v3's losses close to fp32's.
TEST_F(PretrainEngineTest, Bf16AutocastTracksFloat32Losses) {
  auto run = [&](MixedPrecision amp) {
    const std::string dir = data::testing::MakeTempDir("engine_amp_" + AmpName(amp));
    PretrainOptions options = Options(dir);
    options.epochs = 2;
    options.amp = amp;
    at::manual_seed(0);
    auto moco = *methods::MocoV3Impl::Create(methods::MocoV3Options{.arch = "resnet18w0.0625",
                                                                    .cifar_stem = true,
                                                                    .dim = 8,
                                                                    .mlp_dim = 16,
                                                                    .image_size = 16},
                                             distributed::MakeLocalCommunicator());
    EXPECT_TRUE(RunPretraining(*moco, options, distributed::MakeLocalCommunicator()).ok());
    std::vector<double> losses;
    for (const nlohmann::json& record : Records(dir, "iteration")) {
      losses.push_back(record["loss"].get<double>());
    }
    absl::StatusOr<CheckpointConfig> config =
        ReadCheckpointConfig(dir + "/checkpoint_0001.pth.tar");
    EXPECT_TRUE(config.ok());
    return std::make_pair(losses, dir);
  };
  const auto [fp32, fp32_dir] = run(MixedPrecision::kOff);
  const auto [bf16, bf16_dir] = run(MixedPrecision::kBFloat16);
  ASSERT_EQ(fp32.size(), 6u);
  ASSERT_EQ(bf16.size(), fp32.size());
  bool any_different = false;
  for (size_t i = 0; i < fp32.size(); ++i) {
    // bf16 keeps 8 bits of mantissa: a few 1e-3 relative on a loss of ~2 * 0.2 * ln(16).
    EXPECT_NEAR(bf16[i], fp32[i], 0.03 * std::abs(fp32[i])) << "iteration " << i;
    any_different |= bf16[i] != fp32[i];
  }
  EXPECT_TRUE(any_different) << "autocast did not change the arithmetic";
  absl::StatusOr<TrainingSnapshot> snapshot = ReadSnapshot(bf16_dir + "/checkpoint_0001.pth.tar");
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const nlohmann::json config = nlohmann::json::parse(snapshot->config_json);
  EXPECT_EQ(config["amp"], "bf16");
  EXPECT_EQ(config["device"], "cpu");
  // No fp16, so no scaler state: moco-v3's empty "scaler" entry.
  EXPECT_EQ(snapshot->scaler.size(), 0u);
  // The weights stay fp32 (autocast casts per op, never the parameters).
  EXPECT_EQ(snapshot->model.at("base_encoder.conv1.weight").toTensor().scalar_type(), at::kFloat);
}

// Local rank r takes GPU r, or the only GPU it sees (one visible GPU per process).
TEST(DeviceTest, EachLocalRankTakesItsOwnOrTheOnlyVisibleGpu) {
  EXPECT_EQ(GpuForLocalRank(3, 8), 3);
  EXPECT_EQ(GpuForLocalRank(3, 1), 0);
  EXPECT_EQ(GpuForLocalRank(0, 1), 0);
  EXPECT_EQ(GpuForLocalRank(-1, 4), 0);
  EXPECT_EQ(GpuForLocalRank(5, 4), -1);
}

TEST(DeviceTest, ResolvesDevicesAndRefusesWhatThisBuildCannotDo) {
  EXPECT_TRUE(ResolveDevice("cpu", 0)->is_cpu());
  EXPECT_EQ(ResolveDevice("auto", 0)->is_cuda(), CudaAvailable());
  EXPECT_EQ(ResolveDevice("tpu", 0).status().message(),
            "unknown device \"tpu\" (use auto, cpu, cuda or cuda:N)");
  EXPECT_EQ(*ResolveAmp("auto", c10::Device(c10::kCPU)), MixedPrecision::kOff);
  // On a GPU, auto is what the program's original trains with (a device value is
  // enough: nothing runs on it).
  const c10::Device gpu(c10::kCUDA, 0);
  EXPECT_EQ(*ResolveAmp("auto", gpu, MixedPrecision::kFloat16), MixedPrecision::kFloat16);
  EXPECT_EQ(*ResolveAmp("auto", gpu, MixedPrecision::kOff), MixedPrecision::kOff);
  EXPECT_EQ(*ResolveAmp("bf16", gpu, MixedPrecision::kOff), MixedPrecision::kBFloat16);
  EXPECT_EQ(*ResolveAmp("bf16", c10::Device(c10::kCPU)), MixedPrecision::kBFloat16);
  EXPECT_EQ(ResolveAmp("fp16", c10::Device(c10::kCPU)).status().message(),
            "--amp=fp16 needs --device=cuda: CPU autocast has no fp16 (use --amp=bf16 or off)");
  EXPECT_EQ(ResolveAmp("fp8", c10::Device(c10::kCPU)).status().message(),
            "unknown --amp \"fp8\" (use auto, off, fp16 or bf16)");
  if (!CudaAvailable()) {
    EXPECT_EQ(ResolveDevice("cuda", 0).status().message(),
              at::hasCUDA() ? "--device=cuda needs a CUDA GPU, but none is visible (use "
                              "--device=cpu)"
                            : "--device=cuda needs a CUDA GPU, but this build's LibTorch has "
                              "no CUDA (use --device=cpu)");
  } else {
    EXPECT_EQ(ResolveDevice("cuda", 0)->index(), 0);
    EXPECT_EQ(ResolveAmp("auto", *ResolveDevice("cuda", 0)).value(), MixedPrecision::kFloat16);
  }
}

TEST(DeviceTest, AutocastScopesNestAndRestore) {
  const at::Tensor a = at::ones({4, 4});
  EXPECT_FALSE(AutocastActive());
  {
    AutocastScope bf16(c10::Device(c10::kCPU), MixedPrecision::kBFloat16);
    EXPECT_TRUE(AutocastActive());
    EXPECT_EQ(at::matmul(a, a).scalar_type(), at::kBFloat16);
    {
      AutocastDisabled fp32;
      EXPECT_FALSE(AutocastActive());
      EXPECT_EQ(at::matmul(a, a).scalar_type(), at::kFloat);
    }
    EXPECT_EQ(at::matmul(a, a).scalar_type(), at::kBFloat16);
    AutocastScope off(c10::Device(c10::kCPU), MixedPrecision::kOff);  // a no-op
    EXPECT_EQ(at::matmul(a, a).scalar_type(), at::kBFloat16);
  }
  EXPECT_FALSE(AutocastActive());
  EXPECT_EQ(at::matmul(a, a).scalar_type(), at::kFloat);
}

TEST(DeviceTest, ToCpuKeepsTheStructureAndChannelsLastReordersConvolutions) {
  c10::impl::GenericDict inner(c10::StringType::get(), c10::AnyType::get());
  inner.insert("t", at::full({2}, 3.0));
  c10::impl::GenericList list(c10::AnyType::get());
  list.push_back(inner);
  list.push_back(int64_t{7});
  c10::impl::GenericDict outer(c10::IntType::get(), c10::AnyType::get());
  outer.insert(int64_t{0}, list);
  const c10::IValue copy = ToCpu(outer);
  const c10::IValue element = copy.toGenericDict().at(int64_t{0}).toList().get(0);
  EXPECT_TRUE(element.toGenericDict().at("t").toTensor().equal(at::full({2}, 3.0)));
  EXPECT_EQ(copy.toGenericDict().at(int64_t{0}).toList().get(1).toInt(), 7);

  backbones::BackboneOptions options;
  options.cifar_stem = true;
  auto trunk = *backbones::CreateBackbone("resnet18w0.0625", options);
  const at::Tensor input = at::rand({2, 3, 16, 16});
  const at::Tensor before = trunk->Features(input);
  ToChannelsLast(*trunk);
  const at::Tensor weight = trunk->named_parameters()["conv1.weight"];
  EXPECT_TRUE(weight.is_contiguous(at::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(at::allclose(trunk->Features(input.contiguous(at::MemoryFormat::ChannelsLast)),
                           before, 1e-5, 1e-5));
}

TEST(CheckpointScalerTest, EveryLayoutKeepsTheScalerState) {
  optim::GradScaler scaler;
  ASSERT_TRUE(scaler.Scale(at::ones({})).defined());  // creates the state
  for (const auto& layout : {MocoV3Layout(), VisslLayout(), M2TeacherLayout()}) {
    TrainingSnapshot snapshot;
    snapshot.epochs_done = 1;
    snapshot.config_json = "{}";
    snapshot.scaler = scaler.StateDict().toGenericDict();
    absl::StatusOr<TrainingSnapshot> back = layout->Unpack(layout->Pack(snapshot));
    ASSERT_TRUE(back.ok()) << layout->name() << ": " << back.status();
    EXPECT_EQ(back->scaler.at("scale").toDouble(), 65536.0) << layout->name();
    EXPECT_EQ(back->scaler.at("_growth_tracker").toInt(), 0) << layout->name();
  }
}

}  // namespace
}  // namespace ssl::train
