// Momentum^2 Teacher's linear evaluation with the original's command line
// (tools/eval.py): the TEACHER's backbone of outputs/<experiment name>/
// last_epoch_ckpt.pth.tar (its Momentum BN statistics in plain BN, eval mode, frozen),
// a Linear(features, classes) + BatchNorm1d(classes) classifier initialized N(0, 0.01),
// SGD momentum 0.9 without weight decay; -f linear_eval_exp_byol (the default, as the
// published numbers): 80 epochs, lr 0.2 x B / 256, cosine per iteration;
// -f linear_eval_exp: 100 epochs, lr 30 x B / 256, x0.1 at epochs 60 and 80. The
// classifier's BatchNorm1d normalizes over groups of --bn_samples images (32: what each
// of the original's 8 GPUs sees at -b 256), and an epoch's incomplete last batch is
// dropped, as the original's loader drops it.
//
//   m2teacher_eval -b 256 --experiment-name my_exp --data data/imagenet
#include <ATen/Parallel.h>
#include <gflags/gflags.h>

#include <filesystem>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "eval/linear.h"
#include "ssl/core/file.h"
#include "ssl/core/logging.h"
#include "ssl/data/image_folder.h"
#include "ssl/train/pretrained.h"
#include "tools/cli_util.h"

DEFINE_int64(b, 256, "Batch (-b / --batch-size); the lr scales with it.");
DEFINE_string(experiment_name, "",
              "Pretraining folder under outputs/ (--experiment-name); its "
              "last_epoch_ckpt.pth.tar is evaluated.");
DEFINE_string(pretrained, "", "A checkpoint to evaluate instead of outputs/<name>/...");
DEFINE_string(f, "linear_eval_exp_byol",
              "Protocol (-f): linear_eval_exp_byol (80 ep, lr 0.2/256 per image, cosine per "
              "iteration) or linear_eval_exp (100 ep, lr 30/256, steps at 60 and 80).");
DEFINE_string(data, "data", "Root with the --train_split and --val_split ImageFolders.");
DEFINE_string(train_split, "imagenet_train", "Training sub-folder (the original's name).");
DEFINE_string(val_split, "imagenet_val", "Validation sub-folder.");
DEFINE_string(backbone, "teacher", "teacher (the original's) or student.");
DEFINE_int64(bn_samples, 32,
             "The classifier BatchNorm1d's training statistics over groups of this many images, "
             "as the original computes them on each GPU (-b 256 on its 8 GPUs: 32); the batch "
             "must be a multiple. 0: over the whole batch.");
DEFINE_int32(epochs, 0, "Override the protocol's epochs (0: keep them).");
DEFINE_int32(image_size, 0, "Crop size (0: the pretraining crop size).");
DEFINE_bool(cached_features, false,
            "CPU shortcut: train on cached center-crop features instead of augmented crops.");
DEFINE_int32(workers, 2, "Loader threads.");
DEFINE_int32(threads, 0, "Compute threads (0: one per core).");
DEFINE_uint64(seed, 0, "Classifier init and data order.");
DEFINE_string(output, "",
              "Results JSON (default: <checkpoint dir>/byol_linear_eval_teacher.json).");

