// Each transform is checked against a hand-computed case or an independent reference
// written here in the plainest form (double precision, no separability tricks), and the
// random parameter draws against their intended distributions.
#include "ssl/data/transforms.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ssl/data/test_util.h"
#include "ssl/data/views.h"

namespace ssl::data {
namespace {

using testing::RandomImage;

// Triangle-filter weights of PIL's bilinear resize over a span of `in` pixels.
std::vector<double> ReferenceWeights(int in, int out, int index) {
  const double scale = static_cast<double>(in) / out;
  const double filter_scale = std::max(1.0, scale);
  const double center = (index + 0.5) * scale;
  std::vector<double> w(in);
  double total = 0;
  for (int j = 0; j < in; ++j) {
    w[j] = std::max(0.0, 1.0 - std::abs((j + 0.5 - center) / filter_scale));
    total += w[j];
  }
  for (double& v : w) v /= total;
  return w;
}

// Resized crop computed as one 2-D weighted sum per output pixel.
FloatImage ReferenceResizedCrop(const Image& src, const CropBox& box, int out_h, int out_w) {
  FloatImage out(out_h, out_w);
  for (int y = 0; y < out_h; ++y) {
    const std::vector<double> wy = ReferenceWeights(box.height, out_h, y);
    for (int x = 0; x < out_w; ++x) {
      const std::vector<double> wx = ReferenceWeights(box.width, out_w, x);
      for (int c = 0; c < 3; ++c) {
        double acc = 0;
        for (int i = 0; i < box.height; ++i) {
          if (wy[i] == 0) continue;
          for (int j = 0; j < box.width; ++j) {
            acc += wy[i] * wx[j] * src.at(box.top + i, box.left + j, c);
          }
        }
        out.at(c, y, x) = static_cast<float>(acc / 255.0);
      }
    }
  }
  return out;
}

void ExpectImagesNear(const FloatImage& actual, const FloatImage& expected, float tolerance) {
  ASSERT_EQ(actual.height, expected.height);
  ASSERT_EQ(actual.width, expected.width);
  for (size_t i = 0; i < actual.data.size(); ++i) {
    ASSERT_NEAR(actual.data[i], expected.data[i], tolerance) << "at flat index " << i;
  }
}

FloatImage Pixels(std::vector<std::array<float, 3>> rgb) {
  FloatImage image(1, static_cast<int>(rgb.size()));
  for (size_t i = 0; i < rgb.size(); ++i) {
    for (int c = 0; c < 3; ++c) image.at(c, 0, static_cast<int>(i)) = rgb[i][c];
  }
  return image;
}

TEST(ResizedCropTest, SameSizeWholeImageIsExactlyTheInput) {
  const Image src = RandomImage(9, 7, 1);
  FloatImage out;
  ResizedCrop(src, {0, 0, 9, 7}, 9, 7, &out);
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < 9; ++y) {
      for (int x = 0; x < 7; ++x) ASSERT_FLOAT_EQ(out.at(c, y, x), src.at(y, x, c) / 255.0f);
    }
  }
}

TEST(ResizedCropTest, HalvingARampUsesTheWidenedTriangle) {
  // 1 x 4 ramp 0, 40, 80, 120 -> width 2. Output 0: centre 1, support 2, taps 0..2 with
  // raw weights 0.75, 0.75, 0.25 (normalised by 1.75): (0 + 30 + 20) / 1.75.
  Image src(1, 4);
  for (int x = 0; x < 4; ++x) {
    for (int c = 0; c < 3; ++c) src.at(0, x, c) = static_cast<uint8_t>(40 * x);
  }
  FloatImage out;
  ResizedCrop(src, {0, 0, 1, 4}, 1, 2, &out);
  EXPECT_NEAR(out.at(0, 0, 0) * 255, 50.0 / 1.75, 1e-3);
  // Output 1: centre 3, taps 1..3 with raw weights 0.25, 0.75, 0.75.
  EXPECT_NEAR(out.at(1, 0, 1) * 255, (0.25 * 40 + 0.75 * 80 + 0.75 * 120) / 1.75, 1e-3);
}

