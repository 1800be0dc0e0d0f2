#include "ssl/data/image_io.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <vector>

#include "ssl/core/file.h"
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

TEST(ImageIoTest, TruncatedPngIsRefusedBeforeLibpngSeesIt) {
  const std::string full = EncodePng(testing::RandomImage(17, 23, 9));
  for (size_t keep : {full.size() - 1, full.size() / 2, size_t{40}}) {
    EXPECT_EQ(std::string(DecodeImage(full.substr(0, keep), "cut.png").status().message()),
              "PNG cut.png is truncated")
        << keep;
  }
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

// A small file whose header claims 60000 x 60000 pixels (10.8 GB decoded).
std::string JpegClaiming(int height, int width) {
  std::string jpeg = EncodeJpeg(Gradient(16, 16));
  const size_t sof = jpeg.find("\xFF\xC0");
  EXPECT_NE(sof, std::string::npos);
  jpeg[sof + 5] = static_cast<char>(height >> 8);
  jpeg[sof + 6] = static_cast<char>(height & 0xFF);
  jpeg[sof + 7] = static_cast<char>(width >> 8);
  jpeg[sof + 8] = static_cast<char>(width & 0xFF);
  return jpeg;
}

TEST(ImageIoTest, DecompressionBombsAreRefusedFromTheHeader) {
  EXPECT_EQ(MaxImagePixels(), kDefaultMaxImagePixels);
  const absl::StatusOr<Image> jpeg = DecodeImage(JpegClaiming(60000, 60000), "bomb.jpg");
  ASSERT_FALSE(jpeg.ok());
  EXPECT_EQ(jpeg.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(jpeg.status().message(),
            "JPEG bomb.jpg claims 60000 x 60000 pixels, more than the limit of 178956970 "
            "(--max_image_pixels); refused before decoding");

  std::string png = EncodePng(Gradient(16, 16));
  for (int i = 16; i < 24; ++i) png[i] = (i == 17 || i == 21) ? 0x01 : 0x00;  // 65536 x 65536
  const absl::StatusOr<Image> png_bomb = DecodeImage(png, "bomb.png");
  ASSERT_FALSE(png_bomb.ok());
  EXPECT_NE(png_bomb.status().message().find("PNG bomb.png claims 65536 x 65536 pixels"),
            std::string_view::npos)
      << png_bomb.status();

  std::vector<uint8_t> bmp;
  cv::imencode(".bmp", cv::Mat(8, 8, CV_8UC3, cv::Scalar(1, 2, 3)), bmp);
  std::string bmp_bomb(bmp.begin(), bmp.end());
  bmp_bomb[20] = 0x01;  // width 8 + 65536
  bmp_bomb[24] = 0x01;  // height 8 + 65536
  const absl::StatusOr<Image> bmp_decoded = DecodeImage(bmp_bomb, "bomb.bmp");
  ASSERT_FALSE(bmp_decoded.ok());
  EXPECT_NE(bmp_decoded.status().message().find("BMP bomb.bmp claims 65544 x 65544 pixels"),
            std::string_view::npos)
      << bmp_decoded.status();
  EXPECT_TRUE(DecodeImage(std::string(bmp.begin(), bmp.end()), "fine.bmp").ok());
}

// Resident memory of this process, in MiB.
double ResidentMiB() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * (sysconf(_SC_PAGESIZE) / 1048576.0);
}

TEST(ImageIoTest, CorruptJpegsLeakNothing) {
  // A JPEG whose scan decodes fully but which has a second SOF marker after it: libjpeg
  // fails in jpeg_finish_decompress, after the pixels are allocated. Its longjmp used to
  // leak that buffer (3 MiB here) on every such file (the fuzzer found the leak).
  Image image(1024, 1024);
  for (size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = static_cast<uint8_t>(i * 31);
  std::string jpeg = EncodeJpeg(image, 75);
  const size_t sof = jpeg.find("\xff\xc0");
  ASSERT_NE(sof, std::string::npos);
  const size_t sof_length =
      (static_cast<uint8_t>(jpeg[sof + 2]) << 8 | static_cast<uint8_t>(jpeg[sof + 3])) + 2;
  jpeg.insert(jpeg.size() - 2, jpeg.substr(sof, sof_length));  // before EOI
  const absl::StatusOr<Image> first = DecodeImage(jpeg, "two_sof.jpg");
  ASSERT_FALSE(first.ok());
  const double before = ResidentMiB();
  for (int i = 0; i < 100; ++i) ASSERT_FALSE(DecodeImage(jpeg, "two_sof.jpg").ok());
  EXPECT_LT(ResidentMiB() - before, 60.0) << first.status();
}

TEST(ImageIoTest, ThePixelLimitIsAdjustable) {
  SetMaxImagePixels(16 * 16);
  EXPECT_TRUE(DecodeImage(EncodeJpeg(Gradient(16, 16)), "at.jpg").ok());
  EXPECT_FALSE(DecodeImage(EncodeJpeg(Gradient(16, 17)), "over.jpg").ok());
  EXPECT_FALSE(DecodeImage(EncodePng(Gradient(17, 16)), "over.png").ok());
  EXPECT_TRUE(DecodeImage(EncodePng(Gradient(8, 8)), "under.png").ok());
  SetMaxImagePixels(kDefaultMaxImagePixels);
}

// The file helpers themselves are tested in ssl/core/core_test.cc.
TEST(ImageIoTest, ImageFilesAreReadAndAMissingOneIsNotFound) {
  const std::string dir = MakeTempDir("atomic");
  const std::string path = dir + "/image.jpg";
  ASSERT_TRUE(WriteFileAtomically(path, EncodeJpeg(Gradient(8, 8))).ok());
  EXPECT_TRUE(ReadImageFile(path).ok());
  const absl::StatusOr<Image> missing = ReadImageFile(dir + "/missing.png");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace ssl::data
