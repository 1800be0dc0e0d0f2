#include "ssl/train/pretrain.h"

#include <ATen/Context.h>
#include <ATen/core/Dict.h>
#include <ATen/ops/full.h>
#include <ATen/ops/isfinite.h>
#include <c10/core/GradMode.h>
#include <glog/logging.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ssl/core/progress.h"
#include "ssl/data/image_folder.h"
#include "ssl/data/loader.h"
#include "ssl/data/views.h"
#include "ssl/distributed/gradient_sync.h"
#include "ssl/nn/batch_norm.h"
#include "ssl/nn/state_dict.h"
#include "ssl/optim/optimizer.h"
#include "ssl/optim/schedules.h"
#include "ssl/train/checkpoint.h"
#include "ssl/train/metrics.h"

namespace ssl::train {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

absl::Status Validate(const PretrainOptions& o, int world_size) {
  if (o.data.empty()) return absl::InvalidArgumentError("no training data given (--data)");
  if (o.output_dir.empty())
    return absl::InvalidArgumentError("no output directory given (--output_dir)");
  if (o.batch_size < 1 || o.batch_size % world_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat("batch size ", o.batch_size,
                                                   " must be a positive multiple of the ",
                                                   world_size, " processes"));
  }
  if (o.bn == "split" && o.split_bn_splits > 0 && (o.batch_size / world_size) % o.split_bn_splits) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the batch of ", o.batch_size / world_size, " per process does not divide into ",
        o.split_bn_splits, " split-BN sub-batches (--split_bn_splits)"));
  }
  if (o.epochs < 1)
    return absl::InvalidArgumentError(absl::StrCat("epochs must be >= 1, got ", o.epochs));
  if (o.warmup_epochs < 0 || (o.warmup_epochs >= o.epochs && o.warmup_epochs > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("warmup epochs must be in [0, epochs), got ",
                                                   o.warmup_epochs, " of ", o.epochs));
  }
  if (!(o.base_lr > 0))
    return absl::InvalidArgumentError(absl::StrCat("learning rate must be > 0, got ", o.base_lr));
  if (o.weight_decay < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight decay must be >= 0, got ", o.weight_decay));
  }
  if (!(o.moco_m >= 0 && o.moco_m <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("moco momentum must be in [0, 1], got ", o.moco_m));
  }
  if (o.optimizer != "lars" && o.optimizer != "sgd" && o.optimizer != "adamw") {
    return absl::InvalidArgumentError(
        absl::StrCat("optimizer must be lars, sgd or adamw, got \"", o.optimizer, "\""));
  }
  if (o.print_freq < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("print frequency must be >= 1, got ", o.print_freq));
  if (o.image_size < 16)
    return absl::InvalidArgumentError(absl::StrCat("image size must be >= 16, got ", o.image_size));
  if (!(o.crop_min > 0 && o.crop_min <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("crop-min must be in (0, 1], got ", o.crop_min));
  }
  return absl::OkStatus();
}

nlohmann::json ConfigJson(const PretrainOptions& o) {
  return {{"method", "mocov3"},
          {"arch", o.moco.arch},
          {"cifar_stem", o.moco.cifar_stem},
          {"moco_dim", o.moco.dim},
          {"moco_mlp_dim", o.moco.mlp_dim},
          {"moco_t", o.moco.temperature},
          {"batch_size", o.batch_size},
          {"epochs", o.epochs},
          {"warmup_epochs", o.warmup_epochs},
          {"optimizer", o.optimizer},
          {"lr", o.base_lr},
          {"weight_decay", o.weight_decay},
          {"moco_m", o.moco_m},
          {"moco_m_cos", o.moco_m_cos},
          {"crop_min", o.crop_min},
          {"image_size", o.image_size},
          {"seed", o.seed},
          {"bn", o.bn},
          {"sync_bn_group_size", o.sync_bn_group_size},
          {"split_bn_splits", o.split_bn_splits},
          {"data", o.data}};
}

std::unique_ptr<optim::Optimizer> MakeOptimizer(const PretrainOptions& o,
                                                std::vector<at::Tensor> params) {
  optim::OptimizerOptions hyper;
  hyper.weight_decay = o.weight_decay;
  if (o.optimizer == "lars") return optim::MakeLars(std::move(params), hyper);
  if (o.optimizer == "sgd") return optim::MakeSgd(std::move(params), hyper);
  return optim::MakeAdamW(std::move(params), hyper);
}

double MeanOverProcesses(distributed::Communicator& communicator, double value) {
  if (communicator.world_size() == 1) return value;
  at::Tensor sum = at::full({1}, value, at::kDouble);
  communicator.AllReduceSum(sum);
  return sum.item<double>() / communicator.world_size();
}

