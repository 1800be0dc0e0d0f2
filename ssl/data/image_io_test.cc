#include "ssl/data/image_io.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <vector>

#include "ssl/data/test_util.h"

namespace ssl::data {
namespace {

using testing::MakeTempDir;

// A smooth image: JPEG keeps it within a few levels, unlike noise.
Image Gradient(int height, int width) {
  Image image(height, width);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      image.at(y, x, 0) = static_cast<uint8_t>(255 * x / (width - 1));
      image.at(y, x, 1) = static_cast<uint8_t>(255 * y / (height - 1));
      image.at(y, x, 2) = static_cast<uint8_t>(128 + 60 * std::sin(0.2 * (x + y)));
    }
  }
  return image;
}

double MeanAbsDifference(const Image& a, const Image& b) {
  double total = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) total += std::abs(a.pixels[i] - b.pixels[i]);
  return total / a.pixels.size();
}

TEST(ImageIoTest, JpegRoundTripKeepsPixelsClose) {
  const Image original = Gradient(40, 56);
  const absl::StatusOr<Image> decoded = DecodeImage(EncodeJpeg(original, 95), "gradient");
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_EQ(decoded->height, 40);
  ASSERT_EQ(decoded->width, 56);
  EXPECT_LT(MeanAbsDifference(*decoded, original), 2.0);
}

TEST(ImageIoTest, GrayscaleJpegDecodesToThreeEqualChannels) {
  const Image original = Gradient(32, 32);
  const absl::StatusOr<Image> decoded = DecodeImage(EncodeGrayscaleJpeg(original, 95));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  double error = 0;
  for (int y = 0; y < 32; ++y) {
    for (int x = 0; x < 32; ++x) {
      ASSERT_EQ(decoded->at(y, x, 0), decoded->at(y, x, 1));
      ASSERT_EQ(decoded->at(y, x, 1), decoded->at(y, x, 2));
      const double luma = 0.299 * original.at(y, x, 0) + 0.587 * original.at(y, x, 1) +
                          0.114 * original.at(y, x, 2);
      error += std::abs(decoded->at(y, x, 0) - luma);
    }
  }
  EXPECT_LT(error / (32 * 32), 2.0);
}

TEST(ImageIoTest, AdobeCmykJpegDecodesToTheSameRgb) {
  const Image original = Gradient(32, 48);
  const absl::StatusOr<Image> decoded = DecodeImage(EncodeCmykJpeg(original, 98), "cmyk");
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_LT(MeanAbsDifference(*decoded, original), 3.0);
}

TEST(ImageIoTest, PngRoundTripIsExact) {
  const Image original = testing::RandomImage(17, 23, 9);
  const absl::StatusOr<Image> decoded = DecodeImage(EncodePng(original));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->pixels, original.pixels);
}

TEST(ImageIoTest, PngAlphaIsDroppedAsPilConvertRgbDoes) {
  cv::Mat bgra(2, 2, CV_8UC4, cv::Scalar(10, 20, 30, 0));  // fully transparent
  std::vector<uchar> bytes;
  ASSERT_TRUE(cv::imencode(".png", bgra, bytes));
  const absl::StatusOr<Image> decoded =
      DecodeImage(std::string_view(reinterpret_cast<char*>(bytes.data()), bytes.size()));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->at(1, 1, 0), 30);
  EXPECT_EQ(decoded->at(1, 1, 1), 20);
  EXPECT_EQ(decoded->at(1, 1, 2), 10);
}

TEST(ImageIoTest, TruncatedJpegIsAnErrorNotAGreyImage) {
  const std::string full = EncodeJpeg(Gradient(64, 64), 90);
  for (size_t keep : {full.size() / 2, full.size() - 10, size_t{200}, size_t{20}}) {
    const absl::StatusOr<Image> decoded = DecodeImage(full.substr(0, keep), "cut.jpg");
    ASSERT_FALSE(decoded.ok()) << "kept " << keep << " of " << full.size();
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(decoded.status().message().find("cut.jpg"), std::string_view::npos)
        << decoded.status();
  }
}

TEST(ImageIoTest, GarbageAndEmptyInputsAreErrors) {
  EXPECT_FALSE(DecodeImage("", "empty").ok());
  EXPECT_FALSE(DecodeImage("definitely not an image", "text").ok());
  std::string corrupt_header = EncodeJpeg(Gradient(16, 16));
  for (size_t i = 3; i < 40; ++i) corrupt_header[i] = 0x55;
  EXPECT_FALSE(DecodeImage(corrupt_header, "scrambled").ok());
}

TEST(ImageIoTest, FilesAreWrittenAtomicallyAndReadBack) {
  const std::string dir = MakeTempDir("atomic");
  const std::string path = dir + "/image.jpg";
  const std::string bytes = EncodeJpeg(Gradient(8, 8));
  ASSERT_TRUE(WriteFileAtomically(path, "old contents").ok());
  ASSERT_TRUE(WriteFileAtomically(path, bytes).ok());
  const absl::StatusOr<std::string> read = ReadFileBytes(path);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, bytes);
  int entries = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir)) ++entries;
  EXPECT_EQ(entries, 1);  // no temporary left behind
  EXPECT_TRUE(ReadImageFile(path).ok());
  const absl::StatusOr<Image> missing = ReadImageFile(dir + "/missing.png");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(WriteFileAtomically(dir + "/no/such/dir/file", "x").ok());
}

}  // namespace
}  // namespace ssl::data
