// Exercises each system library through its //third_party alias with a real call whose
// result is checked, so a broken wiring or a wrong library version fails here first.
#include <ATen/Functions.h>
#include <ATen/core/Tensor.h>
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <gtest/gtest.h>
#include <jpeglib.h>

#include <chrono>
#include <cstdio>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace {

TEST(ThirdPartyTest, TorchMatmulMatchesHandComputation) {
  at::Tensor a = at::tensor({1.0f, 2.0f, 3.0f, 4.0f}).reshape({2, 2});
  at::Tensor b = at::tensor({5.0f, 6.0f, 7.0f, 8.0f}).reshape({2, 2});
  at::Tensor c = at::matmul(a, b);
  EXPECT_FLOAT_EQ(c[0][0].item<float>(), 19.0f);
  EXPECT_FLOAT_EQ(c[0][1].item<float>(), 22.0f);
  EXPECT_FLOAT_EQ(c[1][0].item<float>(), 43.0f);
  EXPECT_FLOAT_EQ(c[1][1].item<float>(), 50.0f);
}

// The reference BLAS runs a 1024^2 matmul at ~3 GFLOP/s on these machines, OpenBLAS at
// >100; 15 GFLOP/s separates them with a wide margin even on a loaded machine.
TEST(ThirdPartyTest, TorchUsesAnOptimizedBlas) {
  at::Tensor a = at::rand({1024, 1024});
  at::Tensor b = at::rand({1024, 1024});
  at::matmul(a, b);  // warm-up
  const auto start = std::chrono::steady_clock::now();
  constexpr int kRepeats = 4;
  for (int i = 0; i < kRepeats; ++i) at::matmul(a, b);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double gflops = kRepeats * 2.0 * 1024 * 1024 * 1024 / seconds / 1e9;
  EXPECT_GT(gflops, 15.0) << "LibTorch matmul is slow: run tools/setup.sh, which "
                             "selects OpenBLAS as libblas.so.3";
}

TEST(ThirdPartyTest, OpencvPngRoundTrip) {
  cv::Mat image(4, 5, CV_8UC3);
  for (int i = 0; i < image.rows * image.cols * 3; ++i) image.data[i] = i * 3;
  std::vector<uchar> png;
  ASSERT_TRUE(cv::imencode(".png", image, png));
  cv::Mat decoded = cv::imdecode(png, cv::IMREAD_COLOR);
  ASSERT_EQ(decoded.rows, 4);
  ASSERT_EQ(decoded.cols, 5);
  EXPECT_EQ(cv::norm(image, decoded, cv::NORM_INF), 0.0);
}

TEST(ThirdPartyTest, LibjpegReportsItsVersion) {
  jpeg_decompress_struct cinfo;
  jpeg_error_mgr jerr;
  cinfo.err = jpeg_std_error(&jerr);
  jpeg_create_decompress(&cinfo);
  EXPECT_EQ(cinfo.global_state, 200);  // DSTATE_START
  jpeg_destroy_decompress(&cinfo);
  EXPECT_GE(JPEG_LIB_VERSION, 62);
}

TEST(ThirdPartyTest, AbslAndGlog) {
  absl::StatusOr<int> value = absl::InvalidArgumentError("bad");
  EXPECT_FALSE(value.ok());
  EXPECT_EQ(absl::StrCat("a", 1, "b"), "a1b");
  EXPECT_EQ(google::GetLogSeverityName(google::GLOG_WARNING), std::string("WARNING"));
  EXPECT_FALSE(gflags::GetArgv0() == nullptr);
}

}  // namespace
