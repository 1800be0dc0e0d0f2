// kNN accuracy of a pretrained checkpoint's frozen features (InstDisc / DINO protocol),
// or extraction of those features to a file Python's torch.load reads.
//
//   bazel run //tools:knn_eval -- --pretrained=ckpt.pth.tar --data=/path/to/root
//   bazel run //tools:knn_eval -- --pretrained=ckpt.pth.tar --extract=/path/to/folder
//       --features_out=features.pth
#include <ATen/Parallel.h>
#include <gflags/gflags.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "eval/features.h"
#include "eval/knn.h"
#include "ssl/core/file.h"
#include "ssl/core/logging.h"
#include "ssl/data/image_folder.h"
#include "ssl/train/pretrained.h"
#include "tools/cli_util.h"
#include "tools/device_flags.h"

DEFINE_string(pretrained, "", "Pretraining checkpoint, required.");
DEFINE_string(data, "", "Dataset root with --train_split (memory bank) and --val_split (queries).");
DEFINE_string(train_split, "train", "Memory bank sub-folder.");
DEFINE_string(val_split, "val", "Query sub-folder.");
DEFINE_string(k, "20,200", "Comma-separated neighbour counts.");
DEFINE_double(t, 0.07, "Vote temperature.");
DEFINE_int32(image_size, 0, "Center crop (0: the pretraining image size).");
DEFINE_int32(resize, 0, "Short side before the crop (0: image_size * 8 / 7).");
DEFINE_string(extract, "", "Instead of kNN: extract features of this ImageFolder ...");
DEFINE_string(features_out, "features.pth", "... into this file ({features, labels, classes}).");
DEFINE_string(backbone, "",
              "Which backbone of the checkpoint: empty for the method's evaluation backbone "
              "(MoCo v3: base, SwAV: trunk, Momentum^2 Teacher: teacher), or e.g. student.");
DEFINE_int32(workers, 2, "Loader threads.");
DEFINE_int32(threads, 0, "Compute threads (0: one per core).");
DEFINE_string(output, "", "kNN results JSON (default: knn_eval.json beside the checkpoint).");

int main(int argc, char** argv) {
  ssl::tools::ParseProgramFlags(&argc, &argv,
                                "kNN evaluation / feature extraction of a pretrained checkpoint");
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  auto fail = [](const absl::Status& s) {
    std::cerr << "knn_eval: " << s.message() << "\n";
    return 1;
  };
  for (std::string* path :
       {&FLAGS_pretrained, &FLAGS_data, &FLAGS_extract, &FLAGS_features_out, &FLAGS_output}) {
    *path = ssl::tools::UserPath(*path);
  }
  if (FLAGS_pretrained.empty()) return fail(absl::InvalidArgumentError("--pretrained is required"));
  if (FLAGS_threads > 0) at::set_num_threads(FLAGS_threads);
  auto config = ssl::train::ReadCheckpointConfig(FLAGS_pretrained, FLAGS_backbone);
  if (!config.ok()) return fail(config.status());
  auto backbone = ssl::train::LoadPretrainedBackbone(FLAGS_pretrained, 0, FLAGS_backbone);
  if (!backbone.ok()) return fail(backbone.status());
  absl::StatusOr<ssl::tools::DeviceChoice> device = ssl::tools::DeviceFromFlags(
      0, ssl::MixedPrecision::kOff);
  if (!device.ok()) return fail(device.status());
  (*backbone)->to(device->device);  // features are extracted where the weights are
  const int size = FLAGS_image_size > 0 ? FLAGS_image_size : config->image_size;
  const auto views = ssl::data::EvalViews(size, FLAGS_resize > 0 ? FLAGS_resize : size * 8 / 7);
  ssl::eval::ExtractOptions extract;
  extract.workers = FLAGS_workers;
  extract.show_progress = true;
  if (!FLAGS_extract.empty()) {
    auto folder = ssl::data::ImageFolder::Open(FLAGS_extract);
    if (!folder.ok()) return fail(folder.status());
    auto set = ssl::eval::ExtractFeatures(**backbone, *folder, views, extract);
    if (!set.ok()) return fail(set.status());
    if (absl::Status s = ssl::eval::SaveFeatures(*set, folder->classes(), FLAGS_features_out);
        !s.ok()) {
      return fail(s);
    }
    std::cout << "wrote " << set->features.size(0) << " x " << set->features.size(1)
              << " features to " << FLAGS_features_out << "\n";
    return 0;
  }
  if (FLAGS_data.empty())
    return fail(absl::InvalidArgumentError("--data (or --extract) is required"));
  auto train = ssl::data::ImageFolder::Open(FLAGS_data + "/" + FLAGS_train_split);
  if (!train.ok()) return fail(train.status());
  auto val = ssl::data::ImageFolder::Open(FLAGS_data + "/" + FLAGS_val_split);
  if (!val.ok()) return fail(val.status());
  auto bank = ssl::eval::ExtractFeatures(**backbone, *train, views, extract);
  if (!bank.ok()) return fail(bank.status());
  auto queries = ssl::eval::ExtractFeatures(**backbone, *val, views, extract);
  if (!queries.ok()) return fail(queries.status());
  const std::vector<int> ks = ssl::tools::ParseIntList(FLAGS_k);
  nlohmann::json json = {{"pretrained", FLAGS_pretrained}, {"t", FLAGS_t}};
  for (const auto& r : ssl::eval::KnnClassify(*bank, *queries, ks, FLAGS_t, train->num_classes())) {
    json["knn_top1_k" + std::to_string(r.k)] = r.top1;
    json["knn_top5_k" + std::to_string(r.k)] = r.top5;
    std::cout << "k=" << r.k << ": top-1 " << r.top1 << " top-5 " << r.top5 << "\n";
  }
  const std::string output =
      FLAGS_output.empty()
          ? (std::filesystem::path(FLAGS_pretrained).parent_path() / "knn_eval.json").string()
          : FLAGS_output;
  if (absl::Status s = ssl::WriteFileAtomically(output, json.dump(2) + "\n"); !s.ok())
    return fail(s);
  return 0;
}