TEST(ResizedCropTest, MatchesTheDirectTwoDimensionalReference) {
  const Image src = RandomImage(40, 50, 2);
  const CropBox boxes[] = {{3, 5, 30, 20}, {0, 0, 40, 50}, {10, 12, 7, 9}, {1, 2, 37, 45}};
  const int sizes[][2] = {{16, 16}, {24, 11}, {32, 32}, {13, 29}};  // down, mixed, up
  for (const CropBox& box : boxes) {
    for (const auto& size : sizes) {
      FloatImage out;
      ResizedCrop(src, box, size[0], size[1], &out);
      ExpectImagesNear(out, ReferenceResizedCrop(src, box, size[0], size[1]), 2e-5f);
    }
  }
}

TEST(ResizeShortSideCenterCropTest, MatchesResizeThenSlice) {
  const Image src = RandomImage(50, 30, 3);  // portrait: width is the short side
  FloatImage out;
  ResizeShortSideCenterCrop(src, 24, 20, &out);
  // Short side 30 -> 24, long 50 -> int(24 * 50 / 30) = 40; crop top round(20/2) = 10,
  // left round(4/2) = 2.
  const FloatImage full = ReferenceResizedCrop(src, {0, 0, 50, 30}, 40, 24);
  ASSERT_EQ(out.height, 20);
  ASSERT_EQ(out.width, 20);
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < 20; ++y) {
      for (int x = 0; x < 20; ++x) ASSERT_NEAR(out.at(c, y, x), full.at(c, y + 10, x + 2), 2e-5f);
    }
  }
}

TEST(SampleResizedCropBoxTest, FallsBackToARatioClampedCenterCrop) {
  // A 100 x 10 strip cannot hold any crop of at least 90% area with ratio in [3/4, 4/3]:
  // fallback w = 10, h = round(10 / 0.75) = 13, top = (100 - 13) / 2 = 43.
  Rng rng(1);
  const CropBox box = SampleResizedCropBox(100, 10, 0.9, 1.0, 3.0 / 4, 4.0 / 3, rng);
  EXPECT_EQ(box.top, 43);
  EXPECT_EQ(box.left, 0);
  EXPECT_EQ(box.height, 13);
  EXPECT_EQ(box.width, 10);
}

TEST(SampleResizedCropBoxTest, AreaAndAspectFollowTheirDistributions) {
  Rng rng(7);
  constexpr int kDraws = 20000;
  const int height = 400, width = 400;
  double area_sum = 0, log_aspect_sum = 0;
  int left_half = 0;
  for (int i = 0; i < kDraws; ++i) {
    const CropBox b = SampleResizedCropBox(height, width, 0.2, 0.6, 3.0 / 4, 4.0 / 3, rng);
    ASSERT_GE(b.top, 0);
    ASSERT_GE(b.left, 0);
    ASSERT_LE(b.top + b.height, height);
    ASSERT_LE(b.left + b.width, width);
    const double fraction = static_cast<double>(b.height) * b.width / (height * width);
    ASSERT_GT(fraction, 0.19);
    ASSERT_LT(fraction, 0.61);
    const double log_aspect = std::log(static_cast<double>(b.width) / b.height);
    ASSERT_LE(std::abs(log_aspect), std::log(4.0 / 3) + 0.02);
    area_sum += fraction;
    log_aspect_sum += log_aspect;
    left_half += (b.left + b.width / 2.0) < width / 2.0;
  }
  // Every draw fits, so the area fraction is U(0.2, 0.6) (mean 0.4, sd of mean ~0.0008)
  // and log aspect is symmetric around 0; positions are uniform, so centres split evenly.
  EXPECT_NEAR(area_sum / kDraws, 0.4, 0.004);
  EXPECT_NEAR(log_aspect_sum / kDraws, 0.0, 0.004);
  EXPECT_NEAR(left_half, kDraws / 2, 5 * std::sqrt(kDraws / 4.0));
}

