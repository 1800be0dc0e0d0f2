// torch.cuda.amp.GradScaler for fp16 training: the loss is multiplied by a scale before
// backward, gradients are unscaled (and checked for inf/NaN) before the optimizer, a
// step whose gradients overflowed is skipped, and the scale backs off after an overflow
// and grows after `growth_interval` clean steps. The state_dict is PyTorch's, so the
// checkpoint's "scaler" entry reads back in either framework.
#ifndef SSL_OPTIM_GRAD_SCALER_H_
#define SSL_OPTIM_GRAD_SCALER_H_

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace ssl::optim {

struct GradScalerOptions {
  bool enabled = true;  ///< disabled: every call is a pass-through (bf16, fp32)
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
};

class GradScaler {
 public:
  explicit GradScaler(GradScalerOptions options = {});

  bool enabled() const { return options_.enabled; }
  /// loss * scale (the scale lives on the loss's device; no host synchronization).
  at::Tensor Scale(const at::Tensor& loss);
  /// Divides the gradients of `parameters` by the scale in place and records whether
  /// any was inf or NaN; once per step, after gradient averaging.
  void Unscale(const std::vector<at::Tensor>& parameters);
  /// Whether the last Unscale found a non-finite gradient (the step must be skipped).
  /// Reads one value back from the device: PyTorch's GradScaler.step does the same.
  bool FoundInf() const;
  /// Backs off or grows the scale from the last Unscale's finding; once per step.
  void Update();

  /// The current scale (reads it back from the device).
  double scale() const;
  /// {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"},
  /// or an empty dict when disabled: GradScaler.state_dict().
  c10::IValue StateDict() const;
  /// InvalidArgument when `state` is not a GradScaler state; an empty dict is accepted
  /// (a checkpoint from a run without fp16) and keeps the initial scale.
  absl::Status LoadStateDict(const c10::IValue& state);

 private:
  void LazyInit(const at::Device& device);

  GradScalerOptions options_;
  at::Tensor scale_;           ///< float [1]
  at::Tensor growth_tracker_;  ///< int32 [1]: clean steps since the last change
  at::Tensor found_inf_;       ///< float [1], from the last Unscale
  double loaded_scale_ = 0;    ///< from LoadStateDict before the device is known
  int64_t loaded_tracker_ = 0;
};

}  // namespace ssl::optim

#endif  // SSL_OPTIM_GRAD_SCALER_H_
