// Optimizers with PyTorch's update rules and state_dict layout, so checkpoints carry an
// `optimizer` entry that the original code can read: LARS in MoCo v3's flavour, LARC
// around SGD as VISSL (apex) applies it, Momentum^2 Teacher's LARS_SGD, SGD with
// momentum, AdamW. Parameters come in groups (PyTorch's param_groups) that may differ in
// weight decay and in trust-ratio exclusion; the learning rate is shared.
#ifndef SSL_OPTIM_OPTIMIZER_H_
#define SSL_OPTIM_OPTIMIZER_H_

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ssl::optim {

/// Hyper-parameters; each optimizer reads the ones it uses.
struct OptimizerOptions {
  double lr = 0.0;
  double weight_decay = 0.0;
  double momentum = 0.9;             ///< LARS, LARC, SGD
  double trust_coefficient = 0.001;  ///< LARS, LARC (eta)
  bool clip = false;                 ///< LARC: min(adaptive lr / lr, 1)
  double beta1 = 0.9;                ///< AdamW
  double beta2 = 0.999;              ///< AdamW
  double eps = 1e-8;                 ///< AdamW, LARC
};

/// Parameters sharing a weight decay and a trust-ratio treatment.
struct ParamGroup {
  std::vector<at::Tensor> params;
  double weight_decay = 0.0;
  bool no_trust_ratio = false;  ///< LARS / LARC: plain SGD step for these
};

class Optimizer {
 public:
  /// Groups in PyTorch's param_groups order (state_dict indices count through them);
  /// parameters without a gradient at Step() time are skipped, as in PyTorch.
  Optimizer(std::vector<ParamGroup> groups, OptimizerOptions options);
  /// One group with options.weight_decay.
  Optimizer(std::vector<at::Tensor> params, OptimizerOptions options);
  virtual ~Optimizer() = default;

  void Step();
  void ZeroGrad();
  double lr() const { return options_.lr; }
  void set_lr(double lr) { options_.lr = lr; }
  const OptimizerOptions& options() const { return options_; }
  int num_groups() const { return static_cast<int>(groups_.size()); }
  virtual std::string name() const = 0;

  /// {"state": {index: {name: tensor}}, "param_groups": [{hyper-parameters, "params"}]}.
  c10::IValue StateDict() const;
  /// Restores per-parameter state and hyper-parameters; InvalidArgument when the layout
  /// or a tensor's shape does not fit these parameters.
  absl::Status LoadStateDict(const c10::IValue& state_dict);

 protected:
  using State = std::map<std::string, at::Tensor>;
  struct Group {
    std::vector<size_t> indices;  ///< into params_
    double weight_decay = 0.0;
    bool no_trust_ratio = false;
  };
  /// One parameter's update; runs without autograd recording.
  virtual void Update(at::Tensor& param, const at::Tensor& grad, State& state,
                      const Group& group) = 0;
  /// A group's parameters that have a gradient, in order.
  struct Batch {
    std::vector<at::Tensor> params, grads;
    std::vector<State*> states;
  };
  /// Updates a group's parameters. The default calls Update per parameter; optimizers
  /// with a multi-tensor (_foreach) form override it, so that a GPU step launches a few
  /// kernels per group rather than several per parameter. The _foreach ops run the same
  /// per-tensor arithmetic, so the numbers do not change.
  virtual void UpdateGroup(Batch& batch, const Group& group);
  /// The hyper-parameters this optimizer saves in a param group, in PyTorch's names
  /// (weight_decay and params are added per group).
  virtual std::vector<std::pair<std::string, c10::IValue>> GroupHyperParameters(
      const Group& group) const = 0;

  std::vector<at::Tensor> params_;
  std::vector<State> states_;
  std::vector<Group> groups_;
  OptimizerOptions options_;
};

/// MoCo v3's LARS: parameters with ndim > 1 get d = g + wd p scaled by
/// trust ||p|| / ||d|| (when both norms are > 0); ndim <= 1 (biases, BN) get neither
/// decay nor scaling. mu = momentum mu + d; p -= lr mu. State "mu".
std::unique_ptr<Optimizer> MakeLars(std::vector<at::Tensor> params, OptimizerOptions options);
std::unique_ptr<Optimizer> MakeLars(std::vector<ParamGroup> groups, OptimizerOptions options);

/// LARC (apex, as VISSL wraps SGD): for every parameter with ||p|| > 0 and ||g|| > 0,
/// adaptive = trust ||p|| / (||g|| + wd ||p|| + eps) (clip: min(adaptive / lr, 1)),
/// g <- (g + wd p) * adaptive; then SGD with momentum and no further decay
/// (buf = momentum buf + g, the first buf = g; p -= lr buf). A parameter whose norms
/// vanish steps with its raw gradient, without decay, as apex's LARC does; a group
/// excluded from the trust ratio takes plain SGD steps with its decay. State
/// "momentum_buffer".
std::unique_ptr<Optimizer> MakeLarc(std::vector<ParamGroup> groups, OptimizerOptions options);

/// Momentum^2 Teacher's LARS_SGD: local lr = lr * trust ||p|| / (||g|| + wd ||p||) when
/// ||p|| ||g|| > 1e-8 and the group is not excluded, else lr;
/// buf = momentum buf + local_lr (g + wd p); p -= buf. Excluded groups (BN, biases) keep
/// their weight decay. State "momentum_buffer".
std::unique_ptr<Optimizer> MakeM2TeacherLars(std::vector<ParamGroup> groups,
                                             OptimizerOptions options);

/// torch.optim.SGD (momentum, no dampening, no Nesterov). State "momentum_buffer".
std::unique_ptr<Optimizer> MakeSgd(std::vector<at::Tensor> params, OptimizerOptions options);
std::unique_ptr<Optimizer> MakeSgd(std::vector<ParamGroup> groups, OptimizerOptions options);
/// torch.optim.AdamW: decoupled decay. State "step", "exp_avg", "exp_avg_sq".
std::unique_ptr<Optimizer> MakeAdamW(std::vector<at::Tensor> params, OptimizerOptions options);
std::unique_ptr<Optimizer> MakeAdamW(std::vector<ParamGroup> groups, OptimizerOptions options);

/// By name: "lars", "larc", "m2t_lars", "sgd", "adamw"; InvalidArgument otherwise.
absl::StatusOr<std::unique_ptr<Optimizer>> MakeOptimizer(const std::string& name,
                                                         std::vector<ParamGroup> groups,
                                                         OptimizerOptions options);

}  // namespace ssl::optim

#endif  // SSL_OPTIM_OPTIMIZER_H_
