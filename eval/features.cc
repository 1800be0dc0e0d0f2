#include "eval/features.h"

#include <ATen/core/Dict.h>
#include <ATen/core/List.h>
#include <ATen/ops/cat.h>
#include <c10/core/GradMode.h>

#include "ssl/core/logging.h"
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
  const bool was_training = backbone.is_training();
  backbone.eval();
  // Batches go where the backbone's weights are (a GPU during GPU training); features
  // come back to the host.
  const std::vector<at::Tensor> weights = backbone.parameters();
  const c10::Device device = weights.empty() ? c10::Device(c10::kCPU) : weights.front().device();
  loader_options.pin_memory = device.is_cuda();
  absl::StatusOr<std::unique_ptr<data::Loader>> loader =
      data::Loader::Create(folder, recipe, loader_options);
  if (!loader.ok()) {
    backbone.train(was_training);
    return loader.status();
  }
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
    const at::Tensor images = batch.views[0].to(device, /*non_blocking=*/true);
    features.push_back(backbone.Features(images).to(c10::kCPU));
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
