// The SwAV program as a user runs it, in real processes: a VISSL-format config with a
// queue and frozen prototypes; a run killed with SIGKILL and resumed (AUTO_RESUME) ends
// bitwise equal to an uninterrupted one, queue included; Python's torch.load reads the
// VISSL layout; the evaluation tools take the checkpoint; two processes started from
// DISTRIBUTED.NUM_PROC_PER_NODE train and resume; unimplemented keys are one sentence.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "ssl/data/test_util.h"
#include "ssl/train/checkpoint.h"
#include "ssl/train/checkpointer.h"
#include "tests/subprocess.h"

namespace ssl {
namespace {
namespace fs = std::filesystem;
using testing::ExitCode;
using testing::ReadFile;
using testing::Runfile;
using testing::StartProcess;

// 2 crops of 32 px and 2 of 16 px, a narrow ResNet-18, 10 prototypes, a queue of two
// global batches from the first iteration, prototypes frozen for 3 iterations, 3 epochs
// of 10 iterations.
constexpr char kConfig[] = R"(# @package _global_
config:
  SEED_VALUE: 3
  LOG_FREQUENCY: 5
  DATA:
    NUM_DATALOADER_WORKERS: 1
    TRAIN:
      DATA_SOURCES: [disk_folder]
      BATCHSIZE_PER_REPLICA: 16
      TRANSFORMS:
        - name: ImgPilToMultiCrop
          total_num_crops: 4
          size_crops: [32, 16]
          num_crops: [2, 2]
          crop_scales: [[0.14, 1], [0.05, 0.14]]
        - name: RandomHorizontalFlip
          p: 0.5
        - name: ImgPilColorDistortion
          strength: 1.0
        - name: ImgPilGaussianBlur
          p: 0.5
          radius_min: 0.1
          radius_max: 2.0
        - name: ToTensor
        - name: Normalize
          mean: [0.485, 0.456, 0.406]
          std: [0.229, 0.224, 0.225]
      COLLATE_FUNCTION: multicrop_collator
  MODEL:
    TRUNK:
      NAME: resnet
      RESNETS:
        DEPTH: 18
        WIDTH_MULTIPLIER: 0.125
        CIFAR_STEM: True
    HEAD:
      PARAMS: [["swav_head", {"dims": [64, 32, 16], "use_bn": True, "num_clusters": [10]}]]
    TEMP_FROZEN_PARAMS_ITER_MAP: [['module.heads.0.prototypes0.weight', 3]]
    SYNC_BN_CONFIG:
      CONVERT_BN_TO_SYNC_BN: True
      GROUP_SIZE: 0
  LOSS:
    name: swav_loss
    swav_loss:
      queue:
        queue_length: 32
        start_iter: 0
  OPTIMIZER:
    name: sgd
    use_larc: True
    weight_decay: 0.000001
    num_epochs: 3
    regularize_bn: True
    param_schedulers:
      lr:
        auto_lr_scaling:
          auto_scale: true
          base_value: 4.8
          base_lr_batch_size: 256
        name: composite
        schedulers:
          - name: linear
            start_value: 0.1
            end_value: 0.3
          - name: cosine
            start_value: 0.3
            end_value: 0.0003
        update_interval: step
        interval_scaling: [rescaled, fixed]
        lengths: [0.1, 0.9]
  DISTRIBUTED:
    NUM_NODES: 1
    NUM_PROC_PER_NODE: 1
  CHECKPOINT:
    AUTO_RESUME: True
)";

class SwavCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new std::string(testing::MakeTinyImageFolder("swav_cli_data"));
    config_ = new std::string(data::testing::MakeTempDir("swav_cli_config") + "/swav_tiny.yaml");
    std::ofstream(*config_) << kConfig;
  }

  static pid_t Start(const std::string& dir, const std::vector<std::string>& extra,
                     const std::string& log) {
    std::vector<std::string> args = {Runfile("tools/run_distributed_engines"), "--threads=1",
                                     "--data=" + *data_ + "/train", "config=" + *config_,
                                     "config.CHECKPOINT.DIR=" + dir};
    args.insert(args.end(), extra.begin(), extra.end());
    return StartProcess(args, log);
  }

  static c10::impl::GenericDict Load(const std::string& path) {
    absl::StatusOr<c10::IValue> loaded = train::LoadIValue(path);
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    return loaded->toGenericDict();
  }

  static std::string* data_;
  static std::string* config_;
};
std::string* SwavCliTest::data_ = nullptr;
std::string* SwavCliTest::config_ = nullptr;

