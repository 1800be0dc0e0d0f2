// DeiT's fine-tuning augmentations as timm implements them: RandAugment
// ("rand-m9-mstd0.5-inc1": two ops drawn with replacement from timm's increasing-
// magnitude list, each applied with probability 0.5 at magnitude ~ N(9, 0.5) clipped to
// [0, 10]) on 8-bit images with PIL's semantics, and RandomErasing ('pixel' mode) on the
// normalized tensor. Mixup / CutMix act on batches and live with the fine-tuning loop.
#ifndef SSL_DATA_DEIT_AUGMENT_H_
#define SSL_DATA_DEIT_AUGMENT_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ssl/core/random.h"
#include "ssl/data/image.h"
#include "ssl/data/transforms.h"

namespace ssl::data {

/// timm's _RAND_INCREASING_TRANSFORMS, in its order.
enum class RandAugmentOp {
  kAutoContrast,
  kEqualize,
  kInvert,
  kRotate,
  kPosterize,    ///< keeps 4 - int(4 m / 10) bits (PosterizeIncreasing)
  kSolarize,     ///< threshold 256 - int(256 m / 10) (SolarizeIncreasing)
  kSolarizeAdd,  ///< + int(110 m / 10) below 128
  kColor,        ///< factor 1 +- 0.9 m / 10 (ColorIncreasing), and the next three
  kContrast,
  kBrightness,
  kSharpness,
  kShearX,  ///< +- 0.3 m / 10
  kShearY,
  kTranslateX,  ///< +- 0.45 m / 10 of the width (TranslateXRel)
  kTranslateY,
};
inline constexpr int kNumRandAugmentOps = 15;
std::string RandAugmentOpName(RandAugmentOp op);

struct RandAugmentOptions {
  int num_ops = 2;              ///< n (timm's num_layers)
  double magnitude = 9;         ///< m
  double magnitude_std = 0.5;   ///< mstd: magnitude ~ N(m, mstd) per op, clipped to [0, 10]
  double op_probability = 0.5;  ///< each chosen op applies with this probability
  /// Fill of uncovered pixels in geometric ops: the ImageNet mean in 8 bits, as DeiT.
  std::array<uint8_t, 3> fill = {124, 116, 104};
  /// Resampling of the geometric ops (PIL's transform filters, not antialiased): DeiT
  /// passes its --train-interpolation, bicubic.
  Interpolation interpolation = Interpolation::kBilinear;
};

/// Parses timm's config string, e.g. "rand-m9-mstd0.5-inc1" ("inc1" is the only
/// transform list implemented; "n<ops>", "p<prob>" and "mstd" are read too).
absl::StatusOr<RandAugmentOptions> ParseRandAugment(const std::string& config);

/// One op at `magnitude` (in [0, 10]); `negate` flips the sign of signed ops. PIL's
/// semantics on 8-bit RGB; geometric ops sample with options.interpolation about the
/// image center (PIL's affine convention: output (x, y) reads input A (x, y, 1)).
void ApplyRandAugmentOp(RandAugmentOp op, double magnitude, bool negate,
                        const RandAugmentOptions& options, Image& image);

/// The whole RandAugment draw: ops, coins, magnitudes and signs from `rng`.
void RandAugment(Image& image, const RandAugmentOptions& options, Rng& rng);

struct RandomErasingOptions {
  double probability = 0.25;
  double area_min = 0.02, area_max = 1.0 / 3.0;  ///< fraction of the image
  double aspect_min = 0.3;                       ///< log-uniform in [min, 1 / min]
};

/// timm's RandomErasing, mode 'pixel', one box: with the probability, up to 10 tries of
/// a box of the sampled area and aspect that fits; its pixels become N(0, 1) draws
/// (the normalized image's scale). `chw` is a 3 x height x width float image.
void RandomErasing(float* chw, int height, int width, const RandomErasingOptions& options,
                   Rng& rng);

}  // namespace ssl::data

#endif  // SSL_DATA_DEIT_AUGMENT_H_
