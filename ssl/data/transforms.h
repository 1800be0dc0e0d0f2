// Image transforms with torchvision.transforms' semantics (as the originals build their
// views), split into a deterministic part (explicit parameters, testable against hand
// computations) and the random parameter draws, which take an explicit generator.
#ifndef SSL_DATA_TRANSFORMS_H_
#define SSL_DATA_TRANSFORMS_H_

#include <array>
#include <optional>
#include <string>

#include "ssl/core/random.h"
#include "ssl/data/image.h"

namespace ssl::data {

/// A crop rectangle in source pixels.
struct CropBox {
  int top = 0;
  int left = 0;
  int height = 0;
  int width = 0;
};

/// torchvision's RandomResizedCrop.get_params: up to 10 draws of area fraction
/// ~ U(scale_min, scale_max) and log-uniform aspect ratio in [ratio_min, ratio_max];
/// the first that fits wins; else a center crop clamped to the ratio range.
CropBox SampleResizedCropBox(int height, int width, double scale_min, double scale_max,
                             double ratio_min, double ratio_max, Rng& rng);

/// PIL's resampling filters as torchvision's resize and timm's transforms name them:
/// bilinear (triangle, support 1) and bicubic (cubic convolution a = -0.5, support 2;
/// DeiT's choice), both widened by the scale factor when shrinking (antialiased).
enum class Interpolation { kBilinear, kBicubic };

/// "bilinear" or "bicubic"; nullopt otherwise.
std::optional<Interpolation> ParseInterpolation(const std::string& name);
std::string InterpolationName(Interpolation interpolation);

/// Resamples `box` of `src` to `out_height` x `out_width` with PIL's antialiased filter,
/// as torchvision's resized_crop does; output in [0, 1]. PIL rounds to 8 bits between
/// and after its two passes; this keeps floats (clamped to [0, 255] between passes, as
/// bicubic can overshoot), within one level of PIL's bytes.
void ResizedCrop(const Image& src, const CropBox& box, int out_height, int out_width,
                 FloatImage* out, Interpolation interpolation = Interpolation::kBilinear);

/// torchvision's Resize(resize_short) then CenterCrop(crop): the short side becomes
/// `resize_short`, the long side int(resize_short * long / short).
void ResizeShortSideCenterCrop(const Image& src, int resize_short, int crop, FloatImage* out,
                               Interpolation interpolation = Interpolation::kBilinear);

/// ITU-R 601 luma weights used by grayscale, contrast and saturation.
inline constexpr float kLumaR = 0.299f, kLumaG = 0.587f, kLumaB = 0.114f;

void AdjustBrightness(FloatImage& image, float factor);
/// Blends with the mean of the grayscale image.
void AdjustContrast(FloatImage& image, float factor);
/// Blends with the grayscale image.
void AdjustSaturation(FloatImage& image, float factor);
/// Rotates hue by `hue_shift` turns (in [-0.5, 0.5]) in HSV space.
void AdjustHue(FloatImage& image, float hue_shift);
/// Replaces every channel with the luma.
void ToGrayscale(FloatImage& image);
/// Separable Gaussian blur with standard deviation `sigma` pixels, kernel radius
/// ceil(3 sigma), reflect padding.
void GaussianBlur(FloatImage& image, float sigma);
/// Pixels >= 128/255 become 1 - pixel (PIL's ImageOps.solarize(128)).
void Solarize(FloatImage& image);
void HorizontalFlip(FloatImage& image);
/// Writes (x - mean[c]) / std[c] to `out` (CHW, same size).
void Normalize(const FloatImage& image, const std::array<float, 3>& mean,
               const std::array<float, 3>& std, float* out);

/// ColorJitter strengths: factors ~ U[max(0, 1 - x), 1 + x], hue ~ U[-h, h].
struct ColorJitterStrength {
  float brightness = 0.4f;
  float contrast = 0.4f;
  float saturation = 0.2f;
  float hue = 0.1f;
};

/// Parameters of one ColorJitter application, as torchvision's get_params draws them.
struct ColorJitterDraw {
  std::array<int, 4> order{0, 1, 2, 3};  // 0 brightness, 1 contrast, 2 saturation, 3 hue
  float brightness = 1, contrast = 1, saturation = 1, hue = 0;
};

/// Draws the op order (a random permutation) then the four factors.
ColorJitterDraw SampleColorJitter(const ColorJitterStrength& strength, Rng& rng);
void ApplyColorJitter(FloatImage& image, const ColorJitterDraw& draw);

}  // namespace ssl::data

#endif  // SSL_DATA_TRANSFORMS_H_
