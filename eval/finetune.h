// End-to-end fine-tuning with DeiT's default recipe (deit/main.py + timm), for ViTs and
// ResNets: AdamW (lr = base_lr * batch / 512, weight decay 0.05 except on biases,
// norms, cls_token and pos_embed), timm's per-epoch cosine with linear warmup from
// warmup_lr, label smoothing 0.1, Mixup 0.8 / CutMix 1.0 (switch 0.5), RandAugment
// rand-m9-mstd0.5-inc1, random erasing 0.25, drop path 0.1 (ViTs), repeated
// augmentation x3, model EMA off by default (kept and saved, but the raw model is what
// DeiT evaluates), bicubic resizing, evaluation at resize size / 0.875 and a center
// crop; timm's per-epoch scheduler stepped at each epoch's end, as DeiT's loop does. Checkpoints
// each epoch in DeiT's layout (checkpoint.pth: model, optimizer, lr_scheduler, epoch, model_ema),
// resumable bitwise, metrics.jsonl.
#ifndef EVAL_FINETUNE_H_
#define EVAL_FINETUNE_H_

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/statusor.h"
#include "eval/mixup.h"
#include "ssl/backbones/backbone.h"
#include "ssl/core/device.h"
#include "ssl/data/deit_augment.h"
#include "ssl/data/image_folder.h"

namespace ssl::eval {

struct FinetuneOptions {
  int epochs = 300;
  int64_t batch_size = 1024;  ///< per process (DeiT's 1024 = 8 GPUs x 128)
  double base_lr = 5e-4;      ///< scaled by batch / 512
  double weight_decay = 0.05;
  int warmup_epochs = 5;
  double warmup_lr = 1e-6;
  double min_lr = 1e-5;
  MixupOptions mixup;                                 ///< num_classes is set from the data
  std::string rand_augment = "rand-m9-mstd0.5-inc1";  ///< "" disables RandAugment
  double erase_probability = 0.25;
  /// Filter of the training crop, RandAugment's geometric ops and the evaluation resize:
  /// DeiT's --train-interpolation bicubic; moco-v3's transfer recipe keeps
  /// torchvision's default bilinear.
  data::Interpolation interpolation = data::Interpolation::kBicubic;
  /// RandomResizedCrop's smallest area fraction: timm's 0.08; moco-v3's transfer 0.05.
  double crop_scale_min = 0.08;
  int repeated_augmentations = 3;  ///< 1 disables repeated augmentation
  bool model_ema = false;
  double model_ema_decay = 0.99996;
  int image_size = 224;
  double eval_crop_ratio = 0.875;  ///< evaluation resizes to image_size / ratio first
  std::string output_dir;          ///< checkpoint.pth, metrics.jsonl, finetune_result.json
  bool resume = false;             ///< continue from output_dir/checkpoint.pth when present
  int max_epochs_this_run = 0;     ///< stop after this many epochs here (0: all)
  int workers = 2;
  uint64_t seed = 0;
  /// Where the model trains; batches are copied there from pinned host memory.
  c10::Device device = c10::kCPU;
  /// DeiT trains with autocast (fp16 and a loss scaler, saved as "scaler").
  MixedPrecision amp = MixedPrecision::kOff;
  int print_freq = 10;
  bool verbose = true;
};

struct FinetuneResult {
  double top1 = 0, top5 = 0;  ///< of the model after the last epoch (DeiT's)
  double ema_top1 = -1;       ///< of the EMA model then, when model EMA is on
  double best_top1 = 0;       ///< best over epochs (what DeiT prints as max accuracy)
  int epochs_done = 0;
  double final_train_loss = 0;
  double images_per_second = 0;  ///< training throughput of this run
  nlohmann::json ToJson() const;
};

/// Builds the model to fine-tune (pretrained weights loaded, classifier fresh); called
/// twice when model EMA is on.
using ModelFactory = std::function<absl::StatusOr<std::shared_ptr<backbones::Backbone>>()>;

/// What to fine-tune: a checkpoint's backbone (any layout LoadPretrainedBackbone reads)
/// or, with `checkpoint` empty, a random init of `arch`.
struct FinetuneModelSpec {
  std::string checkpoint;
  std::string backbone;  ///< which backbone of the checkpoint ("": its evaluation one)
  std::string arch;      ///< random init only
  bool cifar_stem = false;
  int64_t image_size = 224;
  int64_t num_classes = 0;
  double drop_path = 0.1;  ///< ViTs only (ResNets have none)
};

/// Builds the spec's model with a fresh classifier; ViTs as DeiT fine-tunes them: drop
/// path, a trainable position table (starting from the sin-cos one) and timm's head init.
ModelFactory FinetuneModelFactory(const FinetuneModelSpec& spec);

/// One sentence for inconsistent options.
absl::Status ValidateFinetuneOptions(const FinetuneOptions& options);

/// timm's CosineLRScheduler as DeiT builds it, per epoch: linear warmup from warmup_lr
/// to lr over warmup_epochs, then min_lr + (lr - min_lr)(1 + cos(pi e / epochs)) / 2.
double FinetuneLearningRate(const FinetuneOptions& options, double peak_lr, int epoch);

/// The lr DeiT trains epoch `epoch` (0-based) with: the scheduler starts at its value
/// for 0 and is stepped with the finished epoch's index after each epoch
/// (lr_scheduler.step(epoch)), so epoch e >= 1 runs at FinetuneLearningRate(e - 1):
/// epochs 0 and 1 both at warmup_lr.
double FinetuneEpochLearningRate(const FinetuneOptions& options, double peak_lr, int epoch);

/// DeiT's fresh classifier init (timm's trunc_normal std 0.02, bias 0).
void ResetClassifier(backbones::Backbone& model);

absl::StatusOr<FinetuneResult> RunFinetune(const ModelFactory& build_model,
                                           const data::ImageFolder& train,
                                           const data::ImageFolder& val,
                                           const FinetuneOptions& options);

}  // namespace ssl::eval

#endif  // EVAL_FINETUNE_H_
