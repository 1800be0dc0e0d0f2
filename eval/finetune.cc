#include "eval/finetune.h"

#include <ATen/Context.h>
#include <ATen/ops/topk.h>
#include <c10/core/GradMode.h>
#include <torch/nn/init.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ssl/core/constants.h"
#include "ssl/core/file.h"
#include "ssl/core/logging.h"
#include "ssl/core/progress.h"
#include "ssl/core/random.h"
#include "ssl/core/status_macros.h"
#include "ssl/data/loader.h"
#include "ssl/data/views.h"
#include "ssl/nn/state_dict.h"
#include "ssl/optim/grad_scaler.h"
#include "ssl/optim/optimizer.h"
#include "ssl/train/checkpoint.h"
#include "ssl/train/metrics.h"
#include "ssl/train/pretrained.h"

namespace ssl::eval {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// timm's param_groups_weight_decay: no decay on 1-d tensors, biases and the model's
// no_weight_decay() names (cls_token, pos_embed); frozen tensors are left out. Order:
// [no decay, decay], as timm returns them.
std::vector<optim::ParamGroup> DecayGroups(backbones::Backbone& model, double weight_decay) {
  optim::ParamGroup no_decay, decay;
  decay.weight_decay = weight_decay;
  for (const auto& item : model.named_parameters()) {
    const std::string& name = item.key();
    const at::Tensor& p = item.value();
    if (!p.requires_grad()) continue;
    const bool exempt =
        p.dim() <= 1 || absl::EndsWith(name, ".bias") || name == "cls_token" || name == "pos_embed";
    (exempt ? no_decay : decay).params.push_back(p);
  }
  return {no_decay, decay};
}

struct Accuracy {
  double top1 = 0, top5 = 0;
};

absl::StatusOr<Accuracy> Evaluate(backbones::Backbone& model, const data::ImageFolder& val,
                                  const FinetuneOptions& options) {
  const int resize = static_cast<int>(options.image_size / options.eval_crop_ratio);
  data::LoaderOptions loader_options;
  loader_options.batch_size = std::min<int64_t>(options.batch_size, 256);
  loader_options.num_workers = options.workers;
  loader_options.shuffle = false;
  loader_options.drop_last = false;
  loader_options.pin_memory = options.device.is_cuda();
  SSL_ASSIGN_OR_RETURN(
      std::unique_ptr<data::Loader> loader,
      data::Loader::Create(val, data::EvalViews(options.image_size, resize, options.interpolation),
                           loader_options));
  c10::AutoGradMode no_grad(false);
  model.eval();
  loader->StartEpoch(0);
  data::Batch batch;
  int64_t seen = 0, hits1 = 0, hits5 = 0;
  while (true) {
    SSL_ASSIGN_OR_RETURN(bool more, loader->Next(&batch));
    if (!more) break;
    at::Tensor logits;
    {
      AutocastScope autocast(options.device, options.amp);
      logits = model.forward(batch.views[0].to(options.device, /*non_blocking=*/true));
    }
    const int64_t k = std::min<int64_t>(5, logits.size(1));
    const at::Tensor hits =
        std::get<1>(at::topk(logits, k, 1)).eq(batch.labels.to(options.device).unsqueeze(1));
    hits1 += hits.narrow(1, 0, 1).sum().item<int64_t>();
    hits5 += hits.sum().item<int64_t>();
    seen += batch.labels.size(0);
  }
  model.train();
  if (seen == 0) return absl::InvalidArgumentError("the validation set yielded no images");
  return Accuracy{100.0 * hits1 / seen, 100.0 * hits5 / seen};
}

// timm's ModelEma: every floating-point entry of the state dict follows the model with
// `decay`; integer counters are copied.
void UpdateEma(backbones::Backbone& ema, backbones::Backbone& model, double decay) {
  c10::AutoGradMode no_grad(false);
  const nn::NamedTensors target = nn::StateDict(ema), source = nn::StateDict(model);
  for (size_t i = 0; i < target.size(); ++i) {
    at::Tensor t = target[i].second;
    if (t.is_floating_point()) {
      t.mul_(decay).add_(source[i].second.detach(), 1.0 - decay);
    } else {
      t.copy_(source[i].second);
    }
  }
}

std::string CheckpointFile(const FinetuneOptions& options) {
  return options.output_dir + "/checkpoint.pth";
}

}  // namespace