absl::StatusOr<PretrainResult> TrainMocoV3(const PretrainOptions& options,
                                           std::shared_ptr<distributed::Communicator> communicator,
                                           const EpochMonitor& monitor) {
  const int world = communicator->world_size();
  const bool is_main = communicator->rank() == 0;
  if (absl::Status s = Validate(options, world); !s.ok()) return s;
  std::error_code error;
  fs::create_directories(options.output_dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create output directory ", options.output_dir, ": ", error.message()));
  }
  absl::StatusOr<data::ImageFolder> folder = data::ImageFolder::Open(options.data);
  if (!folder.ok()) return folder.status();

  at::manual_seed(options.seed);
  absl::StatusOr<std::shared_ptr<methods::MocoV3Impl>> created =
      methods::MocoV3Impl::Create(options.moco, communicator);
  if (!created.ok()) return created.status();
  std::shared_ptr<methods::MocoV3Impl> model = *created;
  absl::StatusOr<nn::BatchNormSetting> bn_setting = nn::MakeBatchNormSetting(
      options.bn, options.sync_bn_group_size, options.split_bn_splits, communicator);
  if (!bn_setting.ok()) return bn_setting.status();
  nn::ConfigureBatchNorm(*model, *bn_setting);
  std::unique_ptr<optim::Optimizer> optimizer = MakeOptimizer(options, nn::Parameters(*model));
  const double peak_lr = optim::ScaledLearningRate(options.base_lr, options.batch_size);

  // Resume: weights, optimizer state and the epoch to continue from. The data order and
  // augmentations are functions of (seed, epoch), so nothing else is needed.
  int start_epoch = 0;
  std::string resume_path = options.resume;
  if (resume_path == "latest") {
    absl::StatusOr<std::string> latest = LatestCheckpoint(options.output_dir);
    resume_path = latest.ok() ? *latest : "";
  }
  if (!resume_path.empty()) {
    absl::StatusOr<c10::IValue> loaded = LoadIValue(resume_path);
    if (!loaded.ok()) return loaded.status();
    if (!loaded->isGenericDict() || !loaded->toGenericDict().contains("state_dict")) {
      return absl::InvalidArgumentError(absl::StrCat(resume_path, " is not a MoCo v3 checkpoint"));
    }
    const c10::impl::GenericDict checkpoint = loaded->toGenericDict();
    if (absl::Status s =
            LoadStateDictFromIValue(*model, checkpoint.at("state_dict").toGenericDict(), "module.");
        !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot resume from ", resume_path, ": ", s.message()));
    }
    if (absl::Status s = optimizer->LoadStateDict(checkpoint.at("optimizer")); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot resume from ", resume_path, ": ", s.message()));
    }
    start_epoch = static_cast<int>(checkpoint.at("epoch").toInt());
    if (is_main) LOG(INFO) << "resumed from " << resume_path << " at epoch " << start_epoch;
  }
  if (world > 1) {
    // Every process must continue from the same epoch, which needs checkpoints on a
    // filesystem they all see (as in MoCo v3).
    at::Tensor epoch_of_rank0 = at::full({1}, start_epoch, at::kLong);
    communicator->Broadcast(epoch_of_rank0, 0);
    if (epoch_of_rank0.item<int64_t>() != start_epoch) {
      return absl::FailedPreconditionError(absl::StrCat(
          "rank ", communicator->rank(), " would start at epoch ", start_epoch, " but rank 0 at ",
          epoch_of_rank0.item<int64_t>(), "; --output_dir must be shared by all machines"));
    }
    // Identical seeds already give identical weights; broadcasting makes it a guarantee.
    c10::AutoGradMode no_grad(false);
    for (at::Tensor tensor : model->parameters()) communicator->Broadcast(tensor, 0);
    for (at::Tensor tensor : model->buffers()) communicator->Broadcast(tensor, 0);
  }
  distributed::GradientAverager gradient_averager(nn::Parameters(*model), communicator,
                                                  options.bucket_bytes);

  data::LoaderOptions loader_options;
  loader_options.batch_size = options.batch_size / world;
  loader_options.num_workers = options.workers;
  loader_options.prefetch_batches = std::max(2, options.workers);
  loader_options.seed = options.seed;
  loader_options.world_size = world;
  loader_options.rank = communicator->rank();
  absl::StatusOr<std::unique_ptr<data::Loader>> loader = data::Loader::Create(
      *folder, data::MocoV3Views(options.image_size, options.crop_min), loader_options);
  if (!loader.ok()) return loader.status();
  const int64_t iters = (*loader)->BatchesPerEpoch();

  MetricsWriter metrics(is_main ? (fs::path(options.output_dir) / "metrics.jsonl").string() : "");
  const int end_epoch = options.max_epochs_this_run > 0
                            ? std::min(options.epochs, start_epoch + options.max_epochs_this_run)
                            : options.epochs;
  PretrainResult result;
  result.epochs_completed = start_epoch;
  ProgressMeter progress((end_epoch - start_epoch) * iters, "pretrain");
  int64_t iterations_done = 0;
  const auto run_start = Clock::now();
  if (is_main) {
    LOG(INFO) << "MoCo v3 " << options.moco.arch << ": " << folder->size() << " images in "
              << folder->num_classes() << " classes, " << iters << " iterations/epoch of "
              << options.batch_size << " (" << world << " process(es)), lr " << peak_lr
              << ", epochs " << start_epoch << " -> " << end_epoch << " of " << options.epochs;
  }

  for (int epoch = start_epoch; epoch < end_epoch; ++epoch) {
    model->train();
    (*loader)->StartEpoch(epoch);
    double loss_sum = 0;
    double wait_before = (*loader)->stats().wait_seconds;
    auto window_start = Clock::now();
    int64_t window_images = 0;
    data::Batch batch;
    for (int64_t it = 0; it < iters; ++it) {
      absl::StatusOr<bool> more = (*loader)->Next(&batch);
      if (!more.ok()) return more.status();
      if (!*more) break;
      const double fractional_epoch = epoch + static_cast<double>(it) / iters;
      const double lr = optim::WarmupCosineLearningRate(peak_lr, options.warmup_epochs,
                                                        options.epochs, fractional_epoch);
      const double momentum =
          options.moco_m_cos
              ? optim::CosineMomentum(options.moco_m, options.epochs, fractional_epoch)
              : options.moco_m;
      optimizer->set_lr(lr);
      const at::Tensor loss = model->forward(batch.views[0], batch.views[1], momentum);
      const double loss_value = loss.item<double>();
      if (!std::isfinite(loss_value)) {
        const std::string diagnostic =
            (fs::path(options.output_dir) /
             absl::StrFormat("nan_diagnostic_epoch%04d_iter%06d.pth", epoch, it))
                .string();
        c10::impl::GenericDict dump(c10::StringType::get(), c10::AnyType::get());
        dump.insert("epoch", static_cast<int64_t>(epoch));
        dump.insert("iteration", it);
        dump.insert("loss", loss_value);
        dump.insert("lr", lr);
        dump.insert("momentum", momentum);
        dump.insert("batch_indices", batch.indices);
        dump.insert("state_dict", StateDictToIValue(*model, "module."));
        const absl::Status saved = SaveIValue(dump, diagnostic);
        return absl::InternalError(absl::StrCat(
            "loss became ", loss_value, " at epoch ", epoch, " iteration ", it, " (lr ", lr, "); ",
            saved.ok() ? "diagnostic saved to " + diagnostic
                       : "diagnostic could not be saved: " + std::string(saved.message()),
            ". Try a lower --lr or a longer --warmup_epochs"));
      }
      optimizer->ZeroGrad();
      loss.backward();
      gradient_averager.Synchronize();
      optimizer->Step();
      loss_sum += loss_value;
      ++iterations_done;
      window_images += batch.labels.size(0) * world;
      if ((it + 1) % options.print_freq == 0 || it + 1 == iters) {
        const double global_loss = MeanOverProcesses(*communicator, loss_value);
        if (!is_main) continue;
        progress.Update(iterations_done);
        const double window = std::chrono::duration<double>(Clock::now() - window_start).count();
        const double wait_now = (*loader)->stats().wait_seconds;
        const double images_per_second = window > 0 ? window_images / window : 0;
        const double data_share = window > 0 ? (wait_now - wait_before) / window : 0;
        LOG(INFO) << absl::StrFormat(
            "Epoch: [%d/%d][%*d/%d]  loss %.4f  lr %.6f  m %.5f  %.1f img/s  data %.1f%%  ETA %s",
            epoch + 1, options.epochs, static_cast<int>(std::to_string(iters).size()), it + 1,
            iters, global_loss, lr, momentum, images_per_second, 100 * data_share,
            FormatDuration(progress.EtaSeconds()));
        metrics.Write({{"type", "iteration"},
                       {"epoch", epoch},
                       {"iteration", it},
                       {"loss", global_loss},
                       {"lr", lr},
                       {"momentum", momentum},
                       {"images_per_second", images_per_second},
                       {"data_wait_share", data_share}});
        window_start = Clock::now();
        window_images = 0;
        wait_before = wait_now;
      }
    }
    result.final_loss = MeanOverProcesses(*communicator, loss_sum / iters);
    result.epochs_completed = epoch + 1;
    nlohmann::json record = {{"type", "epoch"},
                             {"epoch", epoch + 1},
                             {"loss", result.final_loss},
                             {"decode_failures", (*loader)->stats().decode_failures}};
    if (is_main) {
      c10::impl::GenericDict checkpoint(c10::StringType::get(), c10::AnyType::get());
      checkpoint.insert("epoch", static_cast<int64_t>(epoch + 1));
      checkpoint.insert("arch", options.moco.arch);
      checkpoint.insert("state_dict", StateDictToIValue(*model, "module."));
      checkpoint.insert("optimizer", optimizer->StateDict());
      checkpoint.insert("scaler",
                        c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get()));
      checkpoint.insert("ssl_config", ConfigJson(options).dump());
      result.last_checkpoint = CheckpointPath(options.output_dir, epoch);
      if (absl::Status s = SaveIValue(checkpoint, result.last_checkpoint); !s.ok()) return s;
    }
    if (monitor && is_main) {
      absl::StatusOr<nlohmann::json> extra = monitor(epoch + 1, *model->base_encoder);
      model->train();
      if (!extra.ok()) return extra.status();
      record.update(*extra);
    }
    // The others wait here while rank 0 checkpoints and evaluates.
    if (world > 1) communicator->Barrier();
    if (is_main) {
      LOG(INFO) << "epoch " << epoch + 1 << " done: " << record.dump();
      metrics.Write(record);
    }
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - run_start).count();
  result.images_per_second = seconds > 0 ? iterations_done * options.batch_size / seconds : 0;
  if (result.last_checkpoint.empty() && start_epoch > 0) result.last_checkpoint = resume_path;
  return result;
}

}  // namespace

