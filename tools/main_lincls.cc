// Linear classification of a pretrained checkpoint, MoCo v3's main_lincls.py protocol:
// frozen backbone in eval mode, fresh classifier N(0, 0.01), SGD momentum 0.9, wd 0,
// half-cosine per epoch, RandomResizedCrop + flip for training, resize + center crop
// for validation, and the sanity check that no frozen weight changed.
//
//   bazel run //tools:main_lincls -- --pretrained=/tmp/run/checkpoint_0099.pth.tar
//       --data=/path/to/imagenet --output=/tmp/run/linear.json
#include <ATen/Parallel.h>
#include <gflags/gflags.h>

#include <filesystem>
#include <iostream>

#include "eval/linear.h"
#include "ssl/core/file.h"
#include "ssl/core/logging.h"
#include "ssl/data/image_folder.h"
#include "ssl/train/pretrained.h"
#include "tools/cli_util.h"
#include "tools/device_flags.h"

DEFINE_string(pretrained, "", "Pretraining checkpoint (checkpoint_%04d.pth.tar), required.");
DEFINE_string(data, "", "Dataset root with the --train_split and --val_split ImageFolders.");
DEFINE_string(train_split, "train", "Training sub-folder.");
DEFINE_string(val_split, "val", "Validation sub-folder.");
DEFINE_int32(epochs, 90, "Epochs (90 in MoCo v3).");
DEFINE_int64(batch_size, 1024, "Batch; the lr scales with batch / 256.");
DEFINE_double(lr, 0, "Base lr; 0 picks MoCo v3's: 0.1 for ResNets, 3.0 for ViTs.");
DEFINE_double(weight_decay, 0.0, "Weight decay (0 in MoCo v3).");
DEFINE_int32(image_size, 0, "Crop size (0: the pretraining image size).");
DEFINE_int32(resize, 0, "Validation short side before the crop (0: image_size * 8 / 7).");
DEFINE_bool(cached_features, false, "CPU shortcut: train on cached center-crop features.");
DEFINE_int32(eval_every, 1, "Validate every N epochs.");
DEFINE_uint64(seed, 0, "Seed of the classifier init and data order.");
DEFINE_string(backbone, "",
              "Which backbone of the checkpoint: empty for the method's evaluation backbone "
              "(MoCo v3: base, SwAV: trunk, Momentum^2 Teacher: teacher), or e.g. student.");
DEFINE_int32(workers, 2, "Loader threads.");
DEFINE_int32(threads, 0, "Compute threads (0: one per core).");
DEFINE_string(output, "", "Results JSON (default: linear_eval.json beside the checkpoint).");

int main(int argc, char** argv) {
  ssl::tools::ParseProgramFlags(&argc, &argv,
                                "Linear classification on a frozen pretrained backbone");
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  auto fail = [](const absl::Status& s) {
    std::cerr << "main_lincls: " << s.message() << "\n";
    return 1;
  };
  for (std::string* path : {&FLAGS_pretrained, &FLAGS_data, &FLAGS_output}) {
    *path = ssl::tools::UserPath(*path);
  }
  if (FLAGS_pretrained.empty() || FLAGS_data.empty()) {
    return fail(absl::InvalidArgumentError("--pretrained and --data are required"));
  }
  if (FLAGS_threads > 0) at::set_num_threads(FLAGS_threads);
  auto config = ssl::train::ReadCheckpointConfig(FLAGS_pretrained, FLAGS_backbone);
  if (!config.ok()) return fail(config.status());
  auto backbone = ssl::train::LoadPretrainedBackbone(FLAGS_pretrained, 0, FLAGS_backbone);
  if (!backbone.ok()) return fail(backbone.status());
  absl::StatusOr<ssl::tools::DeviceChoice> device = ssl::tools::DeviceFromFlags(
      0, ssl::MixedPrecision::kOff);
  if (!device.ok()) return fail(device.status());
  (*backbone)->to(device->device);  // the classifier trains where the backbone is
  auto train = ssl::data::ImageFolder::Open(FLAGS_data + "/" + FLAGS_train_split);
  if (!train.ok()) return fail(train.status());
  auto val = ssl::data::ImageFolder::Open(FLAGS_data + "/" + FLAGS_val_split);
  if (!val.ok()) return fail(val.status());
  ssl::eval::LinearEvalOptions options;
  options.epochs = FLAGS_epochs;
  options.batch_size = FLAGS_batch_size;
  options.base_lr =
      FLAGS_lr != 0 ? FLAGS_lr : (ssl::backbones::HeadName(config->arch) == "head" ? 3.0 : 0.1);
  options.weight_decay = FLAGS_weight_decay;
  options.image_size = FLAGS_image_size > 0 ? FLAGS_image_size : config->image_size;
  options.resize = FLAGS_resize > 0 ? FLAGS_resize : options.image_size * 8 / 7;
  options.cached_features = FLAGS_cached_features;
  options.eval_every = FLAGS_eval_every;
  options.workers = FLAGS_workers;
  options.seed = FLAGS_seed;
  auto result = ssl::eval::RunLinearEval(**backbone, *train, *val, options);
  if (!result.ok()) return fail(result.status());
  nlohmann::json json = result->ToJson();
  json["pretrained"] = FLAGS_pretrained;
  json["arch"] = config->arch;
  json["pretrain_epochs"] = config->epoch;
  const std::string output =
      FLAGS_output.empty()
          ? (std::filesystem::path(FLAGS_pretrained).parent_path() / "linear_eval.json").string()
          : FLAGS_output;
  if (absl::Status s = ssl::WriteFileAtomically(output, json.dump(2) + "\n"); !s.ok())
    return fail(s);
  std::cout << "top-1 " << result->top1 << " (best " << result->best_top1 << " at epoch "
            << result->best_epoch << "), top-5 " << result->top5 << "; written to " << output
            << "\n";
  return 0;
}
