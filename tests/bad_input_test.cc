// The bad-input sweep: what users' disks hold, fed to the programs as real processes.
// Each case ends in a counted skip or one sentence on stderr (exit code 1 or 2), never a
// crash, a hang, a C++ backtrace, or a lost earlier checkpoint.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "ssl/data/image_io.h"
#include "ssl/data/test_util.h"
#include "ssl/train/checkpoint.h"
#include "tests/subprocess.h"

namespace ssl {
namespace {
namespace fs = std::filesystem;

using testing::ReadFile;
using testing::Runfile;

class BadInputTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new std::string(testing::MakeTinyImageFolder("bad_input_data"));
  }

  static std::vector<std::string> MocoArgs(const std::string& data, const std::string& out) {
    return {Runfile("tools/main_moco"),
            "--data=" + data,
            "--output_dir=" + out,
            "--arch=resnet18w0.125",
            "--cifar_stem",
            "--image_size=32",
            "--batch_size=16",
            "--epochs=1",
            "--warmup_epochs=0",
            "--moco_dim=16",
            "--moco_mlp_dim=32",
            "--workers=2",
            "--threads=1",
            "--print_freq=100",
            "--seed=3"};
  }

  // Runs `args` to the end; returns the exit code and puts stderr in *log.
  static int Run(std::vector<std::string> args, const std::string& log_path, std::string* log) {
    const int code = testing::ExitCode(testing::StartProcess(std::move(args), log_path));
    *log = ReadFile(log_path);
    return code;
  }

  // A failed run's verdict: the last line of stderr is one sentence, and nothing in the
  // output is a crash report.
  static void ExpectOneSentenceError(int code, const std::string& log, const std::string& needle) {
    EXPECT_TRUE(code == 1 || code == 2) << "exit code " << code << "\n" << log;
    EXPECT_EQ(log.find("frame #"), std::string::npos) << log;
    EXPECT_EQ(log.find("terminate called"), std::string::npos) << log;
    EXPECT_EQ(log.find("Check failure"), std::string::npos) << log;
    std::string last = log.substr(0, log.find_last_not_of('\n') + 1);
    last = last.substr(last.rfind('\n') + 1);
    EXPECT_NE(last.find(needle), std::string::npos) << "last line: " << last;
    EXPECT_LT(last.size(), 400u) << last;
    std::printf("  exit %d: %s\n", code, last.c_str());  // the sweep's table, in test.log
  }

  static std::string CopyTrain(const std::string& name) {
    const std::string root = data::testing::MakeTempDir(name);
    fs::copy(*data_ + "/train", root + "/train", fs::copy_options::recursive);
    return root + "/train";
  }

  static std::string* data_;
};
std::string* BadInputTest::data_ = nullptr;

