#include "ssl/data/transforms.h"

#include <xmmintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace ssl::data {
namespace {

// Python's round() (half to even), which torchvision's int(round(x)) uses.
int RoundHalfEven(double x) { return static_cast<int>(std::nearbyint(x)); }

float Clamp01(float x) { return std::min(1.0f, std::max(0.0f, x)); }

// dst[x] = sum over k of weights[k] * sources[k][x], k in order from 0.0f: the sums a
// `dst[x] += weights[k] * sources[k][x]` pass per k computes, with the running sums of
// eight x kept in registers across the taps instead of stored and reloaded per tap.
// Inlined into the AVX2 and default clones of its callers.
inline __attribute__((always_inline)) void WeightedRowSum(const float* const* sources,
                                                          const float* weights, int taps, int n,
                                                          float* dst) {
  typedef float Floats8 __attribute__((vector_size(32)));
  int x = 0;
  // Four vectors per pass over the taps: one weight and source pointer load per four
  // multiply-adds.
  for (; x + 32 <= n; x += 32) {
    Floats8 sum0 = {}, sum1 = {}, sum2 = {}, sum3 = {};
    for (int k = 0; k < taps; ++k) {
      const float* source = sources[k] + x;
      const float weight = weights[k];
      Floats8 v0, v1, v2, v3;
      std::memcpy(&v0, source, sizeof(v0));
      std::memcpy(&v1, source + 8, sizeof(v1));
      std::memcpy(&v2, source + 16, sizeof(v2));
      std::memcpy(&v3, source + 24, sizeof(v3));
      sum0 += weight * v0;
      sum1 += weight * v1;
      sum2 += weight * v2;
      sum3 += weight * v3;
    }
    std::memcpy(dst + x, &sum0, sizeof(sum0));
    std::memcpy(dst + x + 8, &sum1, sizeof(sum1));
    std::memcpy(dst + x + 16, &sum2, sizeof(sum2));
    std::memcpy(dst + x + 24, &sum3, sizeof(sum3));
  }
  for (; x + 8 <= n; x += 8) {
    Floats8 sum = {};
    for (int k = 0; k < taps; ++k) {
      Floats8 values;
      std::memcpy(&values, sources[k] + x, sizeof(values));
      sum += weights[k] * values;
    }
    std::memcpy(dst + x, &sum, sizeof(sum));
  }
  for (; x < n; ++x) {
    float sum = 0.0f;
    for (int k = 0; k < taps; ++k) sum += weights[k] * sources[k][x];
    dst[x] = sum;
  }
}

// PIL's precompute_coeffs for the bilinear (triangle) or bicubic filter, restricted to
// an input span of `in_size` pixels: for output pixel i, taps start[i] .. start[i] +
// count[i].
struct ResampleWeights {
  int taps = 0;  // stride of `weights`
  std::vector<int> start, count;
  std::vector<float> weights;
};

// PIL's bicubic_filter: cubic convolution with a = -0.5.
double BicubicFilter(double x) {
  constexpr double a = -0.5;
  x = std::abs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

ResampleWeights ComputeResampleWeights(int in_size, int out_size, Interpolation interpolation) {
  ResampleWeights w;
  const bool bicubic = interpolation == Interpolation::kBicubic;
  const double scale = static_cast<double>(in_size) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  // Filter support 1 (triangle) or 2 (bicubic), widened when shrinking.
  const double support = (bicubic ? 2.0 : 1.0) * filter_scale;
  w.taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  w.start.resize(out_size);
  w.count.resize(out_size);
  w.weights.assign(static_cast<size_t>(out_size) * w.taps, 0.0f);
  for (int i = 0; i < out_size; ++i) {
    const double center = (i + 0.5) * scale;
    const int lo = std::max(static_cast<int>(center - support + 0.5), 0);
    const int hi = std::min(static_cast<int>(center + support + 0.5), in_size);
    double total = 0;
    std::vector<double> raw(hi - lo);
    for (int j = lo; j < hi; ++j) {
      const double x = std::abs((j - center + 0.5) / filter_scale);
      raw[j - lo] = bicubic ? BicubicFilter(x) : (x < 1.0 ? 1.0 - x : 0.0);
      total += raw[j - lo];
    }
    w.start[i] = lo;
    w.count[i] = hi - lo;
    for (int j = 0; j < hi - lo; ++j) {
      w.weights[static_cast<size_t>(i) * w.taps + j] =
          total != 0 ? static_cast<float>(raw[j] / total) : 0.0f;
    }
  }
  return w;
}

typedef float Floats4 __attribute__((vector_size(16)));
typedef float Floats8 __attribute__((vector_size(32)));

// The 4 floats at `a` followed by the 4 floats at `b` (each pointer must have 8
// readable floats): two 8-float loads and one shuffle, which GCC (any version) and
// Clang both turn into a load and an insert of the high half.
inline __attribute__((always_inline)) Floats8 FirstHalves(const float* a, const float* b) {
  Floats8 from_a, from_b;
  std::memcpy(&from_a, a, sizeof(from_a));
  std::memcpy(&from_b, b, sizeof(from_b));
#ifdef __clang__
  return __builtin_shufflevector(from_a, from_b, 0, 1, 2, 3, 8, 9, 10, 11);
#else
  typedef int Ints8 __attribute__((vector_size(32)));
  return __builtin_shuffle(from_a, from_b, Ints8{0, 1, 2, 3, 8, 9, 10, 11});
#endif
}

// Output pixels x and x + 1 of a horizontal pass, done together: each tap k weighs
// pixel first_start + k for x and second_start + k for x + 1, with `weights`[k] (x's
// weight x 4, then x + 1's x 4).
struct PixelPair {
  int x = 0;
  int first_start = 0, second_start = 0;
  int taps = 0;  // the longer of the two windows
  const Floats8* weights = nullptr;
};

// All pairs of a pass, their weights in one allocation (wx.taps per pair).
struct PixelPairs {
  std::vector<PixelPair> pairs;
  std::vector<Floats8> weights;
};

PixelPairs PairOutputPixels(const ResampleWeights& wx, int window_left, int out_width) {
  PixelPairs result;
  result.pairs.resize(out_width / 2);
  result.weights.resize(result.pairs.size() * wx.taps);
  for (size_t p = 0; p < result.pairs.size(); ++p) {
    PixelPair& pair = result.pairs[p];
    pair.x = static_cast<int>(2 * p);
    const int a = window_left + pair.x, b = a + 1;
    pair.first_start = wx.start[a];
    pair.second_start = wx.start[b];
    pair.taps = std::max(wx.count[a], wx.count[b]);
    Floats8* weights = result.weights.data() + p * wx.taps;
    pair.weights = weights;
    for (int k = 0; k < pair.taps; ++k) {
      // Beyond a window's count its weights are the zeros ComputeResampleWeights left.
      const float wa = wx.weights[static_cast<size_t>(a) * wx.taps + k];
      const float wb = wx.weights[static_cast<size_t>(b) * wx.taps + k];
      weights[k] = Floats8{wa, wa, wa, wa, wb, wb, wb, wb};
    }
  }
  return result;
}

// Resamples `box` of `src` as if to full_height x full_width, but computes only the
// window [window_top, +out_height) x [window_left, +out_width) of that result.
// target_clones: an AVX2 build of the same code where the CPU has it (wider vectors, the
// same IEEE operations per element, no FMA contraction), chosen once at load time.
__attribute__((target_clones("avx2", "default"))) void ResampleWindow(
    const Image& src, const CropBox& box, int full_height, int full_width, int window_top,
    int window_left, int out_height, int out_width, FloatImage* out, Interpolation interpolation) {
  const ResampleWeights wx = ComputeResampleWeights(box.width, full_width, interpolation);
  const ResampleWeights wy = ComputeResampleWeights(box.height, full_height, interpolation);
  // Only the source rows the vertical pass reads.
  const int row_lo = wy.start[window_top];
  const int row_hi = wy.start[window_top + out_height - 1] + wy.count[window_top + out_height - 1];
  // Horizontal pass: source rows -> (rows, out_width, 3) floats (+1 so that the last
  // pixel's 4-float store stays inside).
  std::vector<float> horizontal(static_cast<size_t>(row_hi - row_lo) * out_width * 3 + 1);
  // Each source row converted once to floats. A tap is one multiply-add of 4 floats
  // starting at the tap pixel's red: the three channels and a fourth lane (the next
  // pixel's red) whose sums are never kept, so per channel the same products summed in
  // the same order as a scalar loop, the same bits. Two output pixels go through one
  // 8-wide multiply-add per tap; the shorter window of a pair runs on over zero weights
  // (and the zeros padding the row), which adds exact zeros.
  std::vector<float> row_values(static_cast<size_t>(box.width + wx.taps) * 3 + 5);
  const PixelPairs paired = PairOutputPixels(wx, window_left, out_width);
  for (int y = row_lo; y < row_hi; ++y) {
    const uint8_t* row =
        src.pixels.data() + (static_cast<size_t>(box.top + y) * src.width + box.left) * 3;
    for (int i = 0; i < 3 * box.width; ++i) row_values[i] = static_cast<float>(row[i]);
    float* dst = horizontal.data() + static_cast<size_t>(y - row_lo) * out_width * 3;
    for (const PixelPair& pair : paired.pairs) {
      const float* first = row_values.data() + 3 * pair.first_start;
      const float* second = row_values.data() + 3 * pair.second_start;
      Floats8 sum = {};
      for (int k = 0; k < pair.taps; ++k) {
        sum += pair.weights[k] * FirstHalves(first + 3 * k, second + 3 * k);
      }
      // Two overlapping 4-float stores: the second overwrites the first's fourth lane,
      // the next pair the second's.
      std::memcpy(dst + 3 * pair.x, &sum, sizeof(Floats4));
      std::memcpy(dst + 3 * pair.x + 3, reinterpret_cast<const float*>(&sum) + 4, sizeof(Floats4));
    }
    if (out_width % 2 == 1) {
      const int x_last = out_width - 1, ox = window_left + x_last;
      const float* weights = &wx.weights[static_cast<size_t>(ox) * wx.taps];
      const float* taps = row_values.data() + 3 * wx.start[ox];
      Floats4 sum = {};
      for (int k = 0; k < wx.count[ox]; ++k) {
        Floats4 tap;
        std::memcpy(&tap, taps + 3 * k, sizeof(tap));
        sum += weights[k] * tap;
      }
      std::memcpy(dst + 3 * x_last, &sum, sizeof(sum));
    }
  }
  // PIL stores the horizontal pass in 8 bits: bicubic's overshoot is clipped there.
  if (interpolation == Interpolation::kBicubic) {
    for (float& value : horizontal) value = std::clamp(value, 0.0f, 255.0f);
  }
  // Vertical pass: whole interleaved rows at a time (vectorizes), then de-interleave
  // into planar [0, 1] output.
  out->Resize(out_height, out_width);
  float* planes[3] = {out->plane(0), out->plane(1), out->plane(2)};
  constexpr float kInv255 = 1.0f / 255.0f;
  const int row_floats = out_width * 3;
  std::vector<float> accumulated(row_floats);
  std::vector<const float*> sources(wy.taps);
  for (int y = 0; y < out_height; ++y) {
    const int oy = window_top + y;
    const float* weights = &wy.weights[static_cast<size_t>(oy) * wy.taps];
    const int first = wy.start[oy] - row_lo;
    for (int k = 0; k < wy.count[oy]; ++k) {
      sources[k] = &horizontal[static_cast<size_t>(first + k) * row_floats];
    }
    WeightedRowSum(sources.data(), weights, wy.count[oy], row_floats, accumulated.data());
    for (int x = 0; x < out_width; ++x) {
      for (int c = 0; c < 3; ++c) {
        planes[c][static_cast<size_t>(y) * out_width + x] =
            Clamp01(accumulated[3 * x + c] * kInv255);
      }
    }
  }
}

float Luma(float r, float g, float b) { return kLumaR * r + kLumaG * g + kLumaB * b; }

}  // namespace

CropBox SampleResizedCropBox(int height, int width, double scale_min, double scale_max,
                             double ratio_min, double ratio_max, Rng& rng) {
  const double area = static_cast<double>(height) * width;
  const double log_ratio_min = std::log(ratio_min), log_ratio_max = std::log(ratio_max);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * rng.Uniform(scale_min, scale_max);
    const double aspect = std::exp(rng.Uniform(log_ratio_min, log_ratio_max));
    const int w = RoundHalfEven(std::sqrt(target_area * aspect));
    const int h = RoundHalfEven(std::sqrt(target_area / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const int top = static_cast<int>(rng.UniformInt(0, height - h));
      const int left = static_cast<int>(rng.UniformInt(0, width - w));
      return {top, left, h, w};
    }
  }
  const double in_ratio = static_cast<double>(width) / height;
  int w = width, h = height;
  if (in_ratio < ratio_min) {
    h = RoundHalfEven(w / ratio_min);
  } else if (in_ratio > ratio_max) {
    w = RoundHalfEven(h * ratio_max);
  }
  return {(height - h) / 2, (width - w) / 2, h, w};
}

std::optional<Interpolation> ParseInterpolation(const std::string& name) {
  if (name == "bilinear") return Interpolation::kBilinear;
  if (name == "bicubic") return Interpolation::kBicubic;
  return std::nullopt;
}

std::string InterpolationName(Interpolation interpolation) {
  return interpolation == Interpolation::kBicubic ? "bicubic" : "bilinear";
}

void ResizedCrop(const Image& src, const CropBox& box, int out_height, int out_width,
                 FloatImage* out, Interpolation interpolation) {
  ResampleWindow(src, box, out_height, out_width, 0, 0, out_height, out_width, out, interpolation);
}

void ResizeShortSideCenterCrop(const Image& src, int resize_short, int crop, FloatImage* out,
                               Interpolation interpolation) {
  int new_height, new_width;
  if (src.width <= src.height) {
    new_width = resize_short;
    new_height = static_cast<int>(static_cast<int64_t>(resize_short) * src.height / src.width);
  } else {
    new_height = resize_short;
    new_width = static_cast<int>(static_cast<int64_t>(resize_short) * src.width / src.height);
  }
  const int crop_height = std::min(crop, new_height), crop_width = std::min(crop, new_width);
  const int top = RoundHalfEven((new_height - crop_height) / 2.0);
  const int left = RoundHalfEven((new_width - crop_width) / 2.0);
  ResampleWindow(src, {0, 0, src.height, src.width}, new_height, new_width, top, left, crop_height,
                 crop_width, out, interpolation);
}

void AdjustBrightness(FloatImage& image, float factor) {
  for (float& v : image.data) v = Clamp01(v * factor);
}

__attribute__((target_clones("avx2", "default"))) void AdjustContrast(FloatImage& image,
                                                                      float factor) {
  const size_t n = image.plane_size();
  const float *r = image.plane(0), *g = image.plane(1), *b = image.plane(2);
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += Luma(r[i], g[i], b[i]);
  const float mean = static_cast<float>(sum / n);
  const float offset = (1.0f - factor) * mean;
  for (float& v : image.data) v = Clamp01(factor * v + offset);
}

__attribute__((target_clones("avx2", "default"))) void AdjustSaturation(FloatImage& image,
                                                                        float factor) {
  const size_t n = image.plane_size();
  float *r = image.plane(0), *g = image.plane(1), *b = image.plane(2);
  for (size_t i = 0; i < n; ++i) {
    const float gray = (1.0f - factor) * Luma(r[i], g[i], b[i]);
    r[i] = Clamp01(factor * r[i] + gray);
    g[i] = Clamp01(factor * g[i] + gray);
    b[i] = Clamp01(factor * b[i] + gray);
  }
}

namespace {

// Eight pixels at a time with GCC's vector extensions: SSE in the default clone, AVX2 in
// the clone picked at run time where the CPU has it.
typedef float Floats8 __attribute__((vector_size(32)));
typedef int Ints8 __attribute__((vector_size(32)));

// torchvision's _rgb2hsv -> shift -> _hsv2rgb with the same IEEE operations in the same
// order as its per-pixel form, so results are bitwise identical to it (transforms_test
// checks). The six HSV sectors and the gray-pixel case are selects, not branches.
__attribute__((target_clones("avx2", "default"))) void HueShiftPixels(float* __restrict rp,
                                                                      float* __restrict gp,
                                                                      float* __restrict bp,
                                                                      size_t n, float shift) {
  const Floats8 zero = {}, one = zero + 1.0f;
  const Ints8 five = Ints8{} + 5;
  auto shift_block = [&](Floats8& r, Floats8& g, Floats8& b) {
    // std::max / std::min semantics: (a < b) ? b : a.
    const Floats8 max_rg = r < g ? g : r, min_rg = g < r ? g : r;
    const Floats8 maxc = max_rg < b ? b : max_rg, minc = b < min_rg ? b : min_rg;
    const Floats8 chroma = maxc - minc;
    const Floats8 s = chroma / maxc;
    const Floats8 rc = (maxc - r) / chroma, gc = (maxc - g) / chroma, bc = (maxc - b) / chroma;
    const Floats8 h_r = bc - gc, h_g = 2.0f + rc - bc, h_b = 4.0f + gc - rc;
    Floats8 h = maxc == r ? h_r : (maxc == g ? h_g : h_b);
    // Wrap to [0, 1) without fmod (the shift is within [-0.5, 0.5]).
    h = h / 6.0f + shift;
    h = h < zero ? h + 1.0f : h;
    h = h < zero ? h + 1.0f : h;
    h = h >= one ? h - 1.0f : h;
    const Floats8 v = maxc;
    const Floats8 h6 = h * 6.0f;
    const Ints8 truncated = __builtin_convertvector(h6, Ints8);
    const Ints8 sector = truncated < five ? truncated : five;
    const Floats8 f = h6 - __builtin_convertvector(sector, Floats8);
    const Floats8 p_raw = v * (1.0f - s), q_raw = v * (1.0f - s * f),
                  t_raw = v * (1.0f - s * (1.0f - f));
    // Clamp01 exactly as std::min(1, std::max(0, x)): (0 < x ? x : 0), then (y < 1 ? y : 1).
    const Floats8 p_low = zero < p_raw ? p_raw : zero, q_low = zero < q_raw ? q_raw : zero,
                  t_low = zero < t_raw ? t_raw : zero;
    const Floats8 p = p_low < one ? p_low : one, q = q_low < one ? q_low : one,
                  t = t_low < one ? t_low : one;
    const Ints8 s0 = sector == 0, s1 = sector == 1, s2 = sector == 2, s3 = sector == 3,
                s4 = sector == 4, s5 = sector == 5;
    // Sector 0..5: r = v q p p t v, g = t v v q p p, b = p p t v v q.
    const Floats8 new_r = (s0 | s5) ? v : (s1 ? q : (s4 ? t : p));
    const Floats8 new_g = (s1 | s2) ? v : (s0 ? t : (s3 ? q : p));
    const Floats8 new_b = (s3 | s4) ? v : (s2 ? t : (s5 ? q : p));
    // Gray pixels (chroma 0): hue rotation is the identity.
    const Ints8 gray = chroma == zero;
    r = gray ? r : new_r;
    g = gray ? g : new_g;
    b = gray ? b : new_b;
  };
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    Floats8 r, g, b;
    std::memcpy(&r, rp + i, sizeof(r));
    std::memcpy(&g, gp + i, sizeof(g));
    std::memcpy(&b, bp + i, sizeof(b));
    shift_block(r, g, b);
    std::memcpy(rp + i, &r, sizeof(r));
    std::memcpy(gp + i, &g, sizeof(g));
    std::memcpy(bp + i, &b, sizeof(b));
  }
  if (i < n) {  // the last 1-7 pixels, padded with gray (left unchanged)
    Floats8 r = {}, g = {}, b = {};
    const size_t rest = n - i;
    std::memcpy(&r, rp + i, rest * sizeof(float));
    std::memcpy(&g, gp + i, rest * sizeof(float));
    std::memcpy(&b, bp + i, rest * sizeof(float));
    shift_block(r, g, b);
    std::memcpy(rp + i, &r, rest * sizeof(float));
    std::memcpy(gp + i, &g, rest * sizeof(float));
    std::memcpy(bp + i, &b, rest * sizeof(float));
  }
}

}  // namespace