TEST(ColorTest, BrightnessScalesAndClamps) {
  FloatImage image = Pixels({{0.2f, 0.5f, 0.8f}});
  AdjustBrightness(image, 1.5f);
  EXPECT_FLOAT_EQ(image.at(0, 0, 0), 0.3f);
  EXPECT_FLOAT_EQ(image.at(1, 0, 0), 0.75f);
  EXPECT_FLOAT_EQ(image.at(2, 0, 0), 1.0f);  // 1.2 clamped
}

TEST(ColorTest, ContrastBlendsWithTheMeanLuma) {
  // Lumas: white 1.0, black 0.0 -> mean 0.5; factor 0.5 maps x to 0.5 x + 0.25.
  FloatImage image = Pixels({{1, 1, 1}, {0, 0, 0}});
  AdjustContrast(image, 0.5f);
  EXPECT_NEAR(image.at(0, 0, 0), 0.75f, 1e-6);
  EXPECT_NEAR(image.at(2, 0, 1), 0.25f, 1e-6);
}

TEST(ColorTest, SaturationBlendsWithThePixelLuma) {
  // Red's luma is 0.299; factor 0 gives pure gray, factor 2 overshoots and clamps.
  FloatImage gray = Pixels({{1, 0, 0}});
  AdjustSaturation(gray, 0.0f);
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(gray.at(c, 0, 0), 0.299f, 1e-6);
  FloatImage vivid = Pixels({{0.6f, 0.4f, 0.4f}});  // luma 0.4598
  AdjustSaturation(vivid, 2.0f);
  EXPECT_NEAR(vivid.at(0, 0, 0), 2 * 0.6f - 0.4598f, 1e-5);
  EXPECT_NEAR(vivid.at(1, 0, 0), 2 * 0.4f - 0.4598f, 1e-5);
}

// torchvision's _rgb2hsv / _hsv2rgb for one pixel, written plainly (a switch on the
// sector): the vectorized AdjustHue must match it bit for bit.
void HueReference(float& r, float& g, float& b, float hue_shift) {
  const float maxc = std::max({r, g, b}), minc = std::min({r, g, b});
  const float chroma = maxc - minc;
  if (chroma == 0) return;
  const float s = chroma / maxc;
  const float rc = (maxc - r) / chroma, gc = (maxc - g) / chroma, bc = (maxc - b) / chroma;
  float h = maxc == r ? bc - gc : maxc == g ? 2.0f + rc - bc : 4.0f + gc - rc;
  h = h / 6.0f + hue_shift;
  if (h < 0.0f) h += 1.0f;
  if (h < 0.0f) h += 1.0f;
  if (h >= 1.0f) h -= 1.0f;
  const float v = maxc, h6 = h * 6.0f;
  const int sector = std::min(static_cast<int>(h6), 5);
  const float f = h6 - sector;
  auto clamp = [](float x) { return std::min(1.0f, std::max(0.0f, x)); };
  const float p = clamp(v * (1.0f - s)), q = clamp(v * (1.0f - s * f)),
              t = clamp(v * (1.0f - s * (1.0f - f)));
  const float table[6][3] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
  r = table[sector][0];
  g = table[sector][1];
  b = table[sector][2];
}

