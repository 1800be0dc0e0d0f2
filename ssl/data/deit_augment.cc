#include "ssl/data/deit_augment.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace ssl::data {
namespace {

constexpr double kMaxMagnitude = 10.0;

uint8_t Clip8(double v) { return static_cast<uint8_t>(std::clamp(v, 0.0, 255.0)); }

template <typename Lut>
void ApplyLut(Image& image, const Lut& lut_per_channel) {
  for (size_t i = 0; i < image.pixels.size(); ++i) {
    image.pixels[i] = lut_per_channel(static_cast<int>(i % 3), image.pixels[i]);
  }
}

std::array<std::array<int64_t, 256>, 3> Histograms(const Image& image) {
  std::array<std::array<int64_t, 256>, 3> histograms{};
  for (size_t i = 0; i < image.pixels.size(); ++i) ++histograms[i % 3][image.pixels[i]];
  return histograms;
}

// PIL's "L" conversion: (299 R + 587 G + 114 B) / 1000 in fixed point, rounded.
uint8_t Luma(uint8_t r, uint8_t g, uint8_t b) {
  return static_cast<uint8_t>((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);
}

// PIL's Image.blend(degenerate, image, factor), clipped to 8 bits.
void BlendWith(Image& image, const Image& degenerate, double factor) {
  for (size_t i = 0; i < image.pixels.size(); ++i) {
    const double d = degenerate.pixels[i];
    image.pixels[i] = Clip8(std::floor(d + factor * (image.pixels[i] - d) + 0.5));
  }
}

void AutoContrast(Image& image) {
  const auto histograms = Histograms(image);
  std::array<std::array<uint8_t, 256>, 3> luts;
  for (int c = 0; c < 3; ++c) {
    int lo = 0, hi = 255;
    while (lo < 256 && histograms[c][lo] == 0) ++lo;
    while (hi >= 0 && histograms[c][hi] == 0) --hi;
    for (int v = 0; v < 256; ++v) {
      if (hi <= lo) {
        luts[c][v] = static_cast<uint8_t>(v);
      } else {
        const double scale = 255.0 / (hi - lo);
        const double offset = -lo * scale;
        luts[c][v] = Clip8(std::trunc(v * scale + offset));
      }
    }
  }
  ApplyLut(image, [&](int c, uint8_t v) { return luts[c][v]; });
}

// PIL's ImageOps.equalize.
void Equalize(Image& image) {
  const auto histograms = Histograms(image);
  std::array<std::array<uint8_t, 256>, 3> luts;
  for (int c = 0; c < 3; ++c) {
    const auto& h = histograms[c];
    int64_t total = 0, last = 0, nonzero = 0;
    for (int v = 0; v < 256; ++v) {
      if (h[v]) {
        total += h[v];
        last = h[v];
        ++nonzero;
      }
    }
    const int64_t step = nonzero <= 1 ? 0 : (total - last) / 255;
    int64_t n = step / 2;
    for (int v = 0; v < 256; ++v) {
      if (step == 0) {
        luts[c][v] = static_cast<uint8_t>(v);
      } else {
        luts[c][v] = static_cast<uint8_t>(std::min<int64_t>(255, n / step));
        n += h[v];
      }
    }
  }
  ApplyLut(image, [&](int c, uint8_t v) { return luts[c][v]; });
}

// PIL's cubic convolution of four samples at offset d in [0, 1) (Geometry.c's BICUBIC,
// a = -1).
double Cubic(double v1, double v2, double v3, double v4, double d) {
  const double p1 = v2;
  const double p2 = -v1 + v3;
  const double p3 = 2 * (v1 - v2) + v3 - v4;
  const double p4 = -v1 + v2 - v3 + v4;
  return p1 + d * (p2 + d * (p3 + d * p4));
}

// Output (x, y) samples input (a x + b y + c, d x + e y + f) with PIL's transform filters
// (Geometry.c): `fill` where the sample point is outside the image, else bilinear
// (rounded) or bicubic (4 x 4 taps, columns clamped to the image, rows beyond it repeating
// the last row read, truncated) reads.
void Affine(Image& image, const std::array<double, 6>& m, const std::array<uint8_t, 3>& fill,
            Interpolation interpolation) {
  const Image src = image;
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) {
      // Pixel centers, as PIL's transform does.
      const double sx = m[0] * (x + 0.5) + m[1] * (y + 0.5) + m[2] - 0.5;
      const double sy = m[3] * (x + 0.5) + m[4] * (y + 0.5) + m[5] - 0.5;
      const int x0 = static_cast<int>(std::floor(sx)), y0 = static_cast<int>(std::floor(sy));
      const double fx = sx - x0, fy = sy - y0;
      if (sx < -0.5 || sy < -0.5 || sx >= src.width - 0.5 || sy >= src.height - 0.5) {
        for (int c = 0; c < 3; ++c) image.at(y, x, c) = fill[c];
        continue;
      }
      for (int c = 0; c < 3; ++c) {
        auto pixel = [&](int yy, int xx) -> double {
          xx = std::clamp(xx, 0, src.width - 1);
          yy = std::clamp(yy, 0, src.height - 1);
          return src.at(yy, xx, c);
        };
        if (interpolation == Interpolation::kBicubic) {
          auto row = [&](int yy) {
            return Cubic(pixel(yy, x0 - 1), pixel(yy, x0), pixel(yy, x0 + 1), pixel(yy, x0 + 2),
                         fx);
          };
          double v[4];
          v[0] = row(y0 - 1);  // PIL clamps the first row into the image
          for (int k = 1; k < 4; ++k) {
            const int yy = y0 - 1 + k;
            v[k] = yy >= 0 && yy < src.height ? row(yy) : v[k - 1];
          }
          const double value = Cubic(v[0], v[1], v[2], v[3], fy);
          image.at(y, x, c) = value <= 0 ? 0 : value >= 255 ? 255 : static_cast<uint8_t>(value);
          continue;
        }
        const double top = pixel(y0, x0) * (1 - fx) + pixel(y0, x0 + 1) * fx;
        const double bottom = pixel(y0 + 1, x0) * (1 - fx) + pixel(y0 + 1, x0 + 1) * fx;
        image.at(y, x, c) = Clip8(std::floor(top * (1 - fy) + bottom * fy + 0.5));
      }
    }
  }
}