void AdjustHue(FloatImage& image, float hue_shift) {
  HueShiftPixels(image.plane(0), image.plane(1), image.plane(2), image.plane_size(), hue_shift);
}

void ToGrayscale(FloatImage& image) {
  const size_t n = image.plane_size();
  float *r = image.plane(0), *g = image.plane(1), *b = image.plane(2);
  for (size_t i = 0; i < n; ++i) r[i] = g[i] = b[i] = Luma(r[i], g[i], b[i]);
}

__attribute__((target_clones("avx2", "default"))) void GaussianBlur(FloatImage& image,
                                                                    float sigma) {
  const int max_radius = std::max(0, std::min(image.height, image.width) - 1);
  const int radius = std::min(static_cast<int>(std::ceil(3.0f * sigma)), max_radius);
  if (radius == 0 || sigma <= 0) return;
  std::vector<float> kernel(2 * radius + 1);
  float total = 0;
  for (int k = -radius; k <= radius; ++k) {
    kernel[k + radius] = std::exp(-0.5f * k * k / (sigma * sigma));
    total += kernel[k + radius];
  }
  for (float& k : kernel) k /= total;
  // Reflect without repeating the edge (torch's "reflect" padding).
  auto reflect = [](int i, int n) { return i < 0 ? -i : (i >= n ? 2 * n - 2 - i : i); };
  const int h = image.height, w = image.width;
  std::vector<float> padded(w + 2 * radius);
  std::vector<float> column_source(image.plane_size());
  std::vector<const float*> sources(2 * radius + 1);
  for (int c = 0; c < 3; ++c) {
    float* plane = image.plane(c);
    // Horizontal pass over a reflect-padded copy of each row, so the inner loop has
    // no bounds logic and vectorizes.
    for (int y = 0; y < h; ++y) {
      float* row = plane + static_cast<size_t>(y) * w;
      for (int x = -radius; x < 0; ++x) padded[x + radius] = row[reflect(x, w)];
      std::copy(row, row + w, padded.begin() + radius);
      for (int x = w; x < w + radius; ++x) padded[x + radius] = row[reflect(x, w)];
      for (int k = 0; k <= 2 * radius; ++k) sources[k] = padded.data() + k;
      WeightedRowSum(sources.data(), kernel.data(), 2 * radius + 1, w, row);
    }
    // Vertical pass row by row over a copy, so the inner loop runs along memory.
    std::copy(plane, plane + image.plane_size(), column_source.begin());
    for (int y = 0; y < h; ++y) {
      for (int k = -radius; k <= radius; ++k) {
        sources[k + radius] = column_source.data() + static_cast<size_t>(reflect(y + k, h)) * w;
      }
      WeightedRowSum(sources.data(), kernel.data(), 2 * radius + 1, w,
                     plane + static_cast<size_t>(y) * w);
    }
  }
}

