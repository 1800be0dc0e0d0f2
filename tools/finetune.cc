// End-to-end fine-tuning with DeiT's recipe (eval/finetune.h) from a pretraining
// checkpoint of any method, an exported backbone (DeiT's {'model': ...} or torchvision's
// state dict), or from random init; on an ImageFolder or a transfer dataset in its
// distributed format (transfer/datasets.h).
//
//   bazel run //tools:finetune -- --pretrained=checkpoint_0299.pth.tar
//       --data=/path/to/imagenet --output_dir=/tmp/ft
//   bazel run //tools:finetune -- --arch=resnet18 --dataset=cifar10
//       --data=/path/to/cifar-10-batches-py --image_size=32 --output_dir=/tmp/ft_random
#include "eval/finetune.h"

#include <ATen/Parallel.h>
#include <gflags/gflags.h>

#include <iostream>
#include <optional>

#include "absl/strings/str_cat.h"
#include "ssl/backbones/backbone.h"
#include "ssl/core/logging.h"
#include "ssl/data/image_io.h"
#include "ssl/train/pretrained.h"
#include "tools/cli_util.h"
#include "tools/device_flags.h"
#include "transfer/datasets.h"

// What to fine-tune.
DEFINE_string(pretrained, "",
              "Checkpoint to start from (this framework's, an original's, or an exported "
              "DeiT/torchvision file); empty: random init of --arch.");
DEFINE_string(backbone, "",
              "Which backbone of the checkpoint (empty: the method's evaluation one).");
DEFINE_string(arch, "", "Architecture for random init (with --pretrained empty), e.g. vit_small.");
DEFINE_bool(cifar_stem, false, "Random init of a ResNet: the 32 px stem.");
// Data.
DEFINE_string(data, "", "Dataset root (required); its layout is given by --dataset.");
DEFINE_string(dataset, "imagefolder",
              "imagefolder (<data>/<train_split>, <data>/<val_split>), cifar10 / cifar100 (the "
              "python pickle batches), flowers102 (jpg/, imagelabels.mat, setid.mat) or pets "
              "(images/, annotations/trainval.txt, test.txt).");
DEFINE_string(train_split, "train", "ImageFolder training sub-folder.");
DEFINE_string(val_split, "val", "ImageFolder validation sub-folder.");
DEFINE_string(cache_dir, "",
              "Where pickled datasets (CIFAR) are unpacked to images once (default: "
              "<output_dir>/dataset_cache).");
// DeiT's recipe.
DEFINE_int32(epochs, 300, "Epochs (DeiT: 300; MoCo v3 fine-tunes ViT-B for 150).");
DEFINE_int64(batch_size, 1024, "Batch of this process; the lr scales with batch / 512.");
DEFINE_double(lr, 5e-4, "Base lr (AdamW), scaled by batch / 512.");
DEFINE_double(weight_decay, 0.05, "AdamW weight decay (not on biases, norms, tokens).");
DEFINE_int32(warmup_epochs, 5, "Linear warmup epochs from --warmup_lr.");
DEFINE_double(warmup_lr, 1e-6, "lr at the start of warmup.");
DEFINE_double(min_lr, 1e-5, "Floor of the cosine.");
DEFINE_double(smoothing, 0.1, "Label smoothing.");
DEFINE_double(mixup, 0.8, "Mixup alpha (0: off).");
DEFINE_double(cutmix, 1.0, "CutMix alpha (0: off).");
DEFINE_double(mixup_prob, 1.0, "Probability of mixing a batch.");
DEFINE_double(mixup_switch_prob, 0.5, "Probability of CutMix when both are on.");
DEFINE_string(aa, "rand-m9-mstd0.5-inc1", "RandAugment policy (timm's string; empty: off).");
DEFINE_double(reprob, 0.25, "Random erasing probability.");
DEFINE_string(train_interpolation, "bicubic",
              "Filter of the training crop, RandAugment's geometric ops and the evaluation "
              "resize: bicubic (DeiT's --train-interpolation) or bilinear (torchvision's "
              "default, moco-v3's transfer/datasets.py).");
DEFINE_double(crop_min, 0.08,
              "Smallest RandomResizedCrop area fraction (timm: 0.08; moco-v3's transfer "
              "recipe: 0.05).");
DEFINE_double(drop_path, 0.1, "Stochastic depth of a ViT's last block (ResNets have none).");
DEFINE_int32(repeated_aug, 3, "Repeated augmentation copies (1: off).");
DEFINE_bool(model_ema, false, "Keep and evaluate an EMA of the weights.");
DEFINE_double(model_ema_decay, 0.99996, "EMA decay.");
DEFINE_int32(image_size, 0, "Training crop (0: the checkpoint's pretraining size, else 224).");
DEFINE_double(eval_crop_ratio, 0.875, "Evaluation resizes to image_size / ratio, then crops.");
// Running.
DEFINE_string(output_dir, "", "checkpoint.pth, metrics.jsonl, finetune_result.json (required).");
DEFINE_bool(resume, true, "Continue from <output_dir>/checkpoint.pth when it exists.");
DEFINE_int32(max_epochs_this_run, 0, "Stop after this many epochs in this invocation (0: all).");
DEFINE_uint64(seed, 0, "Seed of init, data order, augmentations, Mixup and drop path.");
DEFINE_int32(workers, 2, "Loader threads.");
DEFINE_int32(threads, 0, "Compute threads (0: one per core).");
DEFINE_int32(print_freq, 10, "Iterations between progress lines.");