absl::StatusOr<PretrainResult> RunMocoV3Pretraining(
    const PretrainOptions& options, std::shared_ptr<distributed::Communicator> communicator,
    const EpochMonitor& monitor) {
  try {
    return TrainMocoV3(options, std::move(communicator), monitor);
  } catch (const distributed::CollectiveError& e) {
    return absl::UnavailableError(e.what());
  } catch (const std::invalid_argument& e) {
    return absl::InvalidArgumentError(e.what());
  }
}

absl::StatusOr<CheckpointConfig> ReadCheckpointConfig(const std::string& path) {
  absl::StatusOr<c10::IValue> loaded = LoadIValue(path);
  if (!loaded.ok()) return loaded.status();
  if (!loaded->isGenericDict() || !loaded->toGenericDict().contains("arch")) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " has no \"arch\" entry; not a pretraining checkpoint"));
  }
  const c10::impl::GenericDict dict = loaded->toGenericDict();
  CheckpointConfig config;
  config.arch = dict.at("arch").toStringRef();
  if (dict.contains("epoch")) config.epoch = static_cast<int>(dict.at("epoch").toInt());
  if (dict.contains("ssl_config")) {
    const nlohmann::json json =
        nlohmann::json::parse(dict.at("ssl_config").toStringRef(), nullptr, false);
    if (json.is_object()) {
      config.cifar_stem = json.value("cifar_stem", false);
      config.image_size = json.value("image_size", 224);
    }
  }
  return config;
}

absl::StatusOr<std::shared_ptr<backbones::Backbone>> LoadPretrainedBackbone(const std::string& path,
                                                                            int64_t num_classes) {
  absl::StatusOr<CheckpointConfig> config = ReadCheckpointConfig(path);
  if (!config.ok()) return config.status();
  backbones::BackboneOptions backbone_options;
  backbone_options.cifar_stem = config->cifar_stem;
  backbone_options.num_classes = num_classes;
  absl::StatusOr<std::shared_ptr<backbones::Backbone>> backbone =
      backbones::CreateBackbone(config->arch, backbone_options);
  if (!backbone.ok()) return backbone.status();
  absl::StatusOr<c10::IValue> loaded = LoadIValue(path);
  if (!loaded.ok()) return loaded.status();
  const c10::impl::GenericDict state = loaded->toGenericDict().at("state_dict").toGenericDict();
  if (absl::Status s = LoadStateDictFromIValue(**backbone, state, "module.base_encoder.", {"fc."});
      !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot load the backbone of ", path, ": ", s.message()));
  }
  return backbone;
}

}  // namespace ssl::train