// classy_state_dict.base_model.model.<name> of a VISSL checkpoint ("trunk", "heads").
c10::impl::GenericDict ModelPart(const c10::impl::GenericDict& file, const char* name) {
  return file.at("classy_state_dict")
      .toGenericDict()
      .at("base_model")
      .toGenericDict()
      .at("model")
      .toGenericDict()
      .at(name)
      .toGenericDict();
}

void ExpectSameTensors(const c10::impl::GenericDict& a, const c10::impl::GenericDict& b,
                       const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (const auto& item : a) {
    ASSERT_TRUE(b.contains(item.key())) << what << " " << item.key();
    if (item.value().isTensor()) {
      EXPECT_TRUE(item.value().toTensor().equal(b.at(item.key()).toTensor()))
          << what << " " << item.key() << " differs";
    }
  }
}

TEST_F(SwavCliTest, KilledAndResumedRunEndsBitwiseEqualQueueIncluded) {
  const std::string straight = data::testing::MakeTempDir("swav_straight");
  ASSERT_EQ(ExitCode(Start(straight, {}, straight + "/log.txt")), 0)
      << ReadFile(straight + "/log.txt");
  const std::string killed = data::testing::MakeTempDir("swav_killed");
  ASSERT_TRUE(testing::KillWhenFileAppears(Start(killed, {}, killed + "/log.txt"),
                                           killed + "/model_phase0.torch"))
      << "the run finished before the kill";
  ASSERT_FALSE(fs::exists(killed + "/model_final_checkpoint_phase2.torch"));
  ASSERT_EQ(ExitCode(Start(killed, {}, killed + "/resume_log.txt")), 0)
      << ReadFile(killed + "/resume_log.txt");
  EXPECT_NE(ReadFile(killed + "/resume_log.txt").find("resumed from"), std::string::npos);

  const c10::impl::GenericDict a = Load(straight + "/model_final_checkpoint_phase2.torch");
  const c10::impl::GenericDict b = Load(killed + "/model_final_checkpoint_phase2.torch");
  ExpectSameTensors(ModelPart(a, "trunk"), ModelPart(b, "trunk"), "trunk");
  ExpectSameTensors(ModelPart(a, "heads"), ModelPart(b, "heads"), "heads");
  ExpectSameTensors(a.at("loss").toGenericDict(), b.at("loss").toGenericDict(), "queue");
  const auto optimizer = [](const c10::impl::GenericDict& file) {
    return file.at("classy_state_dict")
        .toGenericDict()
        .at("optimizer")
        .toGenericDict()
        .at("optim")
        .toGenericDict()
        .at("state")
        .toGenericDict();
  };
  const c10::impl::GenericDict state_a = optimizer(a), state_b = optimizer(b);
  ASSERT_EQ(state_a.size(), state_b.size());
  for (const auto& item : state_a) {
    EXPECT_TRUE(
        item.value()
            .toGenericDict()
            .at("momentum_buffer")
            .toTensor()
            .equal(state_b.at(item.key()).toGenericDict().at("momentum_buffer").toTensor()));
  }
  // The queue was full and in use: its entries are not the zeros it started from.
  EXPECT_GT(a.at("loss")
                .toGenericDict()
                .at("swav_criterion.local_emb_queue")
                .toTensor()
                .abs()
                .sum()
                .item<double>(),
            0);
  EXPECT_EQ(fs::read_symlink(killed + "/checkpoint.torch").string(),
            "model_final_checkpoint_phase2.torch");
}

