// MoCo v3 pretraining, with the flags of moco-v3's main_moco.py (underscores for
// dashes). Defaults are the paper's ResNet-50 100-epoch recipe (CONFIG.md): batch 4096,
// LARS, lr 0.6, wd 1e-6, warmup 10, cosine momentum from 0.99, crop-min 0.2.
//
//   bazel run //tools:main_moco -- --data=/path/to/train --output_dir=/tmp/run
//
// Rerunning with --resume=latest continues from the newest checkpoint exactly.
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <filesystem>
#include <iostream>

#include "eval/features.h"
#include "eval/knn.h"
#include "ssl/data/image_folder.h"
#include "ssl/data/views.h"
#include "ssl/distributed/communicator.h"
#include "ssl/train/pretrain.h"
#include "tools/moco_flags.h"

DEFINE_string(data, "",
              "Training images as an ImageFolder (<root>/<class>/<image>). May also be "
              "given as the first positional argument, as in main_moco.py.");
DEFINE_string(output_dir, "", "Where checkpoint_%04d.pth.tar and metrics.jsonl go (required).");
DEFINE_bool(stop_grad_conv1, false, "ViT only: keep the patch projection at its random init.");
DEFINE_string(resume, "",
              "Checkpoint to resume from, or \"latest\" for the newest in --output_dir.");
DEFINE_int32(max_epochs_this_run, 0, "Stop after this many epochs in this invocation (0: all).");
DEFINE_int32(knn_every, 0, "Run the kNN monitor every N epochs (0: off); needs --knn_val.");
DEFINE_string(knn_train, "", "kNN memory bank images (default: --data).");
DEFINE_string(knn_val, "", "kNN query images, e.g. the validation split.");
DEFINE_string(knn_k, "20,200", "Comma-separated neighbour counts.");
DEFINE_double(knn_t, 0.07, "kNN vote temperature.");
DEFINE_int32(knn_resize, 0, "Short side before the kNN center crop (0: image_size * 8 / 7).");

namespace {

int Fail(const absl::Status& status) {
  std::cerr << "main_moco: " << status.message() << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage("MoCo v3 self-supervised pretraining (see --helpfull for all flags)");
  gflags::ParseCommandLineFlags(&argc, &argv, /*remove_flags=*/true);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  if (FLAGS_data.empty() && argc > 1) FLAGS_data = argv[1];
  for (std::string* path : {&FLAGS_data, &FLAGS_output_dir, &FLAGS_knn_train, &FLAGS_knn_val}) {
    *path = ssl::tools::UserPath(*path);
  }
  if (FLAGS_resume != "latest") FLAGS_resume = ssl::tools::UserPath(FLAGS_resume);
  if (FLAGS_stop_grad_conv1) {
    return Fail(absl::InvalidArgumentError(
        "--stop_grad_conv1 applies to ViT backbones, and --arch " + FLAGS_arch + " is a ResNet"));
  }
  ssl::tools::ApplyThreadsFlag();

  ssl::train::PretrainOptions options = ssl::tools::PretrainOptionsFromFlags();
  options.data = FLAGS_data;
  options.output_dir = FLAGS_output_dir;
  options.resume = FLAGS_resume;
  options.max_epochs_this_run = FLAGS_max_epochs_this_run;

  ssl::train::EpochMonitor monitor;
  std::unique_ptr<ssl::data::ImageFolder> knn_train, knn_val;
  if (FLAGS_knn_every > 0) {
    if (FLAGS_knn_val.empty())
      return Fail(absl::InvalidArgumentError("--knn_every needs --knn_val"));
    auto train =
        ssl::data::ImageFolder::Open(FLAGS_knn_train.empty() ? FLAGS_data : FLAGS_knn_train);
    if (!train.ok()) return Fail(train.status());
    auto val = ssl::data::ImageFolder::Open(FLAGS_knn_val);
    if (!val.ok()) return Fail(val.status());
    knn_train = std::make_unique<ssl::data::ImageFolder>(*std::move(train));
    knn_val = std::make_unique<ssl::data::ImageFolder>(*std::move(val));
    const int resize = FLAGS_knn_resize > 0 ? FLAGS_knn_resize : FLAGS_image_size * 8 / 7;
    const std::vector<int> ks = ssl::tools::ParseIntList(FLAGS_knn_k);
    monitor = [&, resize, ks](
                  int epoch, ssl::backbones::Backbone& backbone) -> absl::StatusOr<nlohmann::json> {
      if (epoch % FLAGS_knn_every != 0 && epoch != FLAGS_epochs) return nlohmann::json::object();
      const ssl::data::ViewRecipe views = ssl::data::EvalViews(FLAGS_image_size, resize);
      ssl::eval::ExtractOptions extract;
      extract.workers = FLAGS_workers;
      auto bank = ssl::eval::ExtractFeatures(backbone, *knn_train, views, extract);
      if (!bank.ok()) return bank.status();
      auto queries = ssl::eval::ExtractFeatures(backbone, *knn_val, views, extract);
      if (!queries.ok()) return queries.status();
      nlohmann::json record;
      for (const auto& r :
           ssl::eval::KnnClassify(*bank, *queries, ks, FLAGS_knn_t, knn_train->num_classes())) {
        record["knn_top1_k" + std::to_string(r.k)] = r.top1;
      }
      return record;
    };
  }
  absl::StatusOr<ssl::train::PretrainResult> result =
      ssl::train::RunMocoV3Pretraining(options, ssl::distributed::MakeLocalCommunicator(), monitor);
  if (!result.ok()) return Fail(result.status());
  std::cout << "finished " << result->epochs_completed << "/" << FLAGS_epochs
            << " epochs; last checkpoint " << result->last_checkpoint << "; "
            << result->images_per_second << " images/s\n";
  return 0;
}
