// Runs one declared experiment end to end: (synthetic data if asked), pretraining with
// the entry's method (resumable: rerunning continues), then kNN and linear evaluation of
// the pretrained backbone and of the same method's random-init backbone under the same
// protocol, a table on the screen, and a results JSON (in --work_dir, and under the
// workspace's results/ with --record). experiments/defs.bzl generates the flags of each
// declared entry: MoCo v3 entries are main_moco.py flags, SwAV entries a VISSL config
// (--config) with overrides.
#include <ATen/Context.h>
#include <gflags/gflags.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "eval/features.h"
#include "eval/finetune.h"
#include "eval/knn.h"
#include "eval/linear.h"
#include "ssl/backbones/backbone.h"
#include "ssl/core/file.h"
#include "ssl/core/logging.h"
#include "ssl/data/image_folder.h"
#include "ssl/data/synthetic.h"
#include "ssl/data/views.h"
#include "ssl/distributed/communicator.h"
#include "ssl/methods/m2teacher.h"
#include "ssl/methods/mocov3.h"
#include "ssl/methods/swav.h"
#include "ssl/train/checkpointer.h"
#include "ssl/train/pretrain.h"
#include "ssl/train/pretrained.h"
#include "tools/cli_util.h"
#include "tools/device_flags.h"
#include "tools/m2teacher_recipes.h"
#include "tools/moco_flags.h"
#include "tools/swav_recipe.h"
#include "tools/vissl_config.h"
#include "transfer/datasets.h"

DEFINE_string(name, "experiment", "Entry name (results file name).");
DEFINE_string(method, "mocov3",
              "Method: mocov3 (main_moco.py flags), swav (a VISSL config) or m2teacher (a "
              "Momentum^2 Teacher description with --batch_size and --epochs).");
DEFINE_string(m2t_recipe, "cpu/momentum2_teacher_resnet18w025_64px",
              "m2teacher: the experiment description (m2teacher_train -f=list).");
DEFINE_string(m2t_set, "", "m2teacher: description attribute overrides (m2teacher_train --set).");
DEFINE_string(m2t_devices, "0", "m2teacher: device ids, one process each (-d).");
DEFINE_int32(m2t_stop_after_epochs, 0,
             "m2teacher: pretrain only the first N epochs of the --epochs schedule (lr, teacher "
             "momentum and Momentum BN as in the full run), then evaluate (0: the whole run).");
DEFINE_bool(linear_classifier_bn, false,
            "Linear classification with a BatchNorm1d after the Linear (Momentum^2 Teacher's).");
DEFINE_int64(linear_bn_samples, 0,
             "With --linear_classifier_bn: the classifier BN's statistics over groups of this "
             "many images (Momentum^2 Teacher's 32 per GPU); 0: the whole batch.");
DEFINE_string(linear_schedule, "cos_epoch",
              "cos_epoch (MoCo v3), cos_iter (Momentum^2 Teacher) or multistep.");
DEFINE_string(config, "",
              "SwAV: the VISSL config, a name under configs/config/ (this project's own) or a "
              "YAML path.");
DEFINE_string(config_dir, "",
              "SwAV: comma-separated configs/ directories searched before this project's own "
              "(a VISSL checkout's configs/ for the ImageNet entries).");
DEFINE_string(overrides, "",
              "SwAV: space-separated VISSL overrides (config.A.B=value, +config/<group>=<name>).");
DEFINE_string(data, "",
              "Dataset root holding the --train_split and --val_split ImageFolders. "
              "Empty with --synthetic: the built-in shapes dataset is generated.");
DEFINE_bool(synthetic, false, "Generate the synthetic shapes dataset into <work_dir>/data.");
DEFINE_int32(synthetic_classes, 10, "Synthetic: classes.");
DEFINE_int32(synthetic_train_per_class, 300, "Synthetic: training images per class.");
DEFINE_int32(synthetic_val_per_class, 100, "Synthetic: validation images per class.");
DEFINE_int32(synthetic_image_size, 64, "Synthetic: image side.");
DEFINE_string(train_split, "train", "Sub-folder with the training images.");
DEFINE_string(val_split, "val", "Sub-folder with the evaluation images (CIFAR-10: test).");
DEFINE_string(work_dir, "",
              "Checkpoints, logs and results (default /tmp/ssl_experiments/<method>/<name>); "
              "rerunning resumes from its checkpoints.");