// PIL's rotate(degrees) (counter-clockwise) about the center.
void Rotate(Image& image, double degrees, const std::array<uint8_t, 3>& fill,
            Interpolation interpolation) {
  const double angle = -degrees * M_PI / 180.0;
  const double cx = image.width / 2.0, cy = image.height / 2.0;
  const double a = std::cos(angle), b = std::sin(angle);
  // Inverse map: input = R(-angle) (output - center) + center, as PIL builds it.
  std::array<double, 6> m = {a, b, 0, -b, a, 0};
  m[2] = cx - a * cx - b * cy;
  m[5] = cy + b * cx - a * cy;
  Affine(image, m, fill, interpolation);
}

// PIL's ImageFilter.SMOOTH (3x3 [[1,1,1],[1,5,1],[1,1,1]] / 13), borders kept.
Image Smoothed(const Image& image) {
  Image out = image;
  for (int y = 1; y + 1 < image.height; ++y) {
    for (int x = 1; x + 1 < image.width; ++x) {
      for (int c = 0; c < 3; ++c) {
        int sum = 4 * image.at(y, x, c);
        for (int dy = -1; dy <= 1; ++dy) {
          for (int dx = -1; dx <= 1; ++dx) sum += image.at(y + dy, x + dx, c);
        }
        out.at(y, x, c) = Clip8(std::floor(sum / 13.0 + 0.5));
      }
    }
  }
  return out;
}

}  // namespace