TEST(ColorTest, VectorizedHueEqualsThePerPixelFormulaBitwise) {
  // Random colours plus the ties and edges: grays, black, white, r == g maxima, 1 - eps.
  FloatImage image(37, 29);  // an odd pixel count leaves a vector remainder
  Rng rng = Rng::ForSample(5, 0, 0, 0);
  for (float& v : image.data) v = static_cast<float>(rng.Uniform(0, 1));
  const float specials[][3] = {{0, 0, 0}, {1, 1, 1}, {0.5f, 0.5f, 0.5f}, {0.7f, 0.7f, 0.2f},
                               {0.3f, 0.9f, 0.9f}, {0.9f, 0.1f, 0.9f}, {1, 0, 0},
                               {0.99999994f, 0.5f, 0}};
  for (int k = 0; k < 8; ++k) {
    for (int c = 0; c < 3; ++c) image.plane(c)[k] = specials[k][c];
  }
  for (float shift : {-0.5f, -0.31f, -0.01f, 0.0f, 0.07f, 0.25f, 0.5f}) {
    FloatImage fast = image, slow = image;
    AdjustHue(fast, shift);
    for (size_t i = 0; i < image.plane_size(); ++i) {
      HueReference(slow.plane(0)[i], slow.plane(1)[i], slow.plane(2)[i], shift);
    }
    for (size_t i = 0; i < fast.data.size(); ++i) {
      ASSERT_EQ(fast.data[i], slow.data[i]) << "shift " << shift << " element " << i;
    }
  }
}

TEST(ColorTest, HueRotatesInHsvSpace) {
  FloatImage image = Pixels({{1, 0, 0}, {1, 0, 0}, {0.2f, 0.4f, 0.6f}, {0.5f, 0.5f, 0.5f}});
  FloatImage third = image, half = image;
  AdjustHue(third, 1.0f / 3);
  EXPECT_NEAR(third.at(0, 0, 0), 0, 1e-5);  // red -> green
  EXPECT_NEAR(third.at(1, 0, 0), 1, 1e-5);
  EXPECT_NEAR(third.at(2, 0, 0), 0, 1e-5);
  AdjustHue(half, -0.5f);  // red -> cyan
  EXPECT_NEAR(half.at(0, 0, 1), 0, 1e-5);
  EXPECT_NEAR(half.at(1, 0, 1), 1, 1e-5);
  EXPECT_NEAR(half.at(2, 0, 1), 1, 1e-5);
  // (0.2, 0.4, 0.6): h = 210 deg, s = 2/3, v = 0.6. +0.1 turn -> 246 deg, sector 4,
  // f = 0.1: (t, p, v) = (0.6 (1 - 2/3 * 0.9), 0.6 / 3, 0.6) = (0.24, 0.2, 0.6).
  FloatImage shifted = image;
  AdjustHue(shifted, 0.1f);
  EXPECT_NEAR(shifted.at(0, 0, 2), 0.24f, 1e-5);
  EXPECT_NEAR(shifted.at(1, 0, 2), 0.2f, 1e-5);
  EXPECT_NEAR(shifted.at(2, 0, 2), 0.6f, 1e-5);
  for (int c = 0; c < 3; ++c) EXPECT_FLOAT_EQ(shifted.at(c, 0, 3), 0.5f);  // gray fixed
}

TEST(ColorTest, GrayscaleSolarizeFlipNormalize) {
  FloatImage image = Pixels({{1, 0, 0}, {0.2f, 0.6f, 128.0f / 255}});
  FloatImage gray = image;
  ToGrayscale(gray);
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(gray.at(c, 0, 0), 0.299f, 1e-6);
  FloatImage solarized = image;
  Solarize(solarized);
  EXPECT_FLOAT_EQ(solarized.at(0, 0, 1), 0.2f);          // below threshold: kept
  EXPECT_FLOAT_EQ(solarized.at(1, 0, 1), 0.4f);          // 0.6 -> 0.4
  EXPECT_FLOAT_EQ(solarized.at(2, 0, 1), 127.0f / 255);  // 128 -> 127
  EXPECT_FLOAT_EQ(solarized.at(0, 0, 0), 0.0f);          // 1 -> 0
  FloatImage flipped = image;
  HorizontalFlip(flipped);
  EXPECT_FLOAT_EQ(flipped.at(0, 0, 0), 0.2f);
  EXPECT_FLOAT_EQ(flipped.at(0, 0, 1), 1.0f);
  std::vector<float> normalized(6);
  Normalize(image, kImagenetMean, kImagenetStd, normalized.data());
  EXPECT_NEAR(normalized[0], (1 - 0.485f) / 0.229f, 1e-5);     // R of pixel 0
  EXPECT_NEAR(normalized[3], (0.6f - 0.456f) / 0.224f, 1e-5);  // G of pixel 1
}