namespace {

int Fail(const absl::Status& status) {
  std::cerr << "m2teacher_eval: " << status.message() << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string usage =
      "Momentum^2 Teacher linear evaluation, tools/eval.py's command line:\n"
      "  m2teacher_eval -b 256 --experiment-name my_exp --data data\n"
      "Library flags: --helpfull.";
  // The original's spellings.
  std::vector<std::string> args = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    for (const auto& [from, to] : {std::pair<std::string, std::string>{"--batch-size", "--b"},
                                   {"--experiment-name", "--experiment_name"},
                                   {"--experiment_name", "--experiment_name"},
                                   {"-expn", "--experiment_name"},
                                   {"--exp_file", "--f"}}) {
      if (arg == from || arg.rfind(from + "=", 0) == 0) arg = to + arg.substr(from.size());
    }
    args.push_back(arg);
  }
  std::vector<char*> pointers;
  for (std::string& arg : args) pointers.push_back(arg.data());
  int count = static_cast<int>(pointers.size());
  char** parsed = pointers.data();
  ssl::tools::ParseProgramFlags(&count, &parsed, usage);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  if (FLAGS_threads > 0) at::set_num_threads(FLAGS_threads);
  ssl::eval::LinearEvalOptions options;
  options.classifier_bn = true;
  options.classifier_bn_samples = FLAGS_bn_samples;
  if (FLAGS_bn_samples < 0 || (FLAGS_bn_samples > 0 && FLAGS_b % FLAGS_bn_samples != 0)) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "-b ", FLAGS_b, " is not a multiple of --bn_samples ", FLAGS_bn_samples,
        " (the images each of the original's GPUs normalizes over); give a divisor of -b, or "
        "--bn_samples=0 for statistics over the whole batch")));
  }
  options.momentum = 0.9;
  options.weight_decay = 0;
  options.batch_size = FLAGS_b;
  if (FLAGS_f == "linear_eval_exp_byol") {
    options.epochs = 80;
    options.base_lr = 0.2;
    options.schedule = "cos_iter";
  } else if (FLAGS_f == "linear_eval_exp") {
    options.epochs = 100;
    options.base_lr = 30.0;
    options.schedule = "multistep";
    options.milestones = {60, 80};
  } else {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("-f must be linear_eval_exp_byol or linear_eval_exp, got \"", FLAGS_f, "\"")));
  }
  if (FLAGS_epochs > 0) options.epochs = FLAGS_epochs;
  std::string checkpoint = ssl::tools::UserPath(FLAGS_pretrained);
  if (checkpoint.empty()) {
    if (FLAGS_experiment_name.empty()) {
      return Fail(absl::InvalidArgumentError("give --experiment-name (or --pretrained)"));
    }
    checkpoint =
        ssl::tools::UserPath("outputs/" + FLAGS_experiment_name + "/last_epoch_ckpt.pth.tar");
  }
  auto config = ssl::train::ReadCheckpointConfig(checkpoint, FLAGS_backbone);
  if (!config.ok()) return Fail(config.status());
  auto backbone = ssl::train::LoadPretrainedBackbone(checkpoint, 0, FLAGS_backbone);
  if (!backbone.ok()) return Fail(backbone.status());
  const std::string root = ssl::tools::UserPath(FLAGS_data);
  auto train = ssl::data::ImageFolder::Open(root + "/" + FLAGS_train_split);
  if (!train.ok()) return Fail(train.status());
  auto val = ssl::data::ImageFolder::Open(root + "/" + FLAGS_val_split);
  if (!val.ok()) return Fail(val.status());
  options.image_size = FLAGS_image_size > 0 ? FLAGS_image_size : config->image_size;
  options.resize = options.image_size * 8 / 7;
  options.cached_features = FLAGS_cached_features;
  options.workers = FLAGS_workers;
  options.seed = FLAGS_seed;
  options.eval_every = std::max(1, options.epochs / 10);
  auto result = ssl::eval::RunLinearEval(**backbone, *train, *val, options);
  if (!result.ok()) return Fail(result.status());
  nlohmann::json json = result->ToJson();
  json["pretrained"] = checkpoint;
  json["backbone"] = FLAGS_backbone;
  json["protocol"] = FLAGS_f;
  json["pretrain_epochs"] = config->epoch;
  const std::string output =
      FLAGS_output.empty()
          ? (std::filesystem::path(checkpoint).parent_path() / "byol_linear_eval_teacher.json")
                .string()
          : ssl::tools::UserPath(FLAGS_output);
  if (absl::Status s = ssl::WriteFileAtomically(output, json.dump(2) + "\n"); !s.ok()) {
    return Fail(s);
  }
  std::cout << "top-1 " << result->top1 << " (best " << result->best_top1 << " at epoch "
            << result->best_epoch << "), top-5 " << result->top5 << "; written to " << output
            << "\n";
  return 0;
}
