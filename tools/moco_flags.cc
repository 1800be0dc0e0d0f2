#include "tools/moco_flags.h"

#include <ATen/Parallel.h>

#include "absl/strings/str_cat.h"
#include "ssl/optim/schedules.h"

DEFINE_string(arch, "resnet50",
              "Backbone: resnet18/34/50/101/152, optionally widened "
              "(resnet50w2) or narrowed for CPU runs (resnet18w0.25).");
DEFINE_bool(cifar_stem, false, "3x3 stride-1 first conv without max-pool (32 px images).");
DEFINE_int64(batch_size, 4096, "Global batch over all processes; the lr scales with it.");
DEFINE_double(lr, 0.6,
              "Base learning rate; the peak is lr * batch_size / 256. ResNet-50 "
              "recipes: 0.6 (100 ep), 0.3 (300 and 1000 ep). LARS steps are "
              "proportional to the lr: small batches need a larger base lr.");
DEFINE_int32(epochs, 100, "Total epochs (the schedules span all of them).");
DEFINE_double(warmup_epochs, 10, "Linear lr warmup before the half-cosine decay.");
DEFINE_string(optimizer, "lars", "lars (ResNets), adamw (ViTs) or sgd.");
DEFINE_double(weight_decay, 1e-6,
              "1e-6 for ResNet-50 100/300 ep, 1.5e-6 for 1000 ep, 0.1 for ViT.");
DEFINE_int64(moco_dim, 256, "Output width of the projector and predictor.");
DEFINE_int64(moco_mlp_dim, 4096, "Hidden width of both MLP heads.");
DEFINE_double(moco_t, 1.0,
              "Softmax temperature: 1.0 for ResNets at batch 4096, 0.2 for ViTs "
              "(and for small batches).");
DEFINE_double(moco_m, 0.99,
              "Momentum of the momentum encoder (its start value with m-cos): "
              "0.99, or 0.996 for the 1000-epoch ResNet recipe.");
DEFINE_bool(moco_m_cos, true,
            "Raise the momentum to 1 along a half-cosine (--nomoco_m_cos: fixed).");
DEFINE_double(crop_min, 0,
              "Minimum RandomResizedCrop area; 0 picks the paper's: 0.2 for ResNets, 0.08 "
              "for ViTs.");
DEFINE_bool(stop_grad_conv1, false,
            "ViT only: keep the patch projection at its random init (the ViT recipes set it).");
DEFINE_int32(image_size, 224, "Crop size of both views.");
DEFINE_bool(batch_views, false,
            "Run both views through each encoder as one batch, each view still normalized by "
            "its own BatchNorm statistics: the same training as one pass per view (as the "
            "original does), rounded differently, with larger matrix products and half the "
            "weight reorders (faster on the CPU). Needs per-process statistics: --bn=local, "
            "or --bn=sync in a single process.");
DEFINE_int32(print_freq, 10, "Iterations between progress lines.");
DEFINE_uint64(seed, 0, "Seeds initialization, data order and augmentations.");
DEFINE_int32(workers, 2, "Data loading threads.");
DEFINE_string(bn, "sync",
              "BatchNorm statistics in training: sync (SyncBN over --sync_bn_group_size "
              "processes, as MoCo v3; plain BN in a single process), local (each "
              "process's own batch) or split (--split_bn_splits sub-batches per process, "
              "emulating that many GPUs' statistics in one process).");
DEFINE_int32(sync_bn_group_size, 0,
             "SyncBN groups as in VISSL: 0 all processes, -1 the processes of each "
             "machine, N consecutive groups of N processes.");
DEFINE_int32(split_bn_splits, 8, "Sub-batches of each process's batch for --bn=split.");
DEFINE_int32(threads, 0, "Intra-op compute threads (0: LibTorch's default, one per core).");

namespace ssl::tools {

methods::MocoV3Options MocoV3OptionsFromFlags() {
  methods::MocoV3Options moco;
  moco.arch = FLAGS_arch;
  moco.cifar_stem = FLAGS_cifar_stem;
  moco.dim = FLAGS_moco_dim;
  moco.mlp_dim = FLAGS_moco_mlp_dim;
  moco.temperature = FLAGS_moco_t;
  moco.momentum = FLAGS_moco_m;
  moco.momentum_cosine = FLAGS_moco_m_cos;
  moco.crop_min = FLAGS_crop_min != 0 ? FLAGS_crop_min
                                      : (backbones::HeadName(FLAGS_arch) == "head" ? 0.08 : 0.2);
  moco.stop_grad_conv1 = FLAGS_stop_grad_conv1;
  moco.image_size = FLAGS_image_size;
  moco.batch_views = FLAGS_batch_views;
  return moco;
}

absl::Status ValidateMocoFlags() {
  if (FLAGS_warmup_epochs < 0 || (FLAGS_warmup_epochs >= FLAGS_epochs && FLAGS_warmup_epochs > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("warmup epochs must be in [0, epochs), got ",
                                                   FLAGS_warmup_epochs, " of ", FLAGS_epochs));
  }
  if (!(FLAGS_lr > 0))
    return absl::InvalidArgumentError(absl::StrCat("learning rate must be > 0, got ", FLAGS_lr));
  if (FLAGS_optimizer != "lars" && FLAGS_optimizer != "sgd" && FLAGS_optimizer != "adamw") {
    return absl::InvalidArgumentError(
        absl::StrCat("optimizer must be lars, sgd or adamw, got \"", FLAGS_optimizer, "\""));
  }
  if (FLAGS_batch_views && FLAGS_bn == "split") {
    return absl::InvalidArgumentError(
        "--batch_views needs per-process BatchNorm statistics, which --bn=split replaces");
  }
  return absl::OkStatus();
}

train::PretrainOptions PretrainOptionsFromFlags() {
  train::PretrainOptions options;
  options.batch_size = FLAGS_batch_size;
  options.epochs = FLAGS_epochs;
  const double peak_lr = optim::ScaledLearningRate(FLAGS_lr, FLAGS_batch_size);
  const double warmup = FLAGS_warmup_epochs;
  options.learning_rate = [peak_lr, warmup](const methods::StepContext& step) {
    return optim::WarmupCosineLearningRate(peak_lr, warmup, static_cast<double>(step.epochs),
                                           step.FractionalEpoch());
  };
  options.optimizer = FLAGS_optimizer;
  options.optimizer_options.weight_decay = FLAGS_weight_decay;
  options.print_freq = FLAGS_print_freq;
  options.seed = FLAGS_seed;
  options.workers = FLAGS_workers;
  options.bn = FLAGS_bn;
  options.sync_bn_group_size = FLAGS_sync_bn_group_size;
  options.split_bn_splits = FLAGS_split_bn_splits;
  return options;
}

void ApplyThreadsFlag() {
  if (FLAGS_threads > 0) at::set_num_threads(FLAGS_threads);
}

}  // namespace ssl::tools