std::string RandAugmentOpName(RandAugmentOp op) {
  static const char* kNames[kNumRandAugmentOps] = {"AutoContrast",
                                                   "Equalize",
                                                   "Invert",
                                                   "Rotate",
                                                   "PosterizeIncreasing",
                                                   "SolarizeIncreasing",
                                                   "SolarizeAdd",
                                                   "ColorIncreasing",
                                                   "ContrastIncreasing",
                                                   "BrightnessIncreasing",
                                                   "SharpnessIncreasing",
                                                   "ShearX",
                                                   "ShearY",
                                                   "TranslateXRel",
                                                   "TranslateYRel"};
  return kNames[static_cast<int>(op)];
}

absl::StatusOr<RandAugmentOptions> ParseRandAugment(const std::string& config) {
  const std::vector<std::string> parts = absl::StrSplit(config, '-');
  if (parts.empty() || parts[0] != "rand") {
    return absl::InvalidArgumentError(absl::StrCat(
        "RandAugment config \"", config, "\" must start with \"rand\", e.g. rand-m9-mstd0.5-inc1"));
  }
  RandAugmentOptions options;
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string& part = parts[i];
    bool ok = false;
    if (part.rfind("mstd", 0) == 0) {
      ok = absl::SimpleAtod(part.substr(4), &options.magnitude_std) && options.magnitude_std >= 0;
    } else if (part.rfind("inc", 0) == 0) {
      ok = part == "inc1";  // only the increasing-magnitude list is implemented
    } else if (part[0] == 'm') {
      ok = absl::SimpleAtod(part.substr(1), &options.magnitude) && options.magnitude >= 0 &&
           options.magnitude <= kMaxMagnitude;
    } else if (part[0] == 'n') {
      ok = absl::SimpleAtoi(part.substr(1), &options.num_ops) && options.num_ops >= 0;
    } else if (part[0] == 'p') {
      ok = absl::SimpleAtod(part.substr(1), &options.op_probability) &&
           options.op_probability >= 0 && options.op_probability <= 1;
    }
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("RandAugment config \"", config, "\": cannot use \"", part,
                       "\" (known: m<0..10>, mstd<std>, n<ops>, p<prob>, inc1)"));
    }
  }
  return options;
}