namespace {

int Fail(const absl::Status& status) {
  std::cerr << "finetune: " << status.message() << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  ssl::tools::ParseProgramFlags(
      &argc, &argv,
      "finetune --pretrained=<checkpoint> --data=<root> --output_dir=<dir>: end-to-end "
      "fine-tuning with DeiT's recipe (AdamW, cosine, Mixup/CutMix, RandAugment, random "
      "erasing, drop path, repeated augmentation)");
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  for (std::string* path : {&FLAGS_pretrained, &FLAGS_data, &FLAGS_output_dir, &FLAGS_cache_dir}) {
    *path = ssl::tools::UserPath(*path);
  }
  if (FLAGS_data.empty()) return Fail(absl::InvalidArgumentError("--data is required"));
  if (FLAGS_output_dir.empty()) return Fail(absl::InvalidArgumentError("--output_dir is required"));
  if (FLAGS_pretrained.empty() == FLAGS_arch.empty()) {
    return Fail(absl::InvalidArgumentError(
        "give either --pretrained (a checkpoint to fine-tune) or --arch (random init)"));
  }
  if (FLAGS_threads > 0) at::set_num_threads(FLAGS_threads);

  std::string arch = FLAGS_arch;
  int pretrain_size = 224;
  if (!FLAGS_pretrained.empty()) {
    auto config = ssl::train::ReadCheckpointConfig(FLAGS_pretrained, FLAGS_backbone);
    if (!config.ok()) return Fail(config.status());
    arch = config->arch;
    pretrain_size = config->image_size;
  }
  const int image_size = FLAGS_image_size > 0 ? FLAGS_image_size : pretrain_size;

  ssl::transfer::DatasetOptions dataset_options;
  dataset_options.format = FLAGS_dataset;
  dataset_options.root = FLAGS_data;
  dataset_options.train_split = FLAGS_train_split;
  dataset_options.val_split = FLAGS_val_split;
  dataset_options.cache_dir =
      FLAGS_cache_dir.empty() ? FLAGS_output_dir + "/dataset_cache" : FLAGS_cache_dir;
  auto splits = ssl::transfer::OpenTransferDataset(dataset_options);
  if (!splits.ok()) return Fail(splits.status());
  LOG(INFO) << FLAGS_dataset << ": " << splits->train.size() << " training and "
            << splits->val.size() << " evaluation images, " << splits->train.num_classes()
            << " classes";

  ssl::eval::FinetuneModelSpec spec;
  spec.checkpoint = FLAGS_pretrained;
  spec.backbone = FLAGS_backbone;
  spec.arch = arch;
  spec.cifar_stem = FLAGS_cifar_stem;
  spec.image_size = image_size;
  spec.num_classes = splits->train.num_classes();
  spec.drop_path = FLAGS_drop_path;

  ssl::eval::FinetuneOptions options;
  options.epochs = FLAGS_epochs;
  options.batch_size = FLAGS_batch_size;
  options.base_lr = FLAGS_lr;
  options.weight_decay = FLAGS_weight_decay;
  options.warmup_epochs = FLAGS_warmup_epochs;
  options.warmup_lr = FLAGS_warmup_lr;
  options.min_lr = FLAGS_min_lr;
  options.mixup.mixup_alpha = FLAGS_mixup;
  options.mixup.cutmix_alpha = FLAGS_cutmix;
  options.mixup.prob = FLAGS_mixup_prob;
  options.mixup.switch_prob = FLAGS_mixup_switch_prob;
  options.mixup.label_smoothing = FLAGS_smoothing;
  options.rand_augment = FLAGS_aa;
  options.erase_probability = FLAGS_reprob;
  {
    const std::optional<ssl::data::Interpolation> interpolation =
        ssl::data::ParseInterpolation(FLAGS_train_interpolation);
    if (!interpolation) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("--train_interpolation must be bicubic or bilinear, got \"",
                       FLAGS_train_interpolation, "\"")));
    }
    options.interpolation = *interpolation;
  }
  options.crop_scale_min = FLAGS_crop_min;
  options.repeated_augmentations = FLAGS_repeated_aug;
  options.model_ema = FLAGS_model_ema;
  options.model_ema_decay = FLAGS_model_ema_decay;
  options.image_size = image_size;
  options.eval_crop_ratio = FLAGS_eval_crop_ratio;
  options.output_dir = FLAGS_output_dir;
  options.resume = FLAGS_resume;
  options.max_epochs_this_run = FLAGS_max_epochs_this_run;
  options.workers = FLAGS_workers;
  options.seed = FLAGS_seed;
  {
    absl::StatusOr<ssl::tools::DeviceChoice> device = ssl::tools::DeviceFromFlags(
        0, ssl::MixedPrecision::kFloat16);
    if (!device.ok()) return Fail(device.status());
    options.device = device->device;
    options.amp = device->amp;
  }
  options.print_freq = std::max(1, FLAGS_print_freq);
  auto result = ssl::eval::RunFinetune(ssl::eval::FinetuneModelFactory(spec), splits->train,
                                       splits->val, options);
  if (!result.ok()) return Fail(result.status());
  std::cout << "fine-tuned " << arch << " for " << result->epochs_done << "/" << FLAGS_epochs
            << " epochs: top-1 " << result->top1 << ", top-5 " << result->top5 << " (best "
            << result->best_top1 << "), " << result->images_per_second << " images/s\n"
            << "results: " << FLAGS_output_dir << "/finetune_result.json\n";
  return 0;
}