// Resuming a file as VISSL itself saves it: none of this framework's ssl_* entries, the
// queue only as VISSL's swav_criterion.local_emb_queue.
TEST_F(SwavCliTest, ResumesFromVisslsOwnCheckpointBitwiseQueueIncluded) {
  if (system("/usr/bin/python3 -c 'import torch' 2>/dev/null") != 0) {
    GTEST_SKIP() << "Debian's python3-torch is not installed";
  }
  const std::string straight = data::testing::MakeTempDir("swav_straight_vissl");
  ASSERT_EQ(ExitCode(Start(straight, {}, straight + "/log.txt")), 0)
      << ReadFile(straight + "/log.txt");
  const std::string killed = data::testing::MakeTempDir("swav_killed_vissl");
  ASSERT_TRUE(testing::KillWhenFileAppears(Start(killed, {}, killed + "/log.txt"),
                                           killed + "/model_phase1.torch"))
      << "the run finished before the kill";
  const std::string original = data::testing::MakeTempDir("swav_vissl_original");
  std::ofstream(original + "/resave.py") << R"(
import sys, torch
ck = torch.load(sys.argv[1])
ck = {k: v for k, v in ck.items() if not k.startswith("ssl_")}
ck["loss"] = {k: v for k, v in ck["loss"].items() if not k.startswith("ssl_")}
ck["classy_state_dict"]["loss"] = ck["loss"]
assert "swav_criterion.local_emb_queue" in ck["loss"]
torch.save(ck, sys.argv[2])
)";
  ASSERT_EQ(system(("/usr/bin/python3 " + original + "/resave.py " + killed +
                    "/model_phase1.torch " + original + "/model_phase1.torch")
                       .c_str()),
            0);
  ASSERT_EQ(ExitCode(Start(original, {}, original + "/log.txt")), 0)
      << ReadFile(original + "/log.txt");
  EXPECT_NE(ReadFile(original + "/log.txt").find("resumed from"), std::string::npos);
  const c10::impl::GenericDict a = Load(straight + "/model_final_checkpoint_phase2.torch");
  const c10::impl::GenericDict b = Load(original + "/model_final_checkpoint_phase2.torch");
  ExpectSameTensors(ModelPart(a, "trunk"), ModelPart(b, "trunk"), "trunk");
  ExpectSameTensors(ModelPart(a, "heads"), ModelPart(b, "heads"), "heads");
  EXPECT_TRUE(
      a.at("loss")
          .toGenericDict()
          .at("swav_criterion.local_emb_queue")
          .toTensor()
          .equal(b.at("loss").toGenericDict().at("swav_criterion.local_emb_queue").toTensor()));
}

