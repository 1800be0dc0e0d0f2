#include "ssl/optim/grad_scaler.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/_amp_foreach_non_finite_check_and_unscale.h>
#include <ATen/ops/_amp_update_scale.h>
#include <ATen/ops/full.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/logical_not.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace ssl::optim {

GradScaler::GradScaler(GradScalerOptions options)
    : options_(options), loaded_scale_(options.init_scale) {}

void GradScaler::LazyInit(const at::Device& device) {
  if (scale_.defined()) {
    if (scale_.device() != device) {
      scale_ = scale_.to(device);
      growth_tracker_ = growth_tracker_.to(device);
    }
    return;
  }
  scale_ = at::full({1}, loaded_scale_, at::TensorOptions(at::kFloat).device(device));
  growth_tracker_ = at::full({1}, loaded_tracker_, at::TensorOptions(at::kInt).device(device));
}

at::Tensor GradScaler::Scale(const at::Tensor& loss) {
  if (!options_.enabled) return loss;
  LazyInit(loss.device());
  // A [1] float tensor: an fp16 loss is promoted to fp32, as in GradScaler.scale.
  return loss * scale_;
}

void GradScaler::Unscale(const std::vector<at::Tensor>& parameters) {
  if (!options_.enabled || !scale_.defined()) return;
  c10::NoGradGuard no_grad;
  // As GradScaler.unscale_: the reciprocal in double, applied in fp32.
  const at::Tensor inv_scale = scale_.to(at::kDouble).reciprocal().to(at::kFloat);
  found_inf_ = at::zeros({1}, scale_.options());
  std::vector<at::Tensor> grads;
  for (const at::Tensor& p : parameters) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (grads.empty()) return;
  if (scale_.is_cuda()) {
    // One fused kernel per dtype/device group, no synchronization.
    at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf_, inv_scale);
    return;
  }
  // LibTorch 1.13 has no CPU kernel for it: the same arithmetic, tensor by tensor.
  for (at::Tensor& grad : grads) {
    found_inf_ =
        at::where(at::logical_not(at::isfinite(grad)).any(), at::ones_like(found_inf_), found_inf_);
    grad.mul_(inv_scale.to(grad.scalar_type()));
  }
}

bool GradScaler::FoundInf() const {
  return options_.enabled && found_inf_.defined() && found_inf_.item<float>() != 0;
}

void GradScaler::Update() {
  if (!options_.enabled || !found_inf_.defined()) return;
  c10::NoGradGuard no_grad;
  if (scale_.is_cuda()) {
    at::_amp_update_scale_(scale_, growth_tracker_, found_inf_, options_.growth_factor,
                           options_.backoff_factor, options_.growth_interval);
  } else {
    // _amp_update_scale_'s rule: back off and reset after an overflow; otherwise count
    // the clean step and grow once `growth_interval` of them have passed.
    if (found_inf_.item<float>() != 0) {
      scale_.mul_(options_.backoff_factor);
      growth_tracker_.zero_();
    } else {
      const int64_t clean = growth_tracker_.item<int>() + 1;
      if (clean == options_.growth_interval) {
        const at::Tensor grown = scale_ * options_.growth_factor;
        if (std::isfinite(grown.item<float>())) scale_.copy_(grown);
        growth_tracker_.zero_();
      } else {
        growth_tracker_.fill_(clean);
      }
    }
  }
  found_inf_ = at::Tensor();
}

double GradScaler::scale() const { return scale_.defined() ? scale_.item<float>() : loaded_scale_; }

c10::IValue GradScaler::StateDict() const {
  c10::impl::GenericDict state(c10::StringType::get(), c10::AnyType::get());
  if (!options_.enabled) return state;
  state.insert("scale", scale());
  state.insert("growth_factor", options_.growth_factor);
  state.insert("backoff_factor", options_.backoff_factor);
  state.insert("growth_interval", options_.growth_interval);
  state.insert("_growth_tracker", growth_tracker_.defined()
                                      ? static_cast<int64_t>(growth_tracker_.item<int>())
                                      : loaded_tracker_);
  return state;
}

absl::Status GradScaler::LoadStateDict(const c10::IValue& value) {
  if (!value.isGenericDict()) return absl::InvalidArgumentError("the scaler state is not a dict");
  const c10::impl::GenericDict state = value.toGenericDict();
  if (state.size() == 0) return absl::OkStatus();
  auto number = [&state](const char* key, double* out) -> absl::Status {
    if (!state.contains(key)) {
      return absl::InvalidArgumentError(absl::StrCat("the scaler state lacks \"", key, "\""));
    }
    const c10::IValue v = state.at(key);
    if (!v.isDouble() && !v.isInt()) {
      return absl::InvalidArgumentError(absl::StrCat("the scaler's \"", key, "\" is not a number"));
    }
    *out = v.isDouble() ? v.toDouble() : static_cast<double>(v.toInt());
    return absl::OkStatus();
  };
  double scale = 0, growth = 0, backoff = 0, interval = 0, tracker = 0;
  for (auto [key, out] : {std::pair{"scale", &scale},
                          {"growth_factor", &growth},
                          {"backoff_factor", &backoff},
                          {"growth_interval", &interval},
                          {"_growth_tracker", &tracker}}) {
    if (absl::Status s = number(key, out); !s.ok()) return s;
  }
  if (!(scale > 0) || !std::isfinite(scale)) {
    return absl::InvalidArgumentError(absl::StrCat("the scaler's scale ", scale, " is not > 0"));
  }
  options_.growth_factor = growth;
  options_.backoff_factor = backoff;
  options_.growth_interval = static_cast<int64_t>(interval);
  loaded_scale_ = scale;
  loaded_tracker_ = static_cast<int64_t>(tracker);
  if (scale_.defined()) {
    scale_.fill_(scale);
    growth_tracker_.fill_(loaded_tracker_);
  }
  return absl::OkStatus();
}

}  // namespace ssl::optim