nlohmann::json FinetuneResult::ToJson() const {
  nlohmann::json json = {{"top1", top1},
                         {"top5", top5},
                         {"best_top1", best_top1},
                         {"epochs", epochs_done},
                         {"final_train_loss", final_train_loss},
                         {"images_per_second", images_per_second}};
  if (ema_top1 >= 0) json["ema_top1"] = ema_top1;
  return json;
}

absl::Status ValidateFinetuneOptions(const FinetuneOptions& o) {
  if (o.epochs < 1 || o.batch_size < 2 || o.batch_size % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "fine-tuning needs epochs >= 1 and an even batch >= 2 (Mixup pairs samples), got ",
        o.epochs, " and ", o.batch_size));
  }
  if (!(o.base_lr > 0) || o.weight_decay < 0 || o.warmup_lr < 0 || o.min_lr < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("fine-tuning needs lr > 0 and weight decay, warmup lr and min lr >= 0, got ",
                     o.base_lr, ", ", o.weight_decay, ", ", o.warmup_lr, ", ", o.min_lr));
  }
  if (o.warmup_epochs < 0 || o.warmup_epochs >= o.epochs) {
    return absl::InvalidArgumentError(absl::StrCat("warmup epochs must be in [0, epochs), got ",
                                                   o.warmup_epochs, " of ", o.epochs));
  }
  if (o.repeated_augmentations < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("repeated augmentations must be >= 1, got ", o.repeated_augmentations));
  }
  if (!(o.crop_scale_min > 0 && o.crop_scale_min <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("crop scale minimum must be in (0, 1], got ", o.crop_scale_min));
  }
  if (!(o.erase_probability >= 0 && o.erase_probability <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("random erasing probability must be in [0, 1], got ", o.erase_probability));
  }
  if (!(o.model_ema_decay >= 0 && o.model_ema_decay <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("model EMA decay must be in [0, 1], got ", o.model_ema_decay));
  }
  if (!(o.eval_crop_ratio > 0 && o.eval_crop_ratio <= 1) || o.image_size < 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("need image size >= 8 and eval crop ratio in (0, 1], got ", o.image_size,
                     " and ", o.eval_crop_ratio));
  }
  if (!o.rand_augment.empty()) {
    if (absl::StatusOr<data::RandAugmentOptions> ra = data::ParseRandAugment(o.rand_augment);
        !ra.ok()) {
      return ra.status();
    }
  }
  if (o.output_dir.empty()) return absl::InvalidArgumentError("fine-tuning needs an output dir");
  return ValidateMixup(o.mixup);
}

double FinetuneLearningRate(const FinetuneOptions& o, double peak_lr, int epoch) {
  if (epoch < o.warmup_epochs) {
    return o.warmup_lr + epoch * (peak_lr - o.warmup_lr) / o.warmup_epochs;
  }
  return o.min_lr + 0.5 * (peak_lr - o.min_lr) * (1 + std::cos(kPi * epoch / o.epochs));
}

double FinetuneEpochLearningRate(const FinetuneOptions& o, double peak_lr, int epoch) {
  return FinetuneLearningRate(o, peak_lr, std::max(epoch - 1, 0));
}

void ResetClassifier(backbones::Backbone& model) {
  c10::AutoGradMode no_grad(false);
  const std::string head = backbones::HeadName(model.name()) + ".";
  for (auto& item : model.named_parameters()) {
    if (item.key() == head + "weight") item.value().normal_(0.0, 0.02);
    if (item.key() == head + "bias") item.value().zero_();
  }
}