DEFINE_bool(record, false, "Also write results/<method>/<name>.json into the workspace.");
DEFINE_string(command, "", "The command that reproduces this run, stored in the results.");
DEFINE_bool(random_init_baseline, true, "Also evaluate a random-init backbone.");
DEFINE_string(pretrained_checkpoint, "",
              "Skip pretraining and evaluate / fine-tune this checkpoint (e.g. another entry's "
              "<work_dir>/pretrain/checkpoint_%04d.pth.tar, or an original's file).");
// Pretraining flags: tools/moco_flags.cc.
// Evaluation.
DEFINE_int32(eval_resize, 0, "Short side before the eval center crop (0: image_size * 8 / 7).");
DEFINE_string(knn_k, "20,200", "kNN neighbour counts.");
DEFINE_double(knn_t, 0.07, "kNN temperature.");
DEFINE_bool(linear, true, "Run linear classification.");
DEFINE_int32(linear_epochs, 90, "Linear classification epochs.");
DEFINE_int64(linear_batch_size, 1024, "Linear classification batch.");
DEFINE_double(linear_lr, 0,
              "Linear classification base lr (scaled by batch / 256); 0 picks MoCo v3's: 0.1 "
              "for ResNets, 3.0 for ViTs.");
DEFINE_bool(linear_cached_features, false, "Train the classifier on cached center-crop features.");

// Fine-tuning stage (DeiT's recipe, eval/finetune.h), after pretraining and evaluation.
DEFINE_string(finetune_dataset, "",
              "Fine-tune the pretrained backbone and a random init end to end on this dataset "
              "format (imagefolder, cifar10, cifar100, flowers102, pets; transfer/datasets.h); "
              "empty: no fine-tuning stage.");
DEFINE_string(finetune_data, "", "Its root (default: --data).");
DEFINE_string(finetune_train_split, "train", "imagefolder: training sub-folder.");
DEFINE_string(finetune_val_split, "val", "imagefolder: evaluation sub-folder (CIFAR-10: test).");
DEFINE_int32(finetune_epochs, 100, "Fine-tuning epochs.");
DEFINE_int64(finetune_batch_size, 1024, "Fine-tuning batch (lr scales with batch / 512).");
DEFINE_double(finetune_lr, 5e-4, "Fine-tuning base lr (AdamW).");
DEFINE_double(finetune_weight_decay, 0.05, "Fine-tuning weight decay.");
DEFINE_int32(finetune_warmup_epochs, 5, "Fine-tuning warmup epochs.");
DEFINE_double(finetune_mixup, 0.8, "Fine-tuning Mixup alpha.");
DEFINE_double(finetune_cutmix, 1.0, "Fine-tuning CutMix alpha.");
DEFINE_double(finetune_smoothing, 0.1, "Fine-tuning label smoothing.");
DEFINE_string(finetune_aa, "rand-m9-mstd0.5-inc1", "Fine-tuning RandAugment (empty: off).");
DEFINE_double(finetune_reprob, 0.25, "Fine-tuning random erasing probability.");
DEFINE_string(finetune_interpolation, "bicubic",
              "Fine-tuning resize filter: bicubic (DeiT) or bilinear (moco-v3's transfer "
              "recipe).");
DEFINE_double(finetune_crop_min, 0.08,
              "Fine-tuning RandomResizedCrop smallest area (DeiT 0.08, moco-v3 transfer 0.05).");
DEFINE_double(finetune_drop_path, 0.1, "Fine-tuning drop path (ViTs).");
DEFINE_int32(finetune_repeated_aug, 3, "Fine-tuning repeated augmentation copies (1: off).");