void ApplyRandAugmentOp(RandAugmentOp op, double magnitude, bool negate,
                        const RandAugmentOptions& options, Image& image) {
  const double level = magnitude / kMaxMagnitude;
  const double sign = negate ? -1.0 : 1.0;
  switch (op) {
    case RandAugmentOp::kAutoContrast:
      AutoContrast(image);
      return;
    case RandAugmentOp::kEqualize:
      Equalize(image);
      return;
    case RandAugmentOp::kInvert:
      ApplyLut(image, [](int, uint8_t v) { return static_cast<uint8_t>(255 - v); });
      return;
    case RandAugmentOp::kRotate:
      Rotate(image, sign * level * 30.0, options.fill, options.interpolation);
      return;
    case RandAugmentOp::kPosterize: {
      const int bits = 4 - static_cast<int>(level * 4);
      if (bits >= 8) return;
      const uint8_t mask = static_cast<uint8_t>(~((1 << (8 - bits)) - 1));
      ApplyLut(image, [mask](int, uint8_t v) { return static_cast<uint8_t>(v & mask); });
      return;
    }
    case RandAugmentOp::kSolarize: {
      const int threshold = 256 - static_cast<int>(level * 256);
      ApplyLut(image, [threshold](int, uint8_t v) {
        return v < threshold ? v : static_cast<uint8_t>(255 - v);
      });
      return;
    }
    case RandAugmentOp::kSolarizeAdd: {
      const int add = static_cast<int>(level * 110);
      ApplyLut(image, [add](int, uint8_t v) {
        return v < 128 ? static_cast<uint8_t>(std::min(255, v + add)) : v;
      });
      return;
    }
    case RandAugmentOp::kColor:
    case RandAugmentOp::kContrast:
    case RandAugmentOp::kBrightness:
    case RandAugmentOp::kSharpness: {
      const double factor = 1.0 + sign * level * 0.9;
      Image degenerate(image.height, image.width);
      if (op == RandAugmentOp::kColor) {
        for (int y = 0; y < image.height; ++y) {
          for (int x = 0; x < image.width; ++x) {
            const uint8_t l = Luma(image.at(y, x, 0), image.at(y, x, 1), image.at(y, x, 2));
            for (int c = 0; c < 3; ++c) degenerate.at(y, x, c) = l;
          }
        }
      } else if (op == RandAugmentOp::kContrast) {
        double sum = 0;
        for (int y = 0; y < image.height; ++y) {
          for (int x = 0; x < image.width; ++x) {
            sum += Luma(image.at(y, x, 0), image.at(y, x, 1), image.at(y, x, 2));
          }
        }
        const auto mean = static_cast<uint8_t>(
            std::floor(sum / (static_cast<double>(image.height) * image.width) + 0.5));
        std::fill(degenerate.pixels.begin(), degenerate.pixels.end(), mean);
      } else if (op == RandAugmentOp::kSharpness) {
        degenerate = Smoothed(image);
      }  // brightness: black
      BlendWith(image, degenerate, factor);
      return;
    }
    case RandAugmentOp::kShearX:
      Affine(image, {1, sign * level * 0.3, 0, 0, 1, 0}, options.fill, options.interpolation);
      return;
    case RandAugmentOp::kShearY:
      Affine(image, {1, 0, 0, sign * level * 0.3, 1, 0}, options.fill, options.interpolation);
      return;
    case RandAugmentOp::kTranslateX:
      Affine(image, {1, 0, sign * level * 0.45 * image.width, 0, 1, 0}, options.fill,
             options.interpolation);
      return;
    case RandAugmentOp::kTranslateY:
      Affine(image, {1, 0, 0, 0, 1, sign * level * 0.45 * image.height}, options.fill,
             options.interpolation);
      return;
  }
}

void RandAugment(Image& image, const RandAugmentOptions& options, Rng& rng) {
  for (int i = 0; i < options.num_ops; ++i) {
    const auto op = static_cast<RandAugmentOp>(rng.UniformInt(0, kNumRandAugmentOps - 1));
    if (options.op_probability < 1.0 && !rng.Bernoulli(options.op_probability)) continue;
    double magnitude = options.magnitude;
    if (options.magnitude_std > 0) magnitude = rng.Normal(magnitude, options.magnitude_std);
    magnitude = std::clamp(magnitude, 0.0, kMaxMagnitude);
    ApplyRandAugmentOp(op, magnitude, rng.Bernoulli(0.5), options, image);
  }
}

void RandomErasing(float* chw, int height, int width, const RandomErasingOptions& options,
                   Rng& rng) {
  if (!rng.Bernoulli(options.probability)) return;
  const double area = static_cast<double>(height) * width;
  const double log_min = std::log(options.aspect_min), log_max = -std::log(options.aspect_min);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = rng.Uniform(options.area_min, options.area_max) * area;
    const double aspect = std::exp(rng.Uniform(log_min, log_max));
    const int h = static_cast<int>(std::lround(std::sqrt(target * aspect)));
    const int w = static_cast<int>(std::lround(std::sqrt(target / aspect)));
    if (w < width && h < height) {
      const int top = static_cast<int>(rng.UniformInt(0, height - h));
      const int left = static_cast<int>(rng.UniformInt(0, width - w));
      for (int c = 0; c < 3; ++c) {
        for (int y = top; y < top + h; ++y) {
          float* row = chw + (static_cast<size_t>(c) * height + y) * width;
          for (int x = left; x < left + w; ++x) row[x] = static_cast<float>(rng.Normal());
        }
      }
      return;
    }
  }
}

}  // namespace ssl::data