ModelFactory FinetuneModelFactory(const FinetuneModelSpec& spec) {
  return [spec]() -> absl::StatusOr<std::shared_ptr<backbones::Backbone>> {
    std::shared_ptr<backbones::Backbone> model;
    if (spec.checkpoint.empty()) {
      backbones::BackboneOptions options;
      options.num_classes = spec.num_classes;
      options.image_size = spec.image_size;
      options.cifar_stem = spec.cifar_stem;
      options.drop_path_rate = backbones::HeadName(spec.arch) == "head" ? spec.drop_path : 0.0;
      SSL_ASSIGN_OR_RETURN(model, backbones::CreateBackbone(spec.arch, options));
    } else {
      SSL_ASSIGN_OR_RETURN(train::CheckpointConfig config,
                           train::ReadCheckpointConfig(spec.checkpoint, spec.backbone));
      const bool vit = backbones::HeadName(config.arch) == "head";
      if (vit && config.image_size != spec.image_size) {
        return absl::InvalidArgumentError(absl::StrCat(
            "the ViT of ", spec.checkpoint, " was pretrained at ", config.image_size,
            " px; fine-tune it at that size (its position table has that many patches)"));
      }
      SSL_ASSIGN_OR_RETURN(
          model, train::LoadPretrainedBackbone(spec.checkpoint, spec.num_classes, spec.backbone,
                                               vit ? spec.drop_path : 0.0));
    }
    if (backbones::HeadName(model->name()) == "head") {
      ResetClassifier(*model);
      for (auto& item : model->named_parameters()) {
        if (item.key() == "pos_embed") item.value().set_requires_grad(true);
      }
    }
    return model;
  };
}