namespace {

using nlohmann::json;

int Fail(const absl::Status& status) {
  std::cerr << "run_experiment: " << status.message() << "\n";
  return 1;
}

// kNN and (optionally) linear accuracy of a backbone.
absl::StatusOr<json> Evaluate(ssl::backbones::Backbone& backbone,
                              const ssl::data::ImageFolder& train,
                              const ssl::data::ImageFolder& val, int image_size,
                              const std::string& label) {
  const int resize = FLAGS_eval_resize > 0 ? FLAGS_eval_resize : image_size * 8 / 7;
  ssl::eval::ExtractOptions extract;
  extract.workers = FLAGS_workers;
  const ssl::data::ViewRecipe views = ssl::data::EvalViews(image_size, resize);
  LOG(INFO) << label << ": extracting features for kNN";
  auto bank = ssl::eval::ExtractFeatures(backbone, train, views, extract);
  if (!bank.ok()) return bank.status();
  auto queries = ssl::eval::ExtractFeatures(backbone, val, views, extract);
  if (!queries.ok()) return queries.status();
  json result;
  for (const auto& r :
       ssl::eval::KnnClassify(*bank, *queries, ssl::tools::ParseIntList(FLAGS_knn_k), FLAGS_knn_t,
                              train.num_classes())) {
    result["knn_top1_k" + std::to_string(r.k)] = r.top1;
  }
  if (FLAGS_linear) {
    LOG(INFO) << label << ": linear classification";
    ssl::eval::LinearEvalOptions linear;
    linear.epochs = FLAGS_linear_epochs;
    linear.batch_size = FLAGS_linear_batch_size;
    linear.base_lr = FLAGS_linear_lr != 0
                         ? FLAGS_linear_lr
                         : (ssl::backbones::HeadName(backbone.name()) == "head" ? 3.0 : 0.1);
    linear.image_size = image_size;
    linear.resize = resize;
    linear.cached_features = FLAGS_linear_cached_features;
    linear.classifier_bn = FLAGS_linear_classifier_bn;
    linear.classifier_bn_samples = FLAGS_linear_bn_samples;
    linear.schedule = FLAGS_linear_schedule;
    linear.workers = FLAGS_workers;
    linear.seed = FLAGS_seed;
    linear.eval_every = std::max(1, FLAGS_linear_epochs / 10);
    auto lin = ssl::eval::RunLinearEval(backbone, train, val, linear);
    if (!lin.ok()) return lin.status();
    result["linear_top1"] = lin->top1;
    result["linear_top5"] = lin->top5;
    result["linear_best_top1"] = lin->best_top1;
    result["linear_mode"] = lin->mode;
    result["linear_epochs"] = lin->epochs;
  }
  return result;
}

std::string Cell(const json& j, const std::string& key) {
  return j.contains(key) ? absl::StrFormat("%.2f", j[key].get<double>()) : "-";
}

std::vector<std::string> SwavConfigRoots() {
  std::vector<std::string> roots;
  for (const std::string& dir :
       std::vector<std::string>(absl::StrSplit(FLAGS_config_dir, ',', absl::SkipEmpty()))) {
    roots.push_back(ssl::tools::UserPath(dir));
  }
  if (const char* runfiles = std::getenv("RUNFILES_DIR")) {
    roots.push_back(std::string(runfiles) + "/ssl/configs");
  }
  roots.push_back(ssl::tools::UserPath("configs"));
  return roots;
}

// The path of a program built beside this one (a data dependency).
std::string SiblingProgram(const std::string& name) {
  const char* runfiles = std::getenv("RUNFILES_DIR");
  return runfiles ? std::string(runfiles) + "/ssl/tools/" + name
                  : (std::filesystem::path(gflags::GetArgv0()).parent_path() / name).string();
}

// Runs a pretraining program and waits; its log goes to this program's stdout and
// stderr, its summary comes from <output_dir>/pretrain_result.json.
absl::StatusOr<ssl::train::PretrainResult> PretrainInSubprocess(std::vector<std::string> args,
                                                                const std::string& output_dir) {
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  std::cout.flush();
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("cannot start the pretraining (fork failed)");
  if (pid == 0) {
    execv(argv[0], argv.data());
    std::cerr << "run_experiment: cannot execute " << args[0] << "\n";
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat("the pretraining (", args[0], ") failed with ",
                                            WIFEXITED(status)
                                                ? absl::StrCat("exit code ", WEXITSTATUS(status))
                                                : absl::StrCat("signal ", WTERMSIG(status)),
                                            "; its messages are above"));
  }
  return ssl::train::ReadPretrainResult(output_dir);
}

