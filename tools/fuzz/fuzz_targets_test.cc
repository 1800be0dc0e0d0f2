// Replays the fuzz targets over seeds of every input kind and deterministic mutations of
// them (truncations, byte flips, header fields set to extremes), so that CI runs what
// the fuzzers check; tools/fuzz/run_fuzzers.sh explores further with libFuzzer.
#include "tools/fuzz/fuzz_targets.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "ssl/data/image_io.h"

namespace ssl::fuzz {
namespace {

std::vector<std::string> ImageSeeds() {
  data::Image image(24, 32);
  for (size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = static_cast<uint8_t>(i * 7);
  std::vector<std::string> seeds = {data::EncodeJpeg(image), data::EncodeGrayscaleJpeg(image),
                                    data::EncodeCmykJpeg(image), data::EncodePng(image)};
  cv::Mat sixteen(20, 20, CV_16UC3, cv::Scalar(1000, 30000, 65535));
  std::vector<uchar> encoded;
  cv::imencode(".png", sixteen, encoded);
  seeds.emplace_back(encoded.begin(), encoded.end());
  cv::imencode(".bmp", cv::Mat(9, 13, CV_8UC3, cv::Scalar(1, 2, 3)), encoded);
  seeds.emplace_back(encoded.begin(), encoded.end());
  return seeds;
}

// Every prefix at a stride, every byte xor-ed at a stride, and each 4-byte window set to
// 0xff (dimension fields claiming billions of pixels among them).
void Mutate(const std::string& seed, const std::function<void(const std::string&)>& run) {
  const size_t stride = std::max<size_t>(1, seed.size() / 200);
  for (size_t n = 0; n < seed.size(); n += stride) run(seed.substr(0, n));
  for (size_t i = 0; i < seed.size(); i += stride) {
    std::string flipped = seed;
    flipped[i] = static_cast<char>(flipped[i] ^ 0xa5);
    run(flipped);
  }
  for (size_t i = 0; i + 4 <= std::min<size_t>(seed.size(), 400); ++i) {
    std::string extreme = seed;
    extreme.replace(i, 4, "\xff\xff\xff\x7f");
    run(extreme);
  }
}

int RunTarget(int (*target)(const uint8_t*, size_t), const std::string& input) {
  return target(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

TEST(FuzzTargetsTest, ImageDecoderSurvivesMutationsOfEveryFormat) {
  int runs = 0;
  for (const std::string& seed : ImageSeeds()) {
    ASSERT_TRUE(data::DecodeImage(seed).ok());  // the seeds themselves are valid
    Mutate(seed, [&](const std::string& input) {
      EXPECT_EQ(RunTarget(DecodeImageTarget, input), 0);
      ++runs;
    });
  }
  EXPECT_GT(runs, 2000);
}

TEST(FuzzTargetsTest, TorchFileReaderSurvivesMutations) {
  // A protocol-2 legacy file header and a zip signature with garbage after it.
  const std::string seeds[] = {
      std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.\x80\x02M\xe9\x03.") +
          "\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x05u.\x80\x02]q\x00.",
      std::string("PK\x03\x04", 4) + std::string(200, '\0')};
  for (const std::string& seed : seeds) {
    Mutate(seed, [](const std::string& input) { EXPECT_EQ(RunTarget(TorchFileTarget, input), 0); });
  }
}

TEST(FuzzTargetsTest, VisslConfigReaderSurvivesMutations) {
  std::ifstream file("configs/config/ssl_cpu/swav_resnet18w025_64px.yaml");
  std::stringstream text;
  text << file.rdbuf();
  ASSERT_FALSE(text.str().empty());
  const std::string seeds[] = {text.str(), "config: [1, {a: *b}]", "config:\n  DATA: !!binary x"};
  for (const std::string& seed : seeds) {
    Mutate(seed,
           [](const std::string& input) { EXPECT_EQ(RunTarget(VisslConfigTarget, input), 0); });
  }
}

TEST(FuzzTargetsTest, TransferFileReadersSurviveMutations) {
  const std::string dir = ::testing::TempDir() + "/transfer_fixtures";
  if (system(("/usr/bin/python3 transfer/make_transfer_fixtures.py " + dir + " 2>/dev/null")
                 .c_str()) != 0) {
    GTEST_SKIP() << "Debian's python3-numpy / python3-scipy write the seeds";
  }
  int runs = 0;
  for (const char* file : {"cifar-10-batches-py/batches.meta", "cifar-10-batches-py/data_batch_1",
                           "cifar-100-python/meta", "flowers/imagelabels.mat", "flowers/setid.mat"}) {
    std::ifstream in(dir + "/" + file, std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    ASSERT_FALSE(bytes.str().empty()) << file;
    Mutate(bytes.str(), [&](const std::string& input) {
      EXPECT_EQ(RunTarget(TransferFilesTarget, input), 0);
      ++runs;
    });
  }
  EXPECT_GT(runs, 1000);
}

// Inputs the fuzzers found (tools/fuzz/testdata/<target>_<what>), replayed as they are.
TEST(FuzzTargetsTest, FoundInputsStayHarmless) {
  int replayed = 0;
  for (const auto& entry : std::filesystem::directory_iterator("tools/fuzz/testdata")) {
    std::ifstream file(entry.path(), std::ios::binary);
    std::stringstream bytes;
    bytes << file.rdbuf();
    const std::string name = entry.path().filename().string();
    if (name.rfind("torch_file_", 0) == 0) {
      EXPECT_EQ(RunTarget(TorchFileTarget, bytes.str()), 0);
    } else if (name.rfind("transfer_files_", 0) == 0) {
      EXPECT_EQ(RunTarget(TransferFilesTarget, bytes.str()), 0);
    } else if (name.rfind("image_", 0) == 0) {
      EXPECT_EQ(RunTarget(DecodeImageTarget, bytes.str()), 0);
    } else {
      ADD_FAILURE() << name << " names no target";
    }
    ++replayed;
  }
  EXPECT_GE(replayed, 1);
}

}  // namespace
}  // namespace ssl::fuzz