absl::StatusOr<FinetuneResult> RunFinetune(const ModelFactory& build_model,
                                           const data::ImageFolder& train,
                                           const data::ImageFolder& val,
                                           const FinetuneOptions& given) {
  FinetuneOptions options = given;
  options.mixup.num_classes = train.num_classes();
  SSL_RETURN_IF_ERROR(ValidateFinetuneOptions(options));
  if (val.num_classes() != train.num_classes()) {
    return absl::InvalidArgumentError(absl::StrCat("training data has ", train.num_classes(),
                                                   " classes but validation data ",
                                                   val.num_classes()));
  }
  std::error_code error;
  std::filesystem::create_directories(options.output_dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create output dir ", options.output_dir, ": ", error.message()));
  }
  at::manual_seed(options.seed);
  SSL_ASSIGN_OR_RETURN(std::shared_ptr<backbones::Backbone> model, build_model());
  std::shared_ptr<backbones::Backbone> ema;
  if (options.model_ema) {
    SSL_ASSIGN_OR_RETURN(ema, build_model());
    UpdateEma(*ema, *model, 0.0);  // starts as a copy
  }
  model->to(options.device);
  if (ema) ema->to(options.device);
  const double peak_lr = options.base_lr * options.batch_size / 512.0;
  std::unique_ptr<optim::Optimizer> optimizer =
      optim::MakeAdamW(DecayGroups(*model, options.weight_decay), {.lr = peak_lr});
  optim::GradScalerOptions scaler_options;
  scaler_options.enabled = options.amp == MixedPrecision::kFloat16;
  optim::GradScaler scaler(scaler_options);

  FinetuneResult result;
  int start_epoch = 0;
  const std::string checkpoint = CheckpointFile(options);
  if (options.resume && std::filesystem::exists(checkpoint)) {
    SSL_ASSIGN_OR_RETURN(c10::IValue loaded, train::LoadIValue(checkpoint));
    if (!loaded.isGenericDict() || !loaded.toGenericDict().contains("model") ||
        !loaded.toGenericDict().contains("epoch")) {
      return absl::InvalidArgumentError(
          absl::StrCat(checkpoint, " is not a fine-tuning checkpoint (no model or epoch entry)"));
    }
    const c10::impl::GenericDict dict = loaded.toGenericDict();
    SSL_RETURN_IF_ERROR(
        train::LoadStateDictFromIValue(*model, dict.at("model").toGenericDict(), ""));
    SSL_RETURN_IF_ERROR(optimizer->LoadStateDict(dict.at("optimizer")));
    if (dict.contains("scaler")) SSL_RETURN_IF_ERROR(scaler.LoadStateDict(dict.at("scaler")));
    if (ema) {
      SSL_RETURN_IF_ERROR(
          train::LoadStateDictFromIValue(*ema, dict.at("model_ema").toGenericDict(), ""));
    }
    start_epoch = static_cast<int>(dict.at("epoch").toInt()) + 1;
    result.epochs_done = start_epoch;
    const nlohmann::json state =
        nlohmann::json::parse(dict.at("ssl_finetune").toStringRef(), nullptr, false);
    result.best_top1 = state.value("best_top1", 0.0);
    result.top1 = state.value("top1", 0.0);
    result.top5 = state.value("top5", 0.0);
    result.final_train_loss = state.value("train_loss", 0.0);
    result.ema_top1 = state.value("ema_top1", -1.0);
    if (options.verbose) {
      LOG(INFO) << "resumed " << checkpoint << " after epoch " << start_epoch - 1;
    }
  }

  data::RandAugmentOptions rand_augment;
  if (!options.rand_augment.empty()) rand_augment = *data::ParseRandAugment(options.rand_augment);
  data::LoaderOptions loader_options;
  loader_options.batch_size = options.batch_size;
  loader_options.num_workers = options.workers;
  loader_options.seed = options.seed;
  loader_options.repeated_augmentations = options.repeated_augmentations;
  loader_options.pin_memory = options.device.is_cuda();
  SSL_ASSIGN_OR_RETURN(
      std::unique_ptr<data::Loader> loader,
      data::Loader::Create(
          train,
          data::DeitTrainViews(options.image_size, rand_augment, !options.rand_augment.empty(),
                               options.erase_probability, options.interpolation,
                               options.crop_scale_min),
          loader_options));
  const int64_t steps_per_epoch = loader->BatchesPerEpoch();
  if (steps_per_epoch == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch ", options.batch_size, " is larger than the ", train.size(),
                     " training images an epoch can use; lower --batch_size"));
  }
  train::MetricsWriter metrics(options.output_dir + "/metrics.jsonl");
  const int end_epoch = options.max_epochs_this_run > 0
                            ? std::min(options.epochs, start_epoch + options.max_epochs_this_run)
                            : options.epochs;
  const Clock::time_point run_start = Clock::now();
  int64_t images_this_run = 0;
  model->train();
  for (int epoch = start_epoch; epoch < end_epoch; ++epoch) {
    const double lr = FinetuneEpochLearningRate(options, peak_lr, epoch);
    optimizer->set_lr(lr);
    loader->StartEpoch(epoch);
    ProgressMeter progress(steps_per_epoch * options.batch_size,
                           absl::StrCat("fine-tune epoch ", epoch + 1, "/", options.epochs));
    double loss_sum = 0;
    int64_t step = 0;
    data::Batch batch;
    while (true) {
      SSL_ASSIGN_OR_RETURN(bool more, loader->Next(&batch));
      if (!more) break;
      // Every random draw of the step (drop path, Mixup) depends on (seed, epoch, step)
      // only, so a resumed run repeats it exactly.
      const uint64_t step_key = MixBits(MixBits(options.seed ^ static_cast<uint64_t>(epoch)) ^
                                        static_cast<uint64_t>(step));
      at::manual_seed(step_key);
      Rng mix_rng(
          {options.seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(step), 0x6d6978ULL});
      at::Tensor images = batch.views[0].clone();
      at::Tensor targets = MixBatch(images, batch.labels, options.mixup, mix_rng);
      images = images.to(options.device, /*non_blocking=*/true);
      targets = targets.to(options.device, /*non_blocking=*/true);
      at::Tensor loss;
      {
        AutocastScope autocast(options.device, options.amp);
        loss = SoftTargetCrossEntropy(model->forward(images), targets);
      }
      const double loss_value = loss.item<double>();  // DeiT reads it every step too
      if (!std::isfinite(loss_value)) {
        return absl::InternalError(absl::StrCat("loss is ", loss_value, " at epoch ", epoch + 1,
                                                " step ", step, "; stopping training"));
      }
      optimizer->ZeroGrad();
      scaler.Scale(loss).backward();
      scaler.Unscale(model->parameters());
      if (!scaler.FoundInf()) optimizer->Step();
      scaler.Update();
      if (ema) UpdateEma(*ema, *model, options.model_ema_decay);
      loss_sum += loss_value;
      ++step;
      images_this_run += images.size(0);
      progress.Update(step * options.batch_size);
      if (options.verbose && (step % options.print_freq == 0 || step == steps_per_epoch)) {
        LOG(INFO) << progress.Line() << absl::StrFormat("  loss %.4f  lr %.6g", loss_value, lr);
      }
    }
    // DeiT evaluates the model itself; the EMA is measured too when kept.
    SSL_ASSIGN_OR_RETURN(Accuracy accuracy, Evaluate(*model, val, options));
    if (ema) {
      SSL_ASSIGN_OR_RETURN(Accuracy ema_accuracy, Evaluate(*ema, val, options));
      result.ema_top1 = ema_accuracy.top1;
    }
    result.top1 = accuracy.top1;
    result.top5 = accuracy.top5;
    result.best_top1 = std::max(result.best_top1, accuracy.top1);
    result.final_train_loss = loss_sum / std::max<int64_t>(1, step);
    result.epochs_done = epoch + 1;
    const nlohmann::json record = {{"epoch", epoch + 1},
                                   {"train_loss", result.final_train_loss},
                                   {"train_lr", lr},
                                   {"test_acc1", accuracy.top1},
                                   {"test_acc5", accuracy.top5},
                                   {"max_accuracy", result.best_top1},
                                   {"images_per_second", progress.Throughput()}};
    nlohmann::json written = record;
    if (ema) written["test_acc1_ema"] = result.ema_top1;
    metrics.Write(written);
    if (options.verbose) {
      LOG(INFO) << absl::StrFormat("epoch %d: loss %.4f, val top-1 %.2f top-5 %.2f (best %.2f)",
                                   epoch + 1, result.final_train_loss, accuracy.top1, accuracy.top5,
                                   result.best_top1);
    }
    // DeiT's checkpoint.pth layout, plus this run's record for resuming.
    c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
    dict.insert("model", ToCpu(train::StateDictToIValue(*model)));
    dict.insert("optimizer", ToCpu(optimizer->StateDict()));
    dict.insert("scaler", scaler.StateDict());
    c10::impl::GenericDict scheduler(c10::StringType::get(), c10::AnyType::get());
    scheduler.insert("t_initial", static_cast<int64_t>(options.epochs));
    scheduler.insert("warmup_t", static_cast<int64_t>(options.warmup_epochs));
    scheduler.insert("warmup_lr_init", options.warmup_lr);
    scheduler.insert("lr_min", options.min_lr);
    scheduler.insert("base_values", c10::List<double>({peak_lr}));
    dict.insert("lr_scheduler", scheduler);
    dict.insert("epoch", static_cast<int64_t>(epoch));
    if (ema) dict.insert("model_ema", ToCpu(train::StateDictToIValue(*ema)));
    dict.insert("ssl_finetune", nlohmann::json({{"best_top1", result.best_top1},
                                                {"top1", result.top1},
                                                {"top5", result.top5},
                                                {"ema_top1", result.ema_top1},
                                                {"train_loss", result.final_train_loss}})
                                    .dump());
    SSL_RETURN_IF_ERROR(train::SaveIValue(dict, checkpoint));
  }
  const double seconds = Seconds(run_start);
  result.images_per_second = seconds > 0 ? images_this_run / seconds : 0;
  SSL_RETURN_IF_ERROR(ssl::WriteFileAtomically(options.output_dir + "/finetune_result.json",
                                               result.ToJson().dump(2) + "\n"));
  return result;
}

}  // namespace ssl::eval
