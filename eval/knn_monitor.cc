#include "eval/knn_monitor.h"

#include "eval/features.h"
#include "eval/knn.h"
#include "ssl/core/status_macros.h"
#include "ssl/data/image_folder.h"
#include "ssl/data/views.h"

namespace ssl::eval {

absl::StatusOr<train::EpochMonitor> MakeKnnMonitor(const KnnMonitorOptions& options) {
  if (options.every <= 0) return train::EpochMonitor();
  if (options.val_folder.empty()) {
    return absl::InvalidArgumentError("the kNN monitor needs validation images (--knn_val)");
  }
  SSL_ASSIGN_OR_RETURN(data::ImageFolder train, data::ImageFolder::Open(options.train_folder));
  SSL_ASSIGN_OR_RETURN(data::ImageFolder val, data::ImageFolder::Open(options.val_folder));
  auto bank_folder = std::make_shared<data::ImageFolder>(std::move(train));
  auto query_folder = std::make_shared<data::ImageFolder>(std::move(val));
  return train::EpochMonitor([options, bank_folder, query_folder](
                                 int epoch,
                                 backbones::Backbone& backbone) -> absl::StatusOr<nlohmann::json> {
    if (epoch % options.every != 0 && epoch != options.last_epoch) {
      return nlohmann::json::object();
    }
    const data::ViewRecipe views = data::EvalViews(options.image_size, options.resize);
    ExtractOptions extract;
    extract.workers = options.workers;
    SSL_ASSIGN_OR_RETURN(FeatureSet bank, ExtractFeatures(backbone, *bank_folder, views, extract));
    SSL_ASSIGN_OR_RETURN(FeatureSet queries,
                         ExtractFeatures(backbone, *query_folder, views, extract));
    nlohmann::json record;
    for (const KnnResult& r :
         KnnClassify(bank, queries, options.ks, options.temperature, bank_folder->num_classes())) {
      record["knn_top1_k" + std::to_string(r.k)] = r.top1;
    }
    return record;
  });
}

}  // namespace ssl::eval
