// The Momentum^2 Teacher programs as a user runs them, in real processes: a run killed
// with SIGKILL and resumed ends bitwise equal to an uninterrupted one, Momentum BN
// statistics and schedule included (the original cannot resume); Python's torch.load
// reads the original's checkpoint layout; the linear evaluation and the kNN tool take
// the teacher (or the student); -d 0-1 trains two processes; bad flags are one sentence.
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
#include "tests/subprocess.h"

namespace ssl {
namespace {
namespace fs = std::filesystem;
using testing::ExitCode;
using testing::ReadFile;
using testing::Runfile;
using testing::StartProcess;

class M2TeacherCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new std::string(testing::MakeTinyImageFolder("m2t_cli_data"));
  }

  // The CPU description with a 32 px narrow ResNet-18 would not fit: train the tiny
  // configuration through the description's overrides (epochs, batch) and a
  // --output_dir; image size comes from the description (64 px crops of 32 px images).
  static pid_t Start(const std::string& dir, const std::vector<std::string>& extra,
                     const std::string& log) {
    std::vector<std::string> args = {Runfile("tools/m2teacher_train"),
                                     "-b",
                                     "16",
                                     "-d",
                                     "0",
                                     "-f",
                                     "cpu/momentum2_teacher_resnet18w025_64px",
                                     "--epochs=3",
                                     "--workers=1",
                                     "--threads=1",
                                     "--seed=4",
                                     "--data=" + *data_ + "/train",
                                     "--output_dir=" + dir};
    args.insert(args.end(), extra.begin(), extra.end());
    return StartProcess(args, log);
  }

  static c10::impl::GenericDict Load(const std::string& path) {
    absl::StatusOr<c10::IValue> loaded = train::LoadIValue(path);
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    return loaded->toGenericDict();
  }

  static std::string* data_;
};
std::string* M2TeacherCliTest::data_ = nullptr;

TEST_F(M2TeacherCliTest, KilledAndResumedRunEndsBitwiseEqualMomentumBnIncluded) {
  const std::string straight = data::testing::MakeTempDir("m2t_straight");
  ASSERT_EQ(ExitCode(Start(straight, {}, straight + "/log.txt")), 0)
      << ReadFile(straight + "/log.txt");
  const std::string killed = data::testing::MakeTempDir("m2t_killed");
  ASSERT_TRUE(testing::KillWhenFileAppears(Start(killed, {}, killed + "/log.txt"),
                                           killed + "/last_epoch_ckpt.pth.tar"))
      << "the run finished before the kill";
  ASSERT_EQ(Load(killed + "/last_epoch_ckpt.pth.tar").at("start_epoch").toInt(), 1);
  ASSERT_EQ(ExitCode(Start(killed, {}, killed + "/resume_log.txt")), 0)
      << ReadFile(killed + "/resume_log.txt");

  const c10::impl::GenericDict a = Load(straight + "/last_epoch_ckpt.pth.tar");
  const c10::impl::GenericDict b = Load(killed + "/last_epoch_ckpt.pth.tar");
  EXPECT_EQ(b.at("start_epoch").toInt(), 3);
  const c10::impl::GenericDict model_a = a.at("model").toGenericDict();
  const c10::impl::GenericDict model_b = b.at("model").toGenericDict();
  ASSERT_EQ(model_a.size(), model_b.size());
  int teacher_bn = 0;
  for (const auto& item : model_a) {
    const std::string key = item.key().toStringRef();
    EXPECT_TRUE(item.value().toTensor().equal(model_b.at(key).toTensor())) << key << " differs";
    if (key.find("teacher_encoder") != std::string::npos &&
        key.find("running_var") != std::string::npos) {
      ++teacher_bn;
    }
  }
  EXPECT_GT(teacher_bn, 10);  // the Momentum BN statistics were compared
  const auto extra_a = a.at("ssl_extra").toGenericDict();
  const auto extra_b = b.at("ssl_extra").toGenericDict();
  EXPECT_EQ(extra_a.at("momentum_bn.iteration").toInt(), 30);
  EXPECT_EQ(extra_b.at("momentum_bn.iteration").toInt(), 30);
  EXPECT_EQ(extra_a.at("momentum_bn.m_bn").toDouble(), extra_b.at("momentum_bn.m_bn").toDouble());
  const auto momentum = [](const c10::impl::GenericDict& file) {
    return file.at("optimizer").toGenericDict().at("state").toGenericDict();
  };
  ASSERT_EQ(momentum(a).size(), momentum(b).size());
  for (const auto& item : momentum(a)) {
    EXPECT_TRUE(
        item.value()
            .toGenericDict()
            .at("momentum_buffer")
            .toTensor()
            .equal(momentum(b).at(item.key()).toGenericDict().at("momentum_buffer").toTensor()));
  }
}

