#include "ssl/data/deit_augment.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "ssl/data/transforms.h"
#include "ssl/data/views.h"

namespace ssl::data {
namespace {

// tools/make_randaugment_golden.py's fixed_image().
Image FixedImage() {
  Image image(20, 24);
  for (int y = 0; y < 20; ++y) {
    for (int x = 0; x < 24; ++x) {
      image.at(y, x, 0) = static_cast<uint8_t>((7 * x + 3 * y) % 256);
      image.at(y, x, 1) = static_cast<uint8_t>((x * y + 40) % 256);
      image.at(y, x, 2) = static_cast<uint8_t>(((200 - 5 * x + 9 * y) % 256 + 256) % 256);
    }
  }
  return image;
}

bool IsGeometric(RandAugmentOp op) {
  return op == RandAugmentOp::kRotate || op == RandAugmentOp::kShearX ||
         op == RandAugmentOp::kShearY || op == RandAugmentOp::kTranslateX ||
         op == RandAugmentOp::kTranslateY;
}

std::string GoldenPath(const std::string& file) {
  return std::string(std::getenv("TEST_SRCDIR")) + "/" + std::getenv("TEST_WORKSPACE") +
         "/ssl/data/testdata/" + file;
}

// Applies every op line of a golden file (tools/make_randaugment_golden.py, from PIL) at
// magnitude 9 and compares with PIL's bytes; returns the number of lines.
int CompareWithPil(const std::string& file, Interpolation interpolation) {
  std::ifstream golden(GoldenPath(file));
  EXPECT_TRUE(golden.good()) << file;
  RandAugmentOptions options;
  options.interpolation = interpolation;
  int lines = 0;
  for (std::string line; std::getline(golden, line);) {
    if (line.empty() || line[0] == '#') continue;  // the header says what wrote the file
    ++lines;
    std::istringstream in(line);
    std::string name;
    int negate;
    in >> name >> negate;
    int op_index = -1;
    for (int i = 0; i < kNumRandAugmentOps; ++i) {
      if (RandAugmentOpName(static_cast<RandAugmentOp>(i)) == name) op_index = i;
    }
    EXPECT_GE(op_index, 0) << name;
    if (op_index < 0) continue;
    const auto op = static_cast<RandAugmentOp>(op_index);
    Image image = FixedImage();
    ApplyRandAugmentOp(op, 9.0, negate != 0, options, image);
    int max_diff = 0, far = 0;
    double total_diff = 0;
    for (size_t i = 0; i < image.pixels.size(); ++i) {
      int expected = -1;
      in >> expected;
      const int diff = std::abs(expected - image.pixels[i]);
      max_diff = std::max(max_diff, diff);
      total_diff += diff;
      if (diff > 3) ++far;
    }
    const double mean_diff = total_diff / image.pixels.size();
    const std::string what = file + ": " + name + " " + std::to_string(negate);
    if (IsGeometric(op) && interpolation == Interpolation::kBicubic) {
      // PIL's own filter, step for step: equal bytes but where a product rounds the
      // other way across an integer.
      EXPECT_LE(max_diff, 1) << what;
      EXPECT_LT(mean_diff, 0.02) << what;
    } else if (IsGeometric(op)) {
      EXPECT_LT(mean_diff, 2.0) << what;
      EXPECT_LT(far, static_cast<int>(image.pixels.size() / 20)) << what;
    } else if (op == RandAugmentOp::kColor || op == RandAugmentOp::kContrast ||
               op == RandAugmentOp::kBrightness || op == RandAugmentOp::kSharpness) {
      EXPECT_LE(max_diff, 1) << what;
    } else {
      EXPECT_EQ(max_diff, 0) << what;
    }
  }
  return lines;
}

// Every op at magnitude 9, both signs, against PIL's output: lookup-table ops exactly,
// blends within one level (PIL rounds its fixed-point blend differently), geometric ops
// as bilinear resamplers agree away from the fill boundary.
TEST(RandAugmentTest, EveryOpMatchesPil) {
  EXPECT_EQ(CompareWithPil("randaugment_m9.txt", Interpolation::kBilinear), 2 * kNumRandAugmentOps);
}

// DeiT's geometric ops resample bicubically (PIL's transform filter, a = -1).
TEST(RandAugmentTest, BicubicGeometricOpsMatchPil) {
  EXPECT_EQ(CompareWithPil("randaugment_m9_bicubic.txt", Interpolation::kBicubic), 10);
}

// torchvision's resized_crop on PIL images, bilinear and bicubic (DeiT's crops and
// evaluation resize), shrinking and enlarging. PIL rounds to bytes after each pass;
// the pipeline keeps floats: half a level from the first pass, weighted by the second
// (bicubic's weights sum to 1 in absolute value only up to ~1.2), plus half a level,
// so within 1.1 levels, and half a level on average.
TEST(ResizedCropTest, MatchesPilBilinearAndBicubic) {
  std::ifstream golden(GoldenPath("resize.txt"));
  ASSERT_TRUE(golden.good());
  int lines = 0, bicubic_lines = 0;
  for (std::string line; std::getline(golden, line); ++lines) {
    std::istringstream in(line);
    std::string filter;
    CropBox box;
    int out_h, out_w;
    in >> filter >> box.top >> box.left >> box.height >> box.width >> out_h >> out_w;
    const std::optional<Interpolation> interpolation = ParseInterpolation(filter);
    ASSERT_TRUE(interpolation.has_value()) << filter;
    bicubic_lines += *interpolation == Interpolation::kBicubic;
    FloatImage out;
    ResizedCrop(FixedImage(), box, out_h, out_w, &out, *interpolation);
    double max_diff = 0, total = 0;
    for (int y = 0; y < out_h; ++y) {
      for (int x = 0; x < out_w; ++x) {
        for (int c = 0; c < 3; ++c) {
          int expected;
          ASSERT_TRUE(in >> expected) << line.substr(0, 40);
          const double diff =
              std::abs(out.plane(c)[static_cast<size_t>(y) * out_w + x] * 255.0 - expected);
          max_diff = std::max(max_diff, diff);
          total += diff;
        }
      }
    }
    EXPECT_LE(max_diff, 1.1) << line.substr(0, 40);
    EXPECT_LT(total / (3.0 * out_h * out_w), 0.5) << line.substr(0, 40);
  }
  EXPECT_EQ(lines, 8);
  EXPECT_EQ(bicubic_lines, 4);
  // The two filters differ where the image has detail: bicubic is not bilinear renamed.
  FloatImage bilinear, bicubic;
  ResizedCrop(FixedImage(), {0, 0, 20, 24}, 9, 11, &bilinear, Interpolation::kBilinear);
  ResizedCrop(FixedImage(), {0, 0, 20, 24}, 9, 11, &bicubic, Interpolation::kBicubic);
  float largest = 0;
  for (int c = 0; c < 3; ++c) {
    for (size_t i = 0; i < bilinear.plane_size(); ++i) {
      largest = std::max(largest, std::abs(bilinear.plane(c)[i] - bicubic.plane(c)[i]));
    }
  }
  EXPECT_GT(largest * 255, 5);
}

TEST(RandAugmentTest, ParsesTimmConfigStrings) {
  absl::StatusOr<RandAugmentOptions> options = ParseRandAugment("rand-m9-mstd0.5-inc1");
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->num_ops, 2);
  EXPECT_EQ(options->magnitude, 9);
  EXPECT_EQ(options->magnitude_std, 0.5);
  EXPECT_EQ(options->op_probability, 0.5);
  options = ParseRandAugment("rand-m7-n3-p1.0-inc1");
  ASSERT_TRUE(options.ok());
  EXPECT_EQ(options->num_ops, 3);
  EXPECT_EQ(options->magnitude, 7);
  EXPECT_EQ(options->op_probability, 1.0);
  EXPECT_EQ(ParseRandAugment("rand-m9-inc0").status().message(),
            "RandAugment config \"rand-m9-inc0\": cannot use \"inc0\" (known: m<0..10>, "
            "mstd<std>, n<ops>, p<prob>, inc1)");
  EXPECT_FALSE(ParseRandAugment("original-mstd0.5").ok());
  EXPECT_FALSE(ParseRandAugment("rand-m11").ok());
}

TEST(RandAugmentTest, OpsApplyWithTheirProbability) {
  RandAugmentOptions never;
  never.op_probability = 0;
  Rng rng(1);
  Image image = FixedImage();
  RandAugment(image, never, rng);
  EXPECT_EQ(image.pixels, FixedImage().pixels);
  // With p = 0.5 and two ops, about a quarter of the images stay untouched (a chosen op
  // can also be the identity at this magnitude only by chance, which is rare here).
  RandAugmentOptions options;
  int unchanged = 0;
  const int trials = 2000;
  for (int t = 0; t < trials; ++t) {
    Rng draw(t);
    Image copy = FixedImage();
    RandAugment(copy, options, draw);
    if (copy.pixels == FixedImage().pixels) ++unchanged;
  }
  EXPECT_NEAR(unchanged / static_cast<double>(trials), 0.25, 0.04);
}

TEST(RandomErasingTest, ErasesOneBoxOfTheDrawnSizeAtItsRate) {
  const int h = 32, w = 32, trials = 4000;
  RandomErasingOptions options;  // p 0.25, area [0.02, 1/3], aspect [0.3, 3.3]
  int erased = 0;
  double sum = 0, sum_sq = 0;
  int64_t count = 0;
  for (int t = 0; t < trials; ++t) {
    std::vector<float> image(3 * h * w, 100.0f);  // a value N(0, 1) never produces
    Rng rng(t);
    RandomErasing(image.data(), h, w, options, rng);
    int64_t changed = 0;
    for (float v : image) {
      if (v != 100.0f) {
        ++changed;
        sum += v;
        sum_sq += v * v;
      }
    }
    if (changed == 0) continue;
    ++erased;
    ASSERT_EQ(changed % 3, 0);  // the same box in every channel
    const double fraction = changed / 3.0 / (h * w);
    EXPECT_GE(fraction, 0.015);
    EXPECT_LE(fraction, 0.40);
    count += changed;
  }
  EXPECT_NEAR(erased / static_cast<double>(trials), 0.25, 0.03);
  const double mean = sum / count;
  EXPECT_NEAR(mean, 0.0, 0.02);
  EXPECT_NEAR(sum_sq / count - mean * mean, 1.0, 0.03);
}

TEST(BetaTest, MomentsMatchTheDistribution) {
  Rng rng(5);
  for (const auto& [a, b] : {std::pair{0.8, 0.8}, std::pair{1.0, 1.0}, std::pair{2.0, 5.0}}) {
    double sum = 0, sum_sq = 0;
    const int n = 40000;
    for (int i = 0; i < n; ++i) {
      const double x = rng.Beta(a, b);
      ASSERT_GE(x, 0);
      ASSERT_LE(x, 1);
      sum += x;
      sum_sq += x * x;
    }
    const double mean = sum / n, var = sum_sq / n - mean * mean;
    EXPECT_NEAR(mean, a / (a + b), 0.01) << a << "," << b;
    EXPECT_NEAR(var, a * b / ((a + b) * (a + b) * (a + b + 1)), 0.005) << a << "," << b;
  }
}

TEST(DeitViewsTest, AugmentViewIsDeterministicAndValidated) {
  const ViewRecipe recipe = DeitTrainViews(16, RandAugmentOptions(), true, 0.25);
  ASSERT_TRUE(recipe.Validate().ok());
  Image image = FixedImage();
  FloatImage scratch;
  std::vector<float> a(3 * 16 * 16), b(3 * 16 * 16);
  Rng rng_a(9), rng_b(9);
  AugmentView(image, recipe.groups[0].augmentation, rng_a, &scratch, a.data());
  AugmentView(image, recipe.groups[0].augmentation, rng_b, &scratch, b.data());
  EXPECT_EQ(a, b);
  ViewRecipe bad = recipe;
  bad.groups[0].augmentation.erase_probability = 1.5;
  EXPECT_EQ(bad.Validate().message(), "crop group 0: erase probability must be in [0, 1], got 1.5");
}

}  // namespace
}  // namespace ssl::data
