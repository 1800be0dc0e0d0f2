// Frozen-backbone feature extraction over an ImageFolder.
#ifndef EVAL_FEATURES_H_
#define EVAL_FEATURES_H_

#include <ATen/core/Tensor.h>

#include <string>

#include "absl/status/statusor.h"
#include "ssl/backbones/backbone.h"
#include "ssl/data/image_folder.h"
#include "ssl/data/views.h"

namespace ssl::eval {

struct FeatureSet {
  at::Tensor features;  ///< float [N, D], pooled backbone features (not normalized)
  at::Tensor labels;    ///< int64 [N]
};

struct ExtractOptions {
  int64_t batch_size = 256;
  int workers = 2;
  bool show_progress = false;
};

/// Runs the backbone in eval mode without gradients over every image of `folder` (in
/// order) with the deterministic `recipe` (normally data::EvalViews); restores the
/// module's previous training mode.
absl::StatusOr<FeatureSet> ExtractFeatures(backbones::Backbone& backbone,
                                           const data::ImageFolder& folder,
                                           const data::ViewRecipe& recipe,
                                           const ExtractOptions& options);

/// Saves {"features", "labels", "classes"} with torch::pickle_save (torch.load reads it).
absl::Status SaveFeatures(const FeatureSet& set, const std::vector<std::string>& classes,
                          const std::string& path);

}  // namespace ssl::eval

#endif  // EVAL_FEATURES_H_
