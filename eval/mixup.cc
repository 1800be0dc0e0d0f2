#include "eval/mixup.h"

#include <ATen/ops/full.h>
#include <ATen/ops/log_softmax.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace ssl::eval {

absl::Status ValidateMixup(const MixupOptions& o) {
  if (o.mixup_alpha < 0 || o.cutmix_alpha < 0) {
    return absl::InvalidArgumentError(absl::StrCat("mixup and cutmix alphas must be >= 0, got ",
                                                   o.mixup_alpha, " and ", o.cutmix_alpha));
  }
  for (const auto& [p, name] : {std::pair{o.prob, "mixup prob"},
                                std::pair{o.switch_prob, "mixup switch prob"},
                                std::pair{o.label_smoothing, "label smoothing"}}) {
    if (!(p >= 0 && p <= 1)) {
      return absl::InvalidArgumentError(absl::StrCat(name, " must be in [0, 1], got ", p));
    }
  }
  if (o.num_classes < 1) {
    return absl::InvalidArgumentError(absl::StrCat("need >= 1 class, got ", o.num_classes));
  }
  return absl::OkStatus();
}

at::Tensor SmoothedOneHot(const at::Tensor& labels, int64_t num_classes, double smoothing) {
  const double off = smoothing / static_cast<double>(num_classes);
  const double on = 1.0 - smoothing + off;
  return at::full({labels.size(0), num_classes}, off, at::kFloat)
      .scatter_(1, labels.to(at::kLong).unsqueeze(1), on);
}

at::Tensor MixBatch(at::Tensor& images, const at::Tensor& labels, const MixupOptions& options,
                    Rng& rng, MixDraw* draw) {
  c10::AutoGradMode no_grad(false);
  MixDraw local;
  MixDraw& d = draw ? *draw : local;
  d = MixDraw();
  if (options.enabled() && rng.Uniform() < options.prob) {
    if (options.mixup_alpha > 0 && options.cutmix_alpha > 0) {
      d.cutmix = rng.Uniform() < options.switch_prob;
    } else {
      d.cutmix = options.cutmix_alpha > 0;
    }
    const double alpha = d.cutmix ? options.cutmix_alpha : options.mixup_alpha;
    d.lambda = rng.Beta(alpha, alpha);
  }
  const at::Tensor targets = SmoothedOneHot(labels, options.num_classes, options.label_smoothing);
  if (d.lambda == 1.0) return targets;
  TORCH_CHECK(images.size(0) % 2 == 0, "mixup needs an even batch, got ", images.size(0));
  const at::Tensor flipped = images.flip(0);
  if (d.cutmix) {
    const int64_t h = images.size(2), w = images.size(3);
    const double ratio = std::sqrt(1.0 - d.lambda);
    const int64_t cut_h = static_cast<int64_t>(h * ratio), cut_w = static_cast<int64_t>(w * ratio);
    const int64_t cy = rng.UniformInt(0, h - 1), cx = rng.UniformInt(0, w - 1);
    d.y0 = std::clamp<int64_t>(cy - cut_h / 2, 0, h);
    d.y1 = std::clamp<int64_t>(cy + cut_h / 2, 0, h);
    d.x0 = std::clamp<int64_t>(cx - cut_w / 2, 0, w);
    d.x1 = std::clamp<int64_t>(cx + cut_w / 2, 0, w);
    if (d.y1 > d.y0 && d.x1 > d.x0) {
      images.narrow(2, d.y0, d.y1 - d.y0)
          .narrow(3, d.x0, d.x1 - d.x0)
          .copy_(flipped.narrow(2, d.y0, d.y1 - d.y0).narrow(3, d.x0, d.x1 - d.x0));
    }
    d.lambda = 1.0 - static_cast<double>((d.y1 - d.y0) * (d.x1 - d.x0)) / static_cast<double>(h * w);
  } else {
    images.mul_(d.lambda).add_(flipped.mul(1.0 - d.lambda));
  }
  return targets.mul(d.lambda).add_(targets.flip(0).mul(1.0 - d.lambda));
}

at::Tensor SoftTargetCrossEntropy(const at::Tensor& logits, const at::Tensor& targets) {
  return targets.mul(at::log_softmax(logits, -1)).sum(-1).neg().mean();
}

}  // namespace ssl::eval
