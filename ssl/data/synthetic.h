// A procedurally drawn ImageFolder for quickstarts and tests. Each class is a shape
// (disk, triangle, star, ...); the colour pair (from a small palette shared by all
// classes), position, size, a small rotation and a background gradient vary per image.
// Colour is pure nuisance, so a random network's features (dominated by colour and
// layout) classify poorly; and since colour barely identifies an instance either,
// instance discrimination under crops must learn shape: the gap self-supervised
// pretraining should open under kNN evaluation.
#ifndef SSL_DATA_SYNTHETIC_H_
#define SSL_DATA_SYNTHETIC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "ssl/core/random.h"
#include "ssl/data/image.h"

namespace ssl::data {

struct SyntheticDatasetOptions {
  int num_classes = 10;  ///< 2 .. kMaxSyntheticClasses
  int train_per_class = 300;
  int val_per_class = 100;
  int image_size = 64;  ///< square images, >= 16
  uint64_t seed = 0;
  int jpeg_quality = 90;
};

inline constexpr int kMaxSyntheticClasses = 12;

/// Folder names, sorted in class order: "00_disk", "01_square", ...
std::vector<std::string> SyntheticClassNames(int num_classes);

/// Draws one image of class `label`; deterministic for the generator's state.
Image DrawSyntheticImage(int label, int size, Rng& rng);

/// Writes <root>/train/<class>/<n>.jpg and <root>/val/<class>/<n>.jpg, deterministic for
/// the options. A manifest written last records the options: a complete dataset with
/// the same options is reused as is, anything else is regenerated.
absl::Status WriteSyntheticImageFolder(const SyntheticDatasetOptions& options,
                                       const std::string& root);

}  // namespace ssl::data

#endif  // SSL_DATA_SYNTHETIC_H_