// SwAV: //tools:run_distributed_engines with the entry's config, which starts the
// config's DISTRIBUTED.NUM_NODES x NUM_PROC_PER_NODE processes itself.
absl::StatusOr<ssl::train::PretrainResult> PretrainSwav(const std::string& train_dir,
                                                        const std::string& output_dir) {
  std::vector<std::string> args = {SiblingProgram("run_distributed_engines"), "--data=" + train_dir,
                                   "--config_dir=" + absl::StrJoin(SwavConfigRoots(), ","),
                                   "config=" + FLAGS_config};
  if (FLAGS_threads > 0) args.push_back("--threads=" + std::to_string(FLAGS_threads));
  for (const std::string& item :
       std::vector<std::string>(absl::StrSplit(FLAGS_overrides, ' ', absl::SkipEmpty()))) {
    args.push_back(item);
  }
  args.push_back("config.CHECKPOINT.DIR=" + output_dir);
  args.push_back("config.CHECKPOINT.AUTO_RESUME=true");
  if (!gflags::GetCommandLineFlagInfoOrDie("print_freq").is_default) {
    args.push_back("config.LOG_FREQUENCY=" + std::to_string(FLAGS_print_freq));
  }
  return PretrainInSubprocess(args, output_dir);
}

// Momentum^2 Teacher: //tools:m2teacher_train with the entry's description, batch,
// epochs and devices (one process per device id).
absl::StatusOr<ssl::train::PretrainResult> PretrainM2Teacher(const std::string& train_dir,
                                                             const std::string& output_dir) {
  std::vector<std::string> args = {SiblingProgram("m2teacher_train"),
                                   "-b=" + std::to_string(FLAGS_batch_size),
                                   "-d=" + FLAGS_m2t_devices,
                                   "-f=" + FLAGS_m2t_recipe,
                                   "--epochs=" + std::to_string(FLAGS_epochs),
                                   "--seed=" + std::to_string(FLAGS_seed),
                                   "--workers=" + std::to_string(FLAGS_workers),
                                   "--data=" + train_dir,
                                   "--output_dir=" + output_dir};
  if (!FLAGS_m2t_set.empty()) args.push_back("--set=" + FLAGS_m2t_set);
  if (FLAGS_m2t_stop_after_epochs > 0) {
    // A rerun starts over: resuming would train the next N epochs instead.
    args.push_back("--max_epochs_this_run=" + std::to_string(FLAGS_m2t_stop_after_epochs));
    args.push_back("--noresume");
  }
  if (FLAGS_threads > 0) args.push_back("--threads=" + std::to_string(FLAGS_threads));
  return PretrainInSubprocess(args, output_dir);
}

// SwAV's prototypes in a checkpoint: the mean L2 norm of their rows (renormalized before
// every step, so near 1; the 4-epoch entry checks it because training this short cannot
// show a missing normalization in its loss or accuracy) and the trivial loss of uniform
// predictions (ln K, averaged over the prototype layers as the loss averages them).
// NotFound where the checkpoint has no prototypes.
struct PrototypeSummary {
  double mean_row_norm = 0;
  double ln_num_prototypes = 0;
};

absl::StatusOr<PrototypeSummary> SummarizePrototypes(const std::string& checkpoint) {
  absl::StatusOr<ssl::train::TrainingSnapshot> snapshot = ssl::train::ReadSnapshot(checkpoint);
  if (!snapshot.ok()) return snapshot.status();
  double norm_sum = 0, ln_k_sum = 0;
  int64_t rows = 0, layers = 0;
  for (const auto& item : snapshot->model) {
    const std::string& key = item.key().toStringRef();
    if (key.find(".prototypes") == std::string::npos || !absl::EndsWith(key, ".weight") ||
        !item.value().isTensor()) {
      continue;
    }
    const at::Tensor weight = item.value().toTensor().to(at::kDouble);
    norm_sum += weight.norm(2, {1}).sum().item<double>();
    rows += weight.size(0);
    ln_k_sum += std::log(static_cast<double>(weight.size(0)));
    ++layers;
  }
  if (rows == 0) return absl::NotFoundError("no prototypes");
  return PrototypeSummary{norm_sum / rows, ln_k_sum / layers};
}

