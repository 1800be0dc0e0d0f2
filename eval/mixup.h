// timm's Mixup as DeiT uses it (mode 'batch'): per batch, with probability `prob`, CutMix
// (with probability `switch_prob`, lambda ~ Beta(cutmix_alpha, cutmix_alpha), a box of
// side sqrt(1 - lambda) centred uniformly and clipped, lambda corrected to the pasted
// area) or Mixup (lambda ~ Beta(mixup_alpha, mixup_alpha), x = lambda x + (1 - lambda)
// x.flip(0)); targets are the label-smoothed one-hots mixed with the same lambda.
#ifndef EVAL_MIXUP_H_
#define EVAL_MIXUP_H_

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "absl/status/status.h"
#include "ssl/core/random.h"

namespace ssl::eval {

struct MixupOptions {
  double mixup_alpha = 0.8;
  double cutmix_alpha = 1.0;
  double prob = 1.0;         ///< probability that a batch is mixed at all
  double switch_prob = 0.5;  ///< CutMix instead of Mixup when both are on
  double label_smoothing = 0.1;
  int64_t num_classes = 1000;
  bool enabled() const { return prob > 0 && (mixup_alpha > 0 || cutmix_alpha > 0); }
};

/// What one batch drew: lambda (after CutMix's area correction) and the box.
struct MixDraw {
  double lambda = 1.0;
  bool cutmix = false;
  int64_t y0 = 0, y1 = 0, x0 = 0, x1 = 0;  ///< CutMix box [y0, y1) x [x0, x1)
};

/// One sentence for bad values (negative alphas, probabilities outside [0, 1]).
absl::Status ValidateMixup(const MixupOptions& options);

/// timm's mixup_target: (1 - smoothing + smoothing / C) on the label, smoothing / C off it.
at::Tensor SmoothedOneHot(const at::Tensor& labels, int64_t num_classes, double smoothing);

/// Mixes `images` [b, C, H, W] in place (b must be even, as timm requires) and returns
/// the soft targets [b, num_classes]. Without mixing: the smoothed one-hots.
at::Tensor MixBatch(at::Tensor& images, const at::Tensor& labels, const MixupOptions& options,
                    Rng& rng, MixDraw* draw = nullptr);

/// timm's SoftTargetCrossEntropy: mean over the batch of -sum(target * log_softmax).
at::Tensor SoftTargetCrossEntropy(const at::Tensor& logits, const at::Tensor& targets);

}  // namespace ssl::eval

#endif  // EVAL_MIXUP_H_
