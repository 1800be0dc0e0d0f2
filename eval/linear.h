// Linear classification on a frozen backbone, MoCo v3's protocol (main_lincls.py): the
// backbone stays in eval mode (BN statistics frozen) without gradients, a fresh Linear
// classifier initialized N(0, 0.01) with zero bias is trained with SGD (momentum 0.9,
// weight decay 0, lr = base_lr * batch / 256, half-cosine per epoch), training crops are
// RandomResizedCrop + flip, validation is resize + center crop; afterwards a sanity
// check verifies that no backbone weight or buffer changed. Top-1 and top-5 of the last
// and of the best epoch are both reported. Momentum^2 Teacher's (BYOL's) protocol is
// the same with a BatchNorm1d after the Linear and the cosine per iteration.
#ifndef EVAL_LINEAR_H_
#define EVAL_LINEAR_H_

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ssl/backbones/backbone.h"
#include "ssl/data/image_folder.h"

namespace ssl::eval {

struct LinearEvalOptions {
  int epochs = 90;
  int64_t batch_size = 1024;
  double base_lr = 0.1;  ///< 0.1 for ResNet-50 (scaled by batch / 256)
  /// Linear followed by BatchNorm1d(classes) (Momentum^2 Teacher's classifier).
  bool classifier_bn = false;
  /// With classifier_bn: its training statistics over groups of this many samples, as
  /// the original computes them on each GPU (-b 256 on 8 GPUs: 32); the batch must be a
  /// multiple, and an epoch's last incomplete batch is dropped, as the original's loader
  /// drops it. 0: over the whole batch.
  int64_t classifier_bn_samples = 0;
  /// "cos_epoch" (MoCo v3: half cosine per epoch), "cos_iter" (Momentum^2 Teacher: per
  /// iteration) or "multistep" (x0.1 at each of `milestones`, epochs).
  std::string schedule = "cos_epoch";
  std::vector<int> milestones = {60, 80};
  double momentum = 0.9;
  double weight_decay = 0.0;
  int image_size = 224;
  int resize = 256;
  /// CPU shortcut: extract center-crop features once and train the classifier on them
  /// (no training augmentation). Reported as mode "cached-features".
  bool cached_features = false;
  int eval_every = 1;  ///< validate every N epochs (and always after the last)
  int workers = 2;
  uint64_t seed = 0;
  bool verbose = true;
};

struct LinearEvalResult {
  double top1 = 0, top5 = 0;            ///< last epoch
  double best_top1 = 0, best_top5 = 0;  ///< best validated epoch (what the original keeps)
  int best_epoch = 0;
  int epochs = 0;
  double train_loss = 0;  ///< mean training loss of the last epoch
  std::string mode;  ///< "augmented" or "cached-features"
  bool frozen_weights_unchanged = false;
  nlohmann::json ToJson() const;
};

absl::StatusOr<LinearEvalResult> RunLinearEval(backbones::Backbone& backbone,
                                               const data::ImageFolder& train,
                                               const data::ImageFolder& val,
                                               const LinearEvalOptions& options);

}  // namespace ssl::eval

#endif  // EVAL_LINEAR_H_