// A freshly initialized method (seeded) and the engine's options for this entry.
struct PretrainStage {
  std::shared_ptr<ssl::methods::Method> method;
  ssl::train::PretrainOptions options;
};

absl::StatusOr<PretrainStage> MakeStage(const std::string& train_dir,
                                        const std::string& output_dir) {
  PretrainStage stage;
  const std::shared_ptr<ssl::distributed::Communicator> single_process =
      ssl::distributed::MakeLocalCommunicator();
  if (FLAGS_method == "mocov3") {
    if (absl::Status s = ssl::tools::ValidateMocoFlags(); !s.ok()) return s;
    stage.options = ssl::tools::PretrainOptionsFromFlags();
    at::manual_seed(FLAGS_seed);
    auto moco =
        ssl::methods::MocoV3Impl::Create(ssl::tools::MocoV3OptionsFromFlags(), single_process);
    if (!moco.ok()) return moco.status();
    stage.method = *moco;
  } else if (FLAGS_method == "m2teacher") {
    auto recipe = ssl::tools::FindM2TeacherRecipe(FLAGS_m2t_recipe);
    if (!recipe.ok()) return recipe.status();
    // The description as m2teacher_train reads it, overrides included (the random-init
    // baseline must be the architecture the subprocess trains).
    if (absl::Status s = ssl::tools::ApplyM2TeacherOverrides(FLAGS_m2t_set, &*recipe); !s.ok()) {
      return s;
    }
    stage.options.batch_size = FLAGS_batch_size;
    stage.options.epochs = FLAGS_epochs;
    const ssl::tools::M2TeacherRecipe r = *recipe;
    const int64_t batch = FLAGS_batch_size;
    stage.options.learning_rate = [r, batch](const ssl::methods::StepContext& step) {
      return ssl::tools::M2TeacherLearningRate(r, "warmcos", batch, step.global_step,
                                               step.iterations_per_epoch,
                                               static_cast<int>(step.epochs));
    };
    stage.options.optimizer = recipe->optimizer;
    stage.options.optimizer_options.weight_decay = recipe->weight_decay;
    stage.options.optimizer_options.momentum = 0.9;
    stage.options.print_freq = FLAGS_print_freq;
    stage.options.seed = FLAGS_seed;
    stage.options.workers = FLAGS_workers;
    stage.options.bn = "local";
    stage.options.layout = ssl::train::M2TeacherLayout();
    stage.options.program_config = {{"recipe", recipe->name}};
    at::manual_seed(FLAGS_seed);
    auto m2t = ssl::methods::M2TeacherImpl::Create(ssl::tools::M2TeacherMethodOptions(*recipe));
    if (!m2t.ok()) return m2t.status();
    stage.method = *m2t;
  } else {
    std::vector<std::string> arguments = {"config=" + FLAGS_config};
    for (const std::string& item :
         std::vector<std::string>(absl::StrSplit(FLAGS_overrides, ' ', absl::SkipEmpty()))) {
      arguments.push_back(item);
    }
    auto command_line = ssl::tools::ParseVisslArguments(arguments);
    if (!command_line.ok()) return command_line.status();
    auto config = ssl::tools::ComposeVisslConfig(*command_line, SwavConfigRoots());
    if (!config.ok()) return config.status();
    auto recipe = ssl::tools::SwavRecipeFromConfig(*config, train_dir);
    if (!recipe.ok()) return recipe.status();
    stage.options = recipe->train;
    stage.options.program_config = recipe->resolved;
    // The caller's --print_freq (e.g. the quiet regression tests) wins over LOG_FREQUENCY.
    if (!gflags::GetCommandLineFlagInfoOrDie("print_freq").is_default) {
      stage.options.print_freq = FLAGS_print_freq;
    }
    at::manual_seed(stage.options.seed);
    auto swav = ssl::methods::SwavImpl::Create(recipe->swav, single_process);
    if (!swav.ok()) return swav.status();
    stage.method = *swav;
  }
  stage.options.data = train_dir;
  stage.options.output_dir = output_dir;
  stage.options.resume = "latest";
  return stage;
}

}  // namespace