void Solarize(FloatImage& image) {
  constexpr float kThreshold = 128.0f / 255.0f;
  for (float& v : image.data) {
    if (v >= kThreshold) v = 1.0f - v;
  }
}

void HorizontalFlip(FloatImage& image) {
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < image.height; ++y) {
      float* row = image.plane(c) + static_cast<size_t>(y) * image.width;
      std::reverse(row, row + image.width);
    }
  }
}

void Normalize(const FloatImage& image, const std::array<float, 3>& mean,
               const std::array<float, 3>& std, float* out) {
  const size_t n = image.plane_size();
  for (int c = 0; c < 3; ++c) {
    const float* in = image.plane(c);
    const float inv_std = 1.0f / std[c];
    float* dst = out + c * n;
    // `out` is usually a batch slot that will not be read on this core again: streaming
    // stores skip reading its cache lines first (a third of the loader's cost over the
    // one-thread pipeline on 500x375 JPEGs). Same operations, same results.
    size_t i = 0;
    for (; i < n && reinterpret_cast<uintptr_t>(dst + i) % 16 != 0; ++i) {
      dst[i] = (in[i] - mean[c]) * inv_std;
    }
    const __m128 shift = _mm_set1_ps(mean[c]);
    const __m128 scale = _mm_set1_ps(inv_std);
    for (; i + 4 <= n; i += 4) {
      _mm_stream_ps(dst + i, _mm_mul_ps(_mm_sub_ps(_mm_loadu_ps(in + i), shift), scale));
    }
    for (; i < n; ++i) dst[i] = (in[i] - mean[c]) * inv_std;
  }
  _mm_sfence();  // streaming stores are weakly ordered: visible before the batch is handed on
}