TEST_F(SwavCliTest, PythonReadsTheVisslLayoutAndTheEvaluationToolsTakeIt) {
  const std::string dir = data::testing::MakeTempDir("swav_layout");
  ASSERT_EQ(ExitCode(Start(dir, {"config.OPTIMIZER.num_epochs=1"}, dir + "/log.txt")), 0)
      << ReadFile(dir + "/log.txt");
  const std::string checkpoint = dir + "/model_final_checkpoint_phase0.torch";
  if (system("/usr/bin/python3 -c 'import torch' 2>/dev/null") == 0) {
    const std::string script = dir + "/check.py";
    std::ofstream(script) << R"(
import sys, torch
ck = torch.load(sys.argv[1], map_location="cpu")
assert ck["phase_idx"] == 0 and ck["train_phase_idx"] == 0 and ck["iteration"] == 10, ck["iteration"]
model = ck["classy_state_dict"]["base_model"]["model"]
assert "_feature_blocks.conv1.weight" in model["trunk"]
assert model["heads"]["0.prototypes0.weight"].shape == (10, 16)
assert "0.projection_head.0.bias" in model["heads"]
loss = ck["loss"]
assert loss["swav_criterion.local_emb_queue"].shape == (2, 32, 16)
assert loss["swav_criterion.num_iteration"].item() == 10
assert "momentum_buffer" in next(iter(ck["classy_state_dict"]["optimizer"]["optim"]["state"].values()))
print("ok")
)";
    EXPECT_EQ(system(("/usr/bin/python3 " + script + " " + checkpoint).c_str()), 0);
  }
  const std::string knn_log = dir + "/knn.txt";
  EXPECT_EQ(ExitCode(StartProcess(
                {Runfile("tools/knn_eval"), "--pretrained=" + checkpoint, "--data=" + *data_,
                 "--threads=1", "--workers=1", "--output=" + dir + "/knn.json"},
                knn_log)),
            0)
      << ReadFile(knn_log);
  EXPECT_NE(ReadFile(dir + "/knn.json").find("knn_top1_k20"), std::string::npos);
}

TEST_F(SwavCliTest, TwoProcessesFromTheConfigTrainAndResume) {
  const std::string dir = data::testing::MakeTempDir("swav_two");
  const std::vector<std::string> two = {"config.DISTRIBUTED.NUM_PROC_PER_NODE=2",
                                        "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=8"};
  std::vector<std::string> first = two;
  first.push_back("config.OPTIMIZER.num_epochs=1");
  ASSERT_EQ(ExitCode(Start(dir, first, dir + "/log.txt")), 0) << ReadFile(dir + "/log.txt");
  // The queue of each process is kept: [processes, crops for assignment, 16, 16].
  const c10::impl::GenericDict phase0 = Load(dir + "/model_final_checkpoint_phase0.torch");
  EXPECT_EQ(phase0.at("loss").toGenericDict().at("ssl_queue_by_rank").toTensor().sizes(),
            (at::IntArrayRef{2, 2, 16, 16}));
  std::vector<std::string> resume = two;
  resume.push_back("config.OPTIMIZER.num_epochs=2");
  ASSERT_EQ(ExitCode(Start(dir, resume, dir + "/resume_log.txt")), 0)
      << ReadFile(dir + "/resume_log.txt");
  EXPECT_TRUE(fs::exists(dir + "/model_final_checkpoint_phase1.torch"));
}

TEST_F(SwavCliTest, UnimplementedKeysAndBadArgumentsAreOneSentence) {
  const std::string dir = data::testing::MakeTempDir("swav_bad");
  auto first_line = [&](const std::vector<std::string>& extra) {
    const int code = ExitCode(Start(dir, extra, dir + "/log.txt"));
    EXPECT_EQ(code, 1);
    std::ifstream in(dir + "/log.txt");
    std::string line;
    std::getline(in, line);
    return line;
  };
  EXPECT_EQ(first_line({"config.LOSS.swav_loss.epsilonn=0.05"}),
            "run_distributed_engines: config.LOSS.swav_loss.epsilonn is not implemented by this "
            "program; remove it (--help lists the keys it reads and the VISSL-only keys it "
            "accepts)");
  EXPECT_EQ(first_line({"temperature=0.2"}),
            "run_distributed_engines: cannot use the argument \"temperature=0.2\"; expected "
            "config=<name>, +config/<group>=<name>, config.A.B=<value> or node_id=<n>");
  EXPECT_EQ(first_line({"config.MODEL.HEAD.PARAMS=[[swav_head, {dims: [2048, 128], "
                        "num_clusters: [10]}]]"}),
            "run_distributed_engines: swav_head dims start with 2048 but the trunk "
            "resnet18w0.125 gives 64 features; the first dim must equal the trunk's width");
}

}  // namespace
}  // namespace ssl
