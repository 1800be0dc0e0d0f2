// View recipes: how one decoded image becomes the crops a method trains on. A recipe is
// a list of crop groups (count x same augmentation); MoCo v3's two asymmetric views are
// two groups of one, SwAV's 2x224 + 6x96 two groups of several, and the evaluation
// transform one group of one center crop.
#ifndef SSL_DATA_VIEWS_H_
#define SSL_DATA_VIEWS_H_

#include <array>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "ssl/core/random.h"
#include "ssl/data/deit_augment.h"
#include "ssl/data/image.h"
#include "ssl/data/transforms.h"

namespace ssl::data {

inline constexpr std::array<float, 3> kImagenetMean = {0.485f, 0.456f, 0.406f};
inline constexpr std::array<float, 3> kImagenetStd = {0.229f, 0.224f, 0.225f};

/// One crop's augmentation, applied in torchvision's order:
/// crop -> [jitter] -> [grayscale, blur] (or blur, grayscale) -> [solarize] -> flip
/// (solarize after flip when `solarize_after_flip`) -> normalize.
struct CropAugmentation {
  enum class Crop { kRandomResized, kResizeCenter };
  Crop crop = Crop::kRandomResized;
  int size = 224;           ///< output side
  int resize_short = 256;   ///< kResizeCenter: short side before the center crop
  double scale_min = 0.08;  ///< kRandomResized: area fraction range
  double scale_max = 1.0;
  double ratio_min = 3.0 / 4.0;  ///< kRandomResized: aspect ratio range
  double ratio_max = 4.0 / 3.0;
  double jitter_probability = 0.0;  ///< RandomApply([ColorJitter], p)
  ColorJitterStrength jitter;
  double grayscale_probability = 0.0;
  double blur_probability = 0.0;
  double blur_sigma_min = 0.1;  ///< sigma ~ U[min, max] pixels of the crop
  double blur_sigma_max = 2.0;
  bool blur_before_grayscale = false;  ///< BYOL / Momentum^2 Teacher order
  double solarize_probability = 0.0;
  bool solarize_after_flip = false;  ///< BYOL / Momentum^2 Teacher order
  double flip_probability = 0.0;
  /// Filter of the crop's resize (both crop kinds): torchvision's default bilinear, or
  /// bicubic (DeiT's training crop and evaluation resize).
  Interpolation interpolation = Interpolation::kBilinear;
  /// DeiT fine-tuning: RandAugment on the 8-bit crop after the flip, and random
  /// erasing on the normalized output (see deit_augment.h).
  bool rand_augment = false;
  RandAugmentOptions rand_augment_options;
  double erase_probability = 0.0;
  RandomErasingOptions erasing;
  std::array<float, 3> mean = kImagenetMean;
  std::array<float, 3> std = kImagenetStd;
};

/// `count` crops sharing one augmentation (and one output size).
struct CropGroup {
  int count = 1;
  CropAugmentation augmentation;
};

struct ViewRecipe {
  std::vector<CropGroup> groups;
  /// Crops per sample, over all groups.
  int NumViews() const;
  /// Checks sizes, probabilities and ranges; InvalidArgument naming the bad value.
  absl::Status Validate() const;
};

/// MoCo v3's two asymmetric views (main_moco.py augmentation1/2): both
/// RandomResizedCrop(size, (crop_min, 1)), jitter(0.4, 0.4, 0.2, 0.1) p 0.8, grayscale
/// 0.2, flip; view 1 blur p 1.0; view 2 blur p 0.1 then solarize p 0.2.
ViewRecipe MocoV3Views(int size = 224, double crop_min = 0.08);

/// BYOL's views as Momentum^2 Teacher uses them: as MoCo v3's but blur before
/// grayscale and view 2's solarize after the flip.
ViewRecipe ByolViews(int size = 224, double crop_min = 0.08);

/// A multi-crop recipe (SwAV / VISSL's num_crops, size_crops, crop_scales): per group a
/// count, size and scale range; every crop shares the colour augmentation. Defaults are
/// SwAV's 2x224 (0.14, 1) + 6x96 (0.05, 0.14) with jitter 0.8/0.8/0.8/0.2.
struct MultiCropOptions {
  std::vector<int> counts = {2, 6};
  std::vector<int> sizes = {224, 96};
  std::vector<double> scale_mins = {0.14, 0.05};
  std::vector<double> scale_maxs = {1.0, 0.14};
  double flip_probability = 0.5;
  ColorJitterStrength jitter{0.8f, 0.8f, 0.8f, 0.2f};
  double jitter_probability = 0.8;
  double grayscale_probability = 0.2;
  double blur_probability = 0.5;
  double blur_sigma_min = 0.1;  ///< PIL GaussianBlur radius range (VISSL radius_min/max)
  double blur_sigma_max = 2.0;
  std::array<float, 3> mean = kImagenetMean;
  std::array<float, 3> std = kImagenetStd;
};
ViewRecipe MultiCropViews(const MultiCropOptions& options);

/// Evaluation: Resize(resize_short) + CenterCrop(size), normalize; no randomness.
ViewRecipe EvalViews(int size = 224, int resize_short = 256,
                     Interpolation interpolation = Interpolation::kBilinear);

/// Supervised training crops (linear classification): RandomResizedCrop(size) + flip.
ViewRecipe ClassifierTrainViews(int size = 224);

/// DeiT's fine-tuning crops (timm's create_transform with is_training): RandomResizedCrop
/// (size, (scale_min, 1)) resampled with `interpolation` + flip + RandAugment (its
/// geometric ops with the same filter, as timm passes it on) + normalize + random
/// erasing with `erase`. DeiT: bicubic, 0.08; moco-v3's transfer/datasets.py: bilinear
/// (torchvision's default), 0.05, no RandAugment, no erasing.
ViewRecipe DeitTrainViews(int size, const RandAugmentOptions& rand_augment, bool use_rand_augment,
                          double erase, Interpolation interpolation = Interpolation::kBicubic,
                          double scale_min = 0.08);

/// Produces one augmented, normalized crop of `image` into `out` (3 x size x size,
/// CHW). `scratch` is reused between calls to avoid allocation.
void AugmentView(const Image& image, const CropAugmentation& augmentation, Rng& rng,
                 FloatImage* scratch, float* out);

}  // namespace ssl::data

#endif  // SSL_DATA_VIEWS_H_