// Resuming a file as the original's tools/train.py saves it (no ssl_* entries, an
// OrderedDict state dict): Momentum BN's schedule follows from the step, its running
// statistics from the state dict, so the run ends as the uninterrupted one.
TEST_F(M2TeacherCliTest, ResumesFromTheOriginalsCheckpointBitwise) {
  if (system("/usr/bin/python3 -c 'import torch' 2>/dev/null") != 0) {
    GTEST_SKIP() << "Debian's python3-torch is not installed";
  }
  const std::string straight = data::testing::MakeTempDir("m2t_straight_orig");
  ASSERT_EQ(ExitCode(Start(straight, {}, straight + "/log.txt")), 0)
      << ReadFile(straight + "/log.txt");
  // Killed after its first epoch's checkpoint, as in the test above.
  const std::string ours = data::testing::MakeTempDir("m2t_one_epoch");
  ASSERT_TRUE(testing::KillWhenFileAppears(Start(ours, {}, ours + "/log.txt"),
                                           ours + "/last_epoch_ckpt.pth.tar"))
      << "the run finished before the kill";
  ASSERT_EQ(Load(ours + "/last_epoch_ckpt.pth.tar").at("start_epoch").toInt(), 1);
  const std::string original = data::testing::MakeTempDir("m2t_original");
  std::ofstream(original + "/resave.py") << R"(
import collections, sys, torch
ck = torch.load(sys.argv[1])
torch.save({"start_epoch": ck["start_epoch"],
            "model": collections.OrderedDict(ck["model"].items()),
            "optimizer": ck["optimizer"]}, sys.argv[2])
)";
  ASSERT_EQ(system(("/usr/bin/python3 " + original + "/resave.py " + ours +
                    "/last_epoch_ckpt.pth.tar " + original + "/last_epoch_ckpt.pth.tar")
                       .c_str()),
            0);
  ASSERT_EQ(ExitCode(Start(original, {}, original + "/log.txt")), 0)
      << ReadFile(original + "/log.txt");
  EXPECT_NE(ReadFile(original + "/log.txt").find("resumed from"), std::string::npos);
  const c10::impl::GenericDict a = Load(straight + "/last_epoch_ckpt.pth.tar");
  const c10::impl::GenericDict b = Load(original + "/last_epoch_ckpt.pth.tar");
  EXPECT_EQ(b.at("start_epoch").toInt(), 3);
  const c10::impl::GenericDict model_a = a.at("model").toGenericDict();
  const c10::impl::GenericDict model_b = b.at("model").toGenericDict();
  ASSERT_EQ(model_a.size(), model_b.size());
  for (const auto& item : model_a) {
    EXPECT_TRUE(item.value().toTensor().equal(model_b.at(item.key()).toTensor()))
        << item.key().toStringRef() << " differs";
  }
  EXPECT_EQ(a.at("ssl_extra").toGenericDict().at("momentum_bn.m_bn").toDouble(),
            b.at("ssl_extra").toGenericDict().at("momentum_bn.m_bn").toDouble());
}