TEST(BlurTest, ImpulseResponseIsTheSampledGaussian) {
  constexpr int kSize = 21;
  const float sigma = 1.3f;
  FloatImage image(kSize, kSize);
  std::fill(image.data.begin(), image.data.end(), 0.0f);
  for (int c = 0; c < 3; ++c) image.at(c, 10, 10) = 1.0f;
  GaussianBlur(image, sigma);
  const int radius = static_cast<int>(std::ceil(3 * sigma));  // 4
  double norm = 0;
  for (int k = -radius; k <= radius; ++k) norm += std::exp(-k * k / (2.0 * sigma * sigma));
  double total = 0;
  for (int y = 0; y < kSize; ++y) {
    for (int x = 0; x < kSize; ++x) {
      const int dy = y - 10, dx = x - 10;
      const double expected =
          (std::abs(dy) <= radius && std::abs(dx) <= radius)
              ? std::exp(-(dx * dx + dy * dy) / (2.0 * sigma * sigma)) / (norm * norm)
              : 0.0;
      ASSERT_NEAR(image.at(1, y, x), expected, 1e-6) << y << "," << x;
      total += image.at(1, y, x);
    }
  }
  EXPECT_NEAR(total, 1.0, 1e-5);
}

TEST(BlurTest, ConstantImageIsUnchangedEvenAtReflectedBorders) {
  FloatImage image(6, 9);
  std::fill(image.data.begin(), image.data.end(), 0.37f);
  GaussianBlur(image, 2.0f);  // radius 6 > height: clamped to 5
  for (float v : image.data) EXPECT_NEAR(v, 0.37f, 1e-6);
}

TEST(ColorJitterTest, DrawsFollowTorchvisionRanges) {
  Rng rng(3);
  const ColorJitterStrength strength{0.4f, 0.4f, 0.2f, 0.1f};
  constexpr int kDraws = 20000;
  double brightness_sum = 0, hue_sum = 0, hue_abs_sum = 0;
  std::array<int, 4> first_op{};
  for (int i = 0; i < kDraws; ++i) {
    const ColorJitterDraw d = SampleColorJitter(strength, rng);
    ASSERT_GE(d.brightness, 0.6f);
    ASSERT_LE(d.brightness, 1.4f);
    ASSERT_GE(d.saturation, 0.8f);
    ASSERT_LE(d.saturation, 1.2f);
    ASSERT_LE(std::abs(d.hue), 0.1f);
    std::array<int, 4> sorted = d.order;
    std::sort(sorted.begin(), sorted.end());
    ASSERT_EQ(sorted, (std::array<int, 4>{0, 1, 2, 3}));
    brightness_sum += d.brightness;
    hue_sum += d.hue;
    hue_abs_sum += std::abs(d.hue);
    ++first_op[d.order[0]];
  }
  EXPECT_NEAR(brightness_sum / kDraws, 1.0, 0.005);
  EXPECT_NEAR(hue_sum / kDraws, 0.0, 0.002);
  EXPECT_NEAR(hue_abs_sum / kDraws, 0.05, 0.002);  // E|U(-h, h)| = h / 2
  for (int count : first_op) EXPECT_NEAR(count, kDraws / 4, 5 * std::sqrt(kDraws * 0.1875));
  // Strength above 1 clamps the lower bound at 0, as torchvision does.
  const ColorJitterDraw strong = SampleColorJitter({1.5f, 0, 0, 0}, rng);
  EXPECT_GE(strong.brightness, 0.0f);
  EXPECT_EQ(strong.contrast, 1.0f);
  EXPECT_EQ(strong.hue, 0.0f);
}