TEST_F(BadInputTest, BadImagesAreCountedSkipsAndTheRunGoesOn) {
  const std::string train = CopyTrain("bad_images");
  const std::string class_dir =
      train + "/" + fs::directory_iterator(train)->path().filename().string();
  std::string good;
  for (const auto& entry : fs::directory_iterator(class_dir)) good = entry.path().string();
  const std::string jpeg = ReadFile(good);
  std::ofstream(class_dir + "/zero_bytes.jpg");
  std::ofstream(class_dir + "/truncated.jpg", std::ios::binary) << jpeg.substr(0, jpeg.size() / 2);
  std::ofstream(class_dir + "/not_an_image.jpg") << "<html>404 not found</html>\n";
  // A decompression bomb: a real JPEG whose header claims 60000 x 60000 pixels.
  std::string bomb = jpeg;
  const size_t sof = bomb.find("\xff\xc0");
  ASSERT_NE(sof, std::string::npos);
  bomb[sof + 5] = static_cast<char>(0xEA);  // height 0xEA60 = 60000
  bomb[sof + 6] = static_cast<char>(0x60);
  bomb[sof + 7] = static_cast<char>(0xEA);  // width
  bomb[sof + 8] = static_cast<char>(0x60);
  for (int i = 0; i < 4; ++i) {
    std::ofstream(class_dir + "/bomb" + std::to_string(i) + ".jpg", std::ios::binary) << bomb;
  }
  fs::create_symlink("/nonexistent/x.jpg", class_dir + "/dangling.jpg");  // unreadable
  // Truncated PNG, TIFF and WebP files: libpng and OpenCV's TIFF reader would print their
  // own messages to stderr.
  const absl::StatusOr<data::Image> decoded = data::DecodeImage(jpeg);
  ASSERT_TRUE(decoded.ok());
  const std::string png = data::EncodePng(*decoded);
  std::ofstream(class_dir + "/truncated.png", std::ios::binary) << png.substr(0, png.size() / 2);
  for (const char* extension : {".tiff", ".webp"}) {
    cv::Mat bgr(decoded->height, decoded->width, CV_8UC3,
                const_cast<uint8_t*>(decoded->pixels.data()));
    std::vector<uint8_t> encoded;
    ASSERT_TRUE(cv::imencode(extension, bgr, encoded));
    std::ofstream(class_dir + "/truncated" + extension, std::ios::binary)
        .write(reinterpret_cast<const char*>(encoded.data()),
               static_cast<std::streamsize>(encoded.size() / 2));
  }

  const std::string out = data::testing::MakeTempDir("bad_images_run");
  std::string log;
  ASSERT_EQ(Run(MocoArgs(train, out), out + "/log.txt", &log), 0) << log;
  EXPECT_NE(log.find("claims 60000 x 60000 pixels"), std::string::npos) << log;
  EXPECT_NE(log.find("skipping unreadable image"), std::string::npos) << log;
  EXPECT_NE(log.find("PNG " + class_dir + "/truncated.png is truncated"), std::string::npos) << log;
  for (const char* noise : {"imdecode_(", "[ WARN", "libpng error"}) {
    EXPECT_EQ(log.find(noise), std::string::npos) << noise << " in\n" << log;
  }
  std::ifstream metrics(out + "/metrics.jsonl");
  std::string line;
  int64_t failures = -1;
  while (std::getline(metrics, line)) {
    const nlohmann::json record = nlohmann::json::parse(line);
    if (record["type"] == "epoch") failures = record["decode_failures"];
  }
  // Every failed attempt counts: a bad sample falls back to the next one in file order,
  // and the 11 bad files sit side by side, so at most 11 + 10 + ... + 1 = 66.
  EXPECT_GE(failures, 1);
  EXPECT_LE(failures, 66);
  EXPECT_TRUE(fs::exists(out + "/checkpoint_0000.pth.tar"));
}

TEST_F(BadInputTest, EmptyFoldersAndOneClassFolders) {
  const std::string empty = data::testing::MakeTempDir("empty_data");
  const std::string out = data::testing::MakeTempDir("empty_data_out");
  std::string log;
  ExpectOneSentenceError(Run(MocoArgs(empty, out), out + "/log.txt", &log), log, empty);
  fs::create_directories(empty + "/class_without_images");
  ExpectOneSentenceError(Run(MocoArgs(empty, out), out + "/log2.txt", &log), log, empty);
  ExpectOneSentenceError(Run(MocoArgs(empty + "/missing", out), out + "/log3.txt", &log), log,
                         "missing");

  // Self-supervised pretraining needs no labels: one class is a dataset like any other.
  const std::string one = data::testing::MakeTempDir("one_class");
  const std::string train = *data_ + "/train";
  const std::string first = fs::directory_iterator(train)->path().filename().string();
  fs::create_directories(one + "/train");
  fs::copy(train + "/" + first, one + "/train/" + first, fs::copy_options::recursive);
  EXPECT_EQ(Run(MocoArgs(one + "/train", one + "/out"), one + "/log.txt", &log), 0) << log;
}