int main(int argc, char** argv) {
  ssl::tools::ParseProgramFlags(
      &argc, &argv, "Pretrain + evaluate one experiment entry (see experiments/defs.bzl)");
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  if (FLAGS_method != "mocov3" && FLAGS_method != "swav" && FLAGS_method != "m2teacher") {
    return Fail(absl::InvalidArgumentError("--method must be mocov3, swav or m2teacher, got \"" +
                                           FLAGS_method + "\""));
  }
  ssl::tools::ApplyThreadsFlag();
  const std::string work_dir = ssl::tools::UserPath(
      FLAGS_work_dir.empty()
          ? (std::filesystem::temp_directory_path() / "ssl_experiments" / FLAGS_method / FLAGS_name)
                .string()
          : FLAGS_work_dir);
  std::filesystem::create_directories(work_dir);
  std::string data_root = ssl::tools::UserPath(FLAGS_data);
  if (data_root.empty()) {
    if (!FLAGS_synthetic) {
      return Fail(
          absl::InvalidArgumentError("entry " + FLAGS_name + " needs --data=<dataset root with " +
                                     FLAGS_train_split + "/ and " + FLAGS_val_split + "/>"));
    }
    data_root = work_dir + "/data";
    ssl::data::SyntheticDatasetOptions synthetic;
    synthetic.num_classes = FLAGS_synthetic_classes;
    synthetic.train_per_class = FLAGS_synthetic_train_per_class;
    synthetic.val_per_class = FLAGS_synthetic_val_per_class;
    synthetic.image_size = FLAGS_synthetic_image_size;
    synthetic.seed = FLAGS_seed;
    LOG(INFO) << "writing the synthetic shapes dataset to " << data_root;
    if (absl::Status s = ssl::data::WriteSyntheticImageFolder(synthetic, data_root); !s.ok())
      return Fail(s);
  }
  auto train = ssl::data::ImageFolder::Open(data_root + "/" + FLAGS_train_split);
  if (!train.ok()) return Fail(train.status());
  auto val = ssl::data::ImageFolder::Open(data_root + "/" + FLAGS_val_split);
  if (!val.ok()) return Fail(val.status());

  absl::StatusOr<PretrainStage> stage = MakeStage(train->root(), work_dir + "/pretrain");
  if (!stage.ok()) return Fail(stage.status());
  const auto start = std::chrono::steady_clock::now();
  // MoCo v3 trains in this process; SwAV and Momentum^2 Teacher through their programs,
  // which start the processes the entry asks for.
  absl::StatusOr<ssl::train::PretrainResult> pretrained;
  if (!FLAGS_pretrained_checkpoint.empty()) {
    // Evaluate (and fine-tune) an existing checkpoint: another entry's, or an original's.
    pretrained = ssl::train::PretrainResult{ssl::tools::UserPath(FLAGS_pretrained_checkpoint)};
  } else {
    pretrained = FLAGS_method == "swav" ? PretrainSwav(train->root(), work_dir + "/pretrain")
                 : FLAGS_method == "m2teacher"
                     ? PretrainM2Teacher(train->root(), work_dir + "/pretrain")
                     : ssl::train::RunPretraining(*stage->method, stage->options,
                                                  ssl::distributed::MakeLocalCommunicator());
  }
  if (!pretrained.ok()) return Fail(pretrained.status());
  const double pretrain_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto checkpoint = ssl::train::ReadCheckpointConfig(pretrained->last_checkpoint);
  if (!checkpoint.ok()) return Fail(checkpoint.status());

  json results = {{"entry", FLAGS_name},
                  {"method", FLAGS_method},
                  {"command", FLAGS_command},
                  {"dataset",
                   {{"root", data_root},
                    {"train_images", train->size()},
                    {"val_images", val->size()},
                    {"classes", train->num_classes()},
                    {"synthetic", FLAGS_synthetic && FLAGS_data.empty()}}},
                  {"pretrain",
                   {{"arch", checkpoint->arch},
                    {"epochs", stage->options.epochs},
                    {"epochs_trained", pretrained->epochs_completed},
                    {"batch_size", stage->options.batch_size},
                    {"image_size", checkpoint->image_size},
                    {"final_loss", pretrained->final_loss},
                    {"seconds_this_run", pretrain_seconds},
                    {"images_per_second", pretrained->images_per_second},
                    {"threads", at::get_num_threads()}}}};
  if (!FLAGS_pretrained_checkpoint.empty()) {
    results["pretrain"]["checkpoint"] = FLAGS_pretrained_checkpoint;
  }
  if (absl::StatusOr<PrototypeSummary> prototypes =
          SummarizePrototypes(pretrained->last_checkpoint);
      prototypes.ok()) {
    results["pretrain"]["prototype_norm"] = prototypes->mean_row_norm;
    results["pretrain"]["ln_num_prototypes"] = prototypes->ln_num_prototypes;
    // How far below the trivial loss training got (0 or less: nothing learned).
    results["pretrain"]["loss_below_ln_k"] = prototypes->ln_num_prototypes - pretrained->final_loss;
  }
  auto backbone = ssl::train::LoadPretrainedBackbone(pretrained->last_checkpoint);
  if (!backbone.ok()) return Fail(backbone.status());
  auto scores = Evaluate(**backbone, *train, *val, checkpoint->image_size, "pretrained");
  if (!scores.ok()) return Fail(scores.status());
  results["pretrained"] = *scores;
  if (FLAGS_random_init_baseline) {
    // The same method built afresh with the same seed: its evaluation backbone as the
    // method initializes it.
    absl::StatusOr<PretrainStage> fresh = MakeStage(train->root(), work_dir + "/pretrain");
    if (!fresh.ok()) return Fail(fresh.status());
    auto baseline = Evaluate(fresh->method->EvalBackbone(), *train, *val, checkpoint->image_size,
                             "random init");
    if (!baseline.ok()) return Fail(baseline.status());
    results["random_init"] = *baseline;
  }

  if (!FLAGS_finetune_dataset.empty()) {
    ssl::transfer::DatasetOptions dataset;
    dataset.format = FLAGS_finetune_dataset;
    dataset.root =
        FLAGS_finetune_data.empty() ? data_root : ssl::tools::UserPath(FLAGS_finetune_data);
    dataset.train_split = FLAGS_finetune_train_split;
    dataset.val_split = FLAGS_finetune_val_split;
    dataset.cache_dir = work_dir + "/finetune_data_cache";
    auto splits = ssl::transfer::OpenTransferDataset(dataset);
    if (!splits.ok()) return Fail(splits.status());
    ssl::eval::FinetuneOptions finetune;
    finetune.epochs = FLAGS_finetune_epochs;
    finetune.batch_size = FLAGS_finetune_batch_size;
    finetune.base_lr = FLAGS_finetune_lr;
    finetune.weight_decay = FLAGS_finetune_weight_decay;
    finetune.warmup_epochs = FLAGS_finetune_warmup_epochs;
    finetune.mixup.mixup_alpha = FLAGS_finetune_mixup;
    finetune.mixup.cutmix_alpha = FLAGS_finetune_cutmix;
    finetune.mixup.label_smoothing = FLAGS_finetune_smoothing;
    finetune.rand_augment = FLAGS_finetune_aa;
    finetune.erase_probability = FLAGS_finetune_reprob;
    {
      const std::optional<ssl::data::Interpolation> interpolation =
          ssl::data::ParseInterpolation(FLAGS_finetune_interpolation);
      if (!interpolation) {
        return Fail(absl::InvalidArgumentError(
            absl::StrCat("--finetune_interpolation must be bicubic or bilinear, got \"",
                         FLAGS_finetune_interpolation, "\"")));
      }
      finetune.interpolation = *interpolation;
    }
    finetune.crop_scale_min = FLAGS_finetune_crop_min;
    finetune.repeated_augmentations = FLAGS_finetune_repeated_aug;
    finetune.image_size = checkpoint->image_size;
    finetune.workers = FLAGS_workers;
    finetune.seed = FLAGS_seed;
    {
      absl::StatusOr<ssl::tools::DeviceChoice> device = ssl::tools::DeviceFromFlags(
          0, ssl::MixedPrecision::kFloat16);
      if (!device.ok()) return Fail(device.status());
      finetune.device = device->device;
      finetune.amp = device->amp;
    }
    finetune.resume = true;
    // pretrain -> export (convert_to_deit.py's layout) -> fine-tune, as the originals do.
    const std::string exported = work_dir + "/finetune_init_deit.pth";
    if (auto s = ssl::train::ExportBackbone(pretrained->last_checkpoint, "", "deit", exported);
        !s.ok()) {
      return Fail(s.status());
    }
    ssl::eval::FinetuneModelSpec spec;
    spec.checkpoint = exported;
    spec.cifar_stem = checkpoint->cifar_stem;
    spec.image_size = checkpoint->image_size;
    spec.num_classes = splits->train.num_classes();
    spec.drop_path = FLAGS_finetune_drop_path;
    std::vector<std::pair<const char*, ssl::eval::FinetuneModelSpec>> runs = {{"pretrained", spec}};
    if (FLAGS_random_init_baseline) {
      spec.checkpoint.clear();
      spec.arch = checkpoint->arch;
      runs.emplace_back("random_init", spec);
    }
    for (const auto& [which, model] : runs) {
      LOG(INFO) << which << ": fine-tuning on " << FLAGS_finetune_dataset << " ("
                << splits->train.size() << " images, " << splits->train.num_classes()
                << " classes)";
      finetune.output_dir = work_dir + "/finetune_" + which;
      auto tuned = ssl::eval::RunFinetune(ssl::eval::FinetuneModelFactory(model), splits->train,
                                          splits->val, finetune);
      if (!tuned.ok()) return Fail(tuned.status());
      results[which]["finetune_top1"] = tuned->top1;
      results[which]["finetune_top5"] = tuned->top5;
      results[which]["finetune_best_top1"] = tuned->best_top1;
      results[which]["finetune_images_per_second"] = tuned->images_per_second;
    }
    results["finetune"] = {
        {"dataset", FLAGS_finetune_dataset},       {"train_images", splits->train.size()},
        {"val_images", splits->val.size()},        {"epochs", FLAGS_finetune_epochs},
        {"batch_size", FLAGS_finetune_batch_size}, {"interpolation", FLAGS_finetune_interpolation},
        {"crop_min", FLAGS_finetune_crop_min},     {"rand_augment", FLAGS_finetune_aa},
        {"reprob", FLAGS_finetune_reprob}};
  }

  std::cout << "\n"
            << FLAGS_name << " (" << FLAGS_method << ", " << checkpoint->arch << ", "
            << stage->options.epochs << " epochs, " << train->size() << " training images)\n";
  std::cout << absl::StrFormat("%-14s %10s %10s %10s %10s %10s\n", "backbone", "kNN k=20",
                               "kNN k=200", "linear", "linear5", "finetune");
  for (const char* which : {"pretrained", "random_init"}) {
    if (!results.contains(which)) continue;
    const json& r = results[which];
    std::cout << absl::StrFormat("%-14s %10s %10s %10s %10s %10s\n", which, Cell(r, "knn_top1_k20"),
                                 Cell(r, "knn_top1_k200"), Cell(r, "linear_top1"),
                                 Cell(r, "linear_top5"), Cell(r, "finetune_top1"));
  }
  const std::string local = work_dir + "/results.json";
  if (absl::Status s = ssl::WriteFileAtomically(local, results.dump(2) + "\n"); !s.ok())
    return Fail(s);
  std::cout << "results: " << local << "\n";
  if (FLAGS_record) {
    const char* workspace = std::getenv("BUILD_WORKSPACE_DIRECTORY");
    if (workspace == nullptr) {
      return Fail(absl::FailedPreconditionError(
          "--record needs `bazel run` (BUILD_WORKSPACE_DIRECTORY unset)"));
    }
    const std::filesystem::path dir = std::filesystem::path(workspace) / "results" / FLAGS_method;
    std::filesystem::create_directories(dir);
    const std::string recorded = (dir / (FLAGS_name + ".json")).string();
    if (absl::Status s = ssl::WriteFileAtomically(recorded, results.dump(2) + "\n"); !s.ok())
      return Fail(s);
    std::cout << "recorded: " << recorded
              << " (refresh results/README.md with bazel run //results:report)\n";
  }
  return 0;
}