TEST(ColorJitterTest, AppliesOpsInTheDrawnOrder) {
  // Brightness 2 then contrast 0 gives the mean of the brightened image; the reverse
  // gives twice the mean. Pixels 0.1 and 0.3 (gray).
  FloatImage a = Pixels({{0.1f, 0.1f, 0.1f}, {0.3f, 0.3f, 0.3f}}), b = a;
  ColorJitterDraw draw;
  draw.brightness = 2.0f;
  draw.contrast = 0.0f;
  draw.order = {0, 1, 2, 3};
  ApplyColorJitter(a, draw);
  EXPECT_NEAR(a.at(0, 0, 0), 0.4f, 1e-6);
  draw.order = {1, 0, 2, 3};
  ApplyColorJitter(b, draw);
  EXPECT_NEAR(b.at(0, 0, 0), 0.4f, 1e-6);
  draw.brightness = 4.0f;  // now clamping tells the orders apart: 0.4, 1.2 -> 1.0
  FloatImage c = Pixels({{0.1f, 0.1f, 0.1f}, {0.3f, 0.3f, 0.3f}}), d = c;
  draw.order = {0, 1, 2, 3};
  ApplyColorJitter(c, draw);
  EXPECT_NEAR(c.at(0, 0, 0), 0.7f, 1e-6);  // mean(0.4, 1.0)
  draw.order = {1, 0, 2, 3};
  ApplyColorJitter(d, draw);
  EXPECT_NEAR(d.at(0, 0, 0), 0.8f, 1e-6);  // 4 * mean(0.1, 0.3)
}

TEST(ViewRecipeTest, MocoV3RecipeMatchesMainMoco) {
  const ViewRecipe recipe = MocoV3Views(224, 0.2);
  ASSERT_TRUE(recipe.Validate().ok());
  ASSERT_EQ(recipe.NumViews(), 2);
  const CropAugmentation& v1 = recipe.groups[0].augmentation;
  const CropAugmentation& v2 = recipe.groups[1].augmentation;
  EXPECT_EQ(v1.size, 224);
  EXPECT_DOUBLE_EQ(v1.scale_min, 0.2);
  EXPECT_DOUBLE_EQ(v1.jitter_probability, 0.8);
  EXPECT_FLOAT_EQ(v1.jitter.brightness, 0.4f);
  EXPECT_FLOAT_EQ(v1.jitter.saturation, 0.2f);
  EXPECT_FLOAT_EQ(v1.jitter.hue, 0.1f);
  EXPECT_DOUBLE_EQ(v1.grayscale_probability, 0.2);
  EXPECT_DOUBLE_EQ(v1.blur_probability, 1.0);
  EXPECT_DOUBLE_EQ(v1.solarize_probability, 0.0);
  EXPECT_DOUBLE_EQ(v2.blur_probability, 0.1);
  EXPECT_DOUBLE_EQ(v2.solarize_probability, 0.2);
  EXPECT_FALSE(v2.solarize_after_flip);
  const ViewRecipe byol = ByolViews();
  EXPECT_TRUE(byol.groups[0].augmentation.blur_before_grayscale);
  EXPECT_TRUE(byol.groups[1].augmentation.solarize_after_flip);
}

TEST(ViewRecipeTest, ValidateNamesTheBadValue) {
  ViewRecipe recipe = MocoV3Views();
  recipe.groups[1].augmentation.blur_probability = 1.5;
  EXPECT_EQ(recipe.Validate().message(),
            "crop group 1: blur probability must be in [0, 1], got 1.5");
  MultiCropOptions options;
  options.sizes = {224};  // counts has two entries
  EXPECT_FALSE(MultiCropViews(options).Validate().ok());
  EXPECT_EQ(MultiCropViews(MultiCropOptions{}).NumViews(), 8);
}

