#include "eval/features.h"

#include <ATen/core/Dict.h>
#include <ATen/core/List.h>
#include <ATen/ops/cat.h>
#include <c10/core/GradMode.h>
#include <glog/logging.h>

#include "ssl/core/progress.h"
#include "ssl/data/loader.h"
#include "ssl/train/checkpoint.h"

namespace ssl::eval {

absl::StatusOr<FeatureSet> ExtractFeatures(backbones::Backbone& backbone,
                                           const data::ImageFolder& folder,
                                           const data::ViewRecipe& recipe,
                                           const ExtractOptions& options) {
  data::LoaderOptions loader_options;
  loader_options.batch_size = std::min<int64_t>(options.batch_size, folder.size());
  loader_options.num_workers = options.workers;
  loader_options.shuffle = false;
  loader_options.drop_last = false;
  absl::StatusOr<std::unique_ptr<data::Loader>> loader =
      data::Loader::Create(folder, recipe, loader_options);
  if (!loader.ok()) return loader.status();
  const bool was_training = backbone.is_training();
  backbone.eval();
  c10::AutoGradMode no_grad(false);
  std::vector<at::Tensor> features, labels;
  ProgressMeter progress(folder.size(), "features");
  (*loader)->StartEpoch(0);
  data::Batch batch;
  int64_t done = 0;
  while (true) {
    absl::StatusOr<bool> more = (*loader)->Next(&batch);
    if (!more.ok()) {
      backbone.train(was_training);
      return more.status();
    }
    if (!*more) break;
    features.push_back(backbone.Features(batch.views[0]));
    labels.push_back(batch.labels);
    done += batch.labels.size(0);
    progress.Update(done);
    if (options.show_progress && features.size() % 20 == 0) LOG(INFO) << progress.Line();
  }
  backbone.train(was_training);
  return FeatureSet{at::cat(features), at::cat(labels)};
}

absl::Status SaveFeatures(const FeatureSet& set, const std::vector<std::string>& classes,
                          const std::string& path) {
  c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
  dict.insert("features", set.features);
  dict.insert("labels", set.labels);
  c10::List<std::string> names;
  for (const std::string& name : classes) names.push_back(name);
  dict.insert("classes", names);
  return train::SaveIValue(dict, path);
}

}  // namespace ssl::eval