TEST_F(BadInputTest, OutputDirectoriesThatCannotBeWritten) {
  const std::string dir = data::testing::MakeTempDir("bad_output");
  std::ofstream(dir + "/a_file") << "x";
  std::string log;
  ExpectOneSentenceError(
      Run(MocoArgs(*data_ + "/train", dir + "/a_file/run"), dir + "/log.txt", &log), log, "a_file");
  // /proc refuses new files even to root, as a read-only mount does.
  ExpectOneSentenceError(Run(MocoArgs(*data_ + "/train", "/proc/ssl_run"), dir + "/log2.txt", &log),
                         log, "/proc/ssl_run");
}

TEST_F(BadInputTest, AFullDiskKeepsTheEarlierCheckpoint) {
  const std::string out = data::testing::MakeTempDir("full_disk");
  std::string log;
  ASSERT_EQ(Run(MocoArgs(*data_ + "/train", out), out + "/log.txt", &log), 0) << log;
  const std::string first = out + "/checkpoint_0000.pth.tar";
  const std::string before = ReadFile(first);
  ASSERT_GT(before.size(), 10000u);
  // The second epoch's checkpoint meets a file size limit below its size (the disk is
  // full for it); SIGXFSZ ignored, as a full disk gives ENOSPC rather than a signal.
  std::string command =
      "ulimit -f " + std::to_string(before.size() / 1024 / 2) + "; trap '' XFSZ; exec";
  for (const std::string& arg : MocoArgs(*data_ + "/train", out)) command += " '" + arg + "'";
  command += " --epochs=2 --resume=latest";
  ExpectOneSentenceError(Run({"/bin/sh", "-c", command}, out + "/log2.txt", &log), log,
                         "checkpoint_0001.pth.tar");
  EXPECT_EQ(ReadFile(first), before);  // untouched, and still what resume would read
  EXPECT_FALSE(fs::exists(out + "/checkpoint_0001.pth.tar"));
  for (const auto& entry : fs::directory_iterator(out)) {  // no partial temporary left
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
  }
  EXPECT_TRUE(train::LoadIValue(first).ok());
}

TEST_F(BadInputTest, ResumingFromTruncatedOrForeignCheckpoints) {
  const std::string out = data::testing::MakeTempDir("bad_resume");
  std::string log;
  ASSERT_EQ(Run(MocoArgs(*data_ + "/train", out), out + "/log.txt", &log), 0) << log;
  const std::string whole = ReadFile(out + "/checkpoint_0000.pth.tar");

  // Truncated mid-write (a copy made by hand, or a disk that filled under another tool).
  const std::string truncated = data::testing::MakeTempDir("truncated_resume");
  std::ofstream(truncated + "/checkpoint_0000.pth.tar", std::ios::binary)
      << whole.substr(0, whole.size() / 2);
  std::vector<std::string> args = MocoArgs(*data_ + "/train", truncated);
  args.push_back("--epochs=2");
  args.push_back("--resume=latest");
  ExpectOneSentenceError(Run(args, truncated + "/log.txt", &log), log, "checkpoint_0000.pth.tar");

  // Garbage under a checkpoint's name.
  std::ofstream(truncated + "/checkpoint_0000.pth.tar") << "not a checkpoint";
  ExpectOneSentenceError(Run(args, truncated + "/log2.txt", &log), log, "checkpoint_0000.pth.tar");

  // Another method's checkpoint: Momentum^2 Teacher's, from its own program.
  const std::string m2t = data::testing::MakeTempDir("m2t_for_resume");
  ASSERT_EQ(
      Run({Runfile("tools/m2teacher_train"), "-b", "16", "-d", "0", "-f",
           "cpu/momentum2_teacher_resnet18w025_64px", "--set=image_size=32", "--epochs=1",
           "--workers=1", "--threads=1", "--data=" + *data_ + "/train", "--output_dir=" + m2t},
          m2t + "/log.txt", &log),
      0)
      << log;
  args = MocoArgs(*data_ + "/train", out);
  args.push_back("--epochs=2");
  args.push_back("--resume=" + m2t + "/last_epoch_ckpt.pth.tar");
  ExpectOneSentenceError(Run(args, out + "/log2.txt", &log), log, "last_epoch_ckpt.pth.tar");
}

}  // namespace
}  // namespace ssl