TEST(AugmentViewTest, IsAFunctionOfTheGeneratorAndProbabilitiesShowUp) {
  const Image src = RandomImage(48, 64, 4);
  const CropAugmentation v2 = MocoV3Views(32, 0.2).groups[1].augmentation;
  FloatImage scratch;
  std::vector<float> a(3 * 32 * 32), b(3 * 32 * 32);
  Rng r1 = Rng::ForSample(1, 0, 5, 1), r2 = Rng::ForSample(1, 0, 5, 1);
  AugmentView(src, v2, r1, &scratch, a.data());
  AugmentView(src, v2, r2, &scratch, b.data());
  EXPECT_EQ(a, b);
  // Grayscale p 0.2: the fraction of views whose channels coincide after undoing the
  // per-channel normalisation.
  int gray = 0;
  constexpr int kViews = 1000;
  for (int i = 0; i < kViews; ++i) {
    Rng rng = Rng::ForSample(2, 0, i, 0);
    AugmentView(src, v2, rng, &scratch, a.data());
    bool all_equal = true;
    for (int p = 0; p < 32 * 32 && all_equal; ++p) {
      const float r = a[p] * kImagenetStd[0] + kImagenetMean[0];
      const float g = a[1024 + p] * kImagenetStd[1] + kImagenetMean[1];
      all_equal = std::abs(r - g) < 1e-5f;
    }
    gray += all_equal;
  }
  EXPECT_NEAR(gray, 200, 5 * std::sqrt(kViews * 0.16));
}

}  // namespace
}  // namespace ssl::data
namespace ssl::data {
namespace {

// Folds the float bit patterns of every view of `recipe` into `hash` (FNV-1a), the
// views numbered on from *view as the loader numbers them.
uint64_t HashViewBits(const Image& src, const ViewRecipe& recipe, uint64_t seed, int image,
                      int* view, uint64_t hash) {
  for (const CropGroup& group : recipe.groups) {
    for (int k = 0; k < group.count; ++k, ++*view) {
      Rng rng = Rng::ForSample(seed, 0, image, *view);
      FloatImage scratch;
      std::vector<float> out(3 * group.augmentation.size * group.augmentation.size);
      AugmentView(src, group.augmentation, rng, &scratch, out.data());
      for (float v : out) {
        uint32_t bits;
        std::memcpy(&bits, &v, 4);
        hash = (hash ^ bits) * 1099511628211ULL;
      }
    }
  }
  return hash;
}

constexpr uint64_t kFnvOffsetBasis = 1469598103934665603ULL;

// The bits of MoCo v3's two views and SwAV's multi-crop over 40 images, as the plain
// scalar implementation produced them before the SIMD work (AdjustHue's vector form,
// the AVX2 clones of resampling, blur, contrast and saturation): speed work must not
// change a single output value. An intended change of the augmentations updates it.
TEST(ViewBitsTest, OptimizationsKeepEveryOutputBit) {
  uint64_t hash = kFnvOffsetBasis;
  for (int i = 0; i < 40; ++i) {
    const Image src = testing::RandomImage(120 + i, 160 - i, 100 + i);
    for (const ViewRecipe& recipe : {MocoV3Views(224, 0.2), MultiCropViews(MultiCropOptions())}) {
      int view = 0;
      hash = HashViewBits(src, recipe, /*seed=*/0, i, &view, hash);
    }
  }
  EXPECT_EQ(hash, 0x7a02a9fbd1deb718ULL);
}

// The same over ImageNet-sized images (about 500x375), whose crops are mostly shrunk to
// 224: the resampling's downscaling paths (wider windows, more taps) keep their bits too.
TEST(ViewBitsTest, DownscalingKeepsEveryOutputBit) {
  uint64_t hash = kFnvOffsetBasis;
  for (int i = 0; i < 6; ++i) {
    const Image src = testing::RandomImage(375 + 7 * i, 500 - 5 * i, 300 + i);
    int view = 0;
    for (const ViewRecipe& recipe : {MocoV3Views(224, 0.08), MultiCropViews(MultiCropOptions())}) {
      hash = HashViewBits(src, recipe, /*seed=*/1, i, &view, hash);
    }
  }
  EXPECT_EQ(hash, 0xd5e38e17d330e3c8ULL);
}

}  // namespace
}  // namespace ssl::data