ColorJitterDraw SampleColorJitter(const ColorJitterStrength& strength, Rng& rng) {
  ColorJitterDraw draw;
  // torch.randperm(4), then the factors in a fixed order (as get_params draws them).
  std::vector<int> order = {0, 1, 2, 3};
  rng.Shuffle(order);
  std::copy(order.begin(), order.end(), draw.order.begin());
  auto factor = [&rng](float x) {
    return x > 0 ? static_cast<float>(rng.Uniform(std::max(0.0f, 1.0f - x), 1.0f + x)) : 1.0f;
  };
  draw.brightness = factor(strength.brightness);
  draw.contrast = factor(strength.contrast);
  draw.saturation = factor(strength.saturation);
  draw.hue = strength.hue > 0 ? static_cast<float>(rng.Uniform(-strength.hue, strength.hue)) : 0.0f;
  return draw;
}

void ApplyColorJitter(FloatImage& image, const ColorJitterDraw& draw) {
  for (int op : draw.order) {
    switch (op) {
      case 0:
        if (draw.brightness != 1) AdjustBrightness(image, draw.brightness);
        break;
      case 1:
        if (draw.contrast != 1) AdjustContrast(image, draw.contrast);
        break;
      case 2:
        if (draw.saturation != 1) AdjustSaturation(image, draw.saturation);
        break;
      default:
        if (draw.hue != 0) AdjustHue(image, draw.hue);
        break;
    }
  }
}

}  // namespace ssl::data
