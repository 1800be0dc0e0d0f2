// Optimizers with PyTorch's update rules and state_dict layout, so checkpoints carry an
// `optimizer` entry that the original code can read: LARS in MoCo v3's flavour, SGD
// with momentum, AdamW. One parameter group, as MoCo v3 uses.
#ifndef SSL_OPTIM_OPTIMIZER_H_
#define SSL_OPTIM_OPTIMIZER_H_

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace ssl::optim {

/// Hyper-parameters; each optimizer reads the ones it uses.
struct OptimizerOptions {
  double lr = 0.0;
  double weight_decay = 0.0;
  double momentum = 0.9;             ///< LARS, SGD
  double trust_coefficient = 0.001;  ///< LARS
  double beta1 = 0.9;                ///< AdamW
  double beta2 = 0.999;              ///< AdamW
  double eps = 1e-8;                 ///< AdamW
};

class Optimizer {
 public:
  /// `params` in the model's parameters() order (state_dict indices refer to it);
  /// parameters without a gradient at Step() time are skipped, as in PyTorch.
  Optimizer(std::vector<at::Tensor> params, OptimizerOptions options);
  virtual ~Optimizer() = default;

  void Step();
  void ZeroGrad();
  double lr() const { return options_.lr; }
  void set_lr(double lr) { options_.lr = lr; }
  const OptimizerOptions& options() const { return options_; }
  virtual std::string name() const = 0;

  /// {"state": {index: {name: tensor}}, "param_groups": [{hyper-parameters, "params"}]}.
  c10::IValue StateDict() const;
  /// Restores per-parameter state and hyper-parameters; InvalidArgument when the layout
  /// or a tensor's shape does not fit these parameters.
  absl::Status LoadStateDict(const c10::IValue& state_dict);

 protected:
  using State = std::map<std::string, at::Tensor>;
  /// One parameter's update; runs without autograd recording.
  virtual void Update(at::Tensor& param, const at::Tensor& grad, State& state) = 0;
  /// The hyper-parameters this optimizer saves in its param group, in PyTorch's names.
  virtual std::vector<std::pair<std::string, double>> GroupHyperParameters() const = 0;

  std::vector<at::Tensor> params_;
  std::vector<State> states_;
  OptimizerOptions options_;
};

/// MoCo v3's LARS: parameters with ndim > 1 get d = g + wd p scaled by
/// trust ||p|| / ||d|| (when both norms are > 0); ndim <= 1 (biases, BN) get neither
/// decay nor scaling. mu = momentum mu + d; p -= lr mu. State "mu".
std::unique_ptr<Optimizer> MakeLars(std::vector<at::Tensor> params, OptimizerOptions options);
/// torch.optim.SGD (momentum, no dampening, no Nesterov). State "momentum_buffer".
std::unique_ptr<Optimizer> MakeSgd(std::vector<at::Tensor> params, OptimizerOptions options);
/// torch.optim.AdamW: decoupled decay on every parameter. State "step", "exp_avg",
/// "exp_avg_sq".
std::unique_ptr<Optimizer> MakeAdamW(std::vector<at::Tensor> params, OptimizerOptions options);

}  // namespace ssl::optim

#endif  // SSL_OPTIM_OPTIMIZER_H_