TEST_F(M2TeacherCliTest, TheOriginalsLayoutAndTheEvaluationTools) {
  const std::string dir = data::testing::MakeTempDir("m2t_layout");
  ASSERT_EQ(ExitCode(Start(dir, {"--epochs=1"}, dir + "/log.txt")), 0)
      << ReadFile(dir + "/log.txt");
  const std::string checkpoint = dir + "/last_epoch_ckpt.pth.tar";
  if (system("/usr/bin/python3 -c 'import torch' 2>/dev/null") == 0) {
    const std::string script = dir + "/check.py";
    // The original's eval.py loading rule: module.teacher_encoder.* without fc.
    std::ofstream(script) << R"(
import sys, torch
ck = torch.load(sys.argv[1], map_location="cpu")
assert ck["start_epoch"] == 1
model = ck["model"]
teacher = {k.replace("module.teacher_encoder.", ""): v for k, v in model.items()
           if k.startswith("module.teacher_encoder.") and ".fc." not in k and not k.startswith("module.teacher_encoder.fc.")}
assert "layer4.1.bn2.running_var" in teacher and "conv1.weight" in teacher
assert "module.student_encoder.fc.7.weight" in model and "module.teacher_encoder.fc.3.bias" in model
assert "module.teacher_encoder.fc.4.weight" not in model
assert "momentum_buffer" in next(iter(ck["optimizer"]["state"].values()))
print("ok")
)";
    EXPECT_EQ(system(("/usr/bin/python3 " + script + " " + checkpoint).c_str()), 0);
  }
  // The original's linear protocol on the teacher (a few epochs on cached features).
  fs::create_directories(dir + "/data");
  fs::create_symlink(*data_ + "/train", dir + "/data/imagenet_train");
  fs::create_symlink(*data_ + "/val", dir + "/data/imagenet_val");
  const std::string eval_log = dir + "/eval.txt";
  EXPECT_EQ(ExitCode(StartProcess({Runfile("tools/m2teacher_eval"), "-b", "16",
                                   "--bn_samples=8", "--pretrained=" + checkpoint, "--data=" + dir + "/data",
                                   "--epochs=2", "--cached_features", "--threads=1", "--workers=1"},
                                  eval_log)),
            0)
      << ReadFile(eval_log);
  const std::string result = ReadFile(dir + "/byol_linear_eval_teacher.json");
  EXPECT_NE(result.find("\"backbone\": \"teacher\""), std::string::npos) << result;
  EXPECT_NE(result.find("\"frozen_weights_unchanged\": true"), std::string::npos) << result;
  // kNN on the student, by flag.
  const std::string knn_log = dir + "/knn.txt";
  EXPECT_EQ(ExitCode(StartProcess(
                {Runfile("tools/knn_eval"), "--pretrained=" + checkpoint, "--backbone=student",
                 "--data=" + *data_, "--threads=1", "--workers=1", "--output=" + dir + "/knn.json"},
                knn_log)),
            0)
      << ReadFile(knn_log);
}

TEST_F(M2TeacherCliTest, TwoDevicesTrainTwoProcesses) {
  const std::string dir = data::testing::MakeTempDir("m2t_two");
  ASSERT_EQ(ExitCode(Start(dir, {"-d", "0-1", "--epochs=1"}, dir + "/log.txt")), 0)
      << ReadFile(dir + "/log.txt");
  EXPECT_NE(ReadFile(dir + "/log.txt").find("2 process(es)"), std::string::npos);
  EXPECT_TRUE(fs::exists(dir + "/last_epoch_ckpt.pth.tar"));
}

TEST_F(M2TeacherCliTest, BadFlagsAreOneSentence) {
  const std::string dir = data::testing::MakeTempDir("m2t_bad");
  auto first_line = [&](const std::vector<std::string>& extra) {
    EXPECT_EQ(ExitCode(Start(dir, extra, dir + "/log.txt")), 1);
    std::ifstream in(dir + "/log.txt");
    std::string line;
    std::getline(in, line);
    return line;
  };
  EXPECT_EQ(first_line({"-d", "3-1"}), "m2teacher_train: -d must be a range like 0-7, got \"3-1\"");
  EXPECT_EQ(first_line({"--scheduler=step"}),
            "m2teacher_train: --scheduler must be warmcos or cos, got \"step\"");
  EXPECT_NE(first_line({"-f", "exp_9_a100/x"})
                .find("m2teacher_train: unknown experiment description \"exp_9_a100/x\"; known: "),
            std::string::npos);
  EXPECT_EQ(first_line({"--set=param_momentum=2"}),
            "m2teacher_train: description attribute param_momentum=\"2\": expected a number "
            "in [0, 1]");
}

TEST_F(M2TeacherCliTest, HelpListsTheProgramsOwnFlagsOnly) {
  const std::string dir = data::testing::MakeTempDir("m2t_help");
  // Help goes to stdout.
  ASSERT_EQ(
      ExitCode(StartProcess(
          {"/bin/sh", "-c", Runfile("tools/m2teacher_train") + " --help > " + dir + "/help.txt"},
          dir + "/log.txt")),
      0);
  const std::string help = ReadFile(dir + "/help.txt");
  EXPECT_EQ(help.rfind("m2teacher_train: Momentum^2 Teacher pretraining", 0), 0u) << help;
  EXPECT_NE(help.find("--experiment_name"), std::string::npos) << help;
  EXPECT_NE(help.find("--set"), std::string::npos) << help;
  EXPECT_EQ(help.find("caffe2"), std::string::npos) << help;       // LibTorch's flags
  EXPECT_EQ(help.find("logtostderr"), std::string::npos) << help;  // glog's
  EXPECT_NE(help.find("--helpfull"), std::string::npos) << help;
}

}  // namespace
}  // namespace ssl
