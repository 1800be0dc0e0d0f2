#include "ssl/optim/optimizer.h"

#include <ATen/core/Dict.h>
#include <ATen/core/List.h>
#include <ATen/ops/_foreach_add.h>
#include <ATen/ops/_foreach_addcdiv.h>
#include <ATen/ops/_foreach_addcmul.h>
#include <ATen/ops/_foreach_div.h>
#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_foreach_norm.h>
#include <ATen/ops/_foreach_sqrt.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/full.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace ssl::optim {

Optimizer::Optimizer(std::vector<ParamGroup> groups, OptimizerOptions options) : options_(options) {
  for (ParamGroup& group : groups) {
    Group entry;
    entry.weight_decay = group.weight_decay;
    entry.no_trust_ratio = group.no_trust_ratio;
    for (at::Tensor& param : group.params) {
      entry.indices.push_back(params_.size());
      params_.push_back(std::move(param));
    }
    groups_.push_back(std::move(entry));
  }
  states_.resize(params_.size());
}

Optimizer::Optimizer(std::vector<at::Tensor> params, OptimizerOptions options)
    : Optimizer(std::vector<ParamGroup>{ParamGroup{std::move(params), options.weight_decay, false}},
                options) {}

void Optimizer::Step() {
  c10::AutoGradMode no_grad(false);
  for (const Group& group : groups_) {
    Batch batch;
    for (size_t i : group.indices) {
      const at::Tensor& grad = params_[i].grad();
      if (!grad.defined()) continue;
      batch.params.push_back(params_[i]);
      batch.grads.push_back(grad);
      batch.states.push_back(&states_[i]);
    }
    if (!batch.params.empty()) UpdateGroup(batch, group);
  }
}

void Optimizer::UpdateGroup(Batch& batch, const Group& group) {
  for (size_t i = 0; i < batch.params.size(); ++i) {
    Update(batch.params[i], batch.grads[i], *batch.states[i], group);
  }
}

void Optimizer::ZeroGrad() {
  for (at::Tensor& param : params_) {
    if (param.grad().defined()) param.mutable_grad().reset();  // set_to_none semantics
  }
}

c10::IValue Optimizer::StateDict() const {
  c10::impl::GenericDict state(c10::IntType::get(), c10::AnyType::get());
  for (size_t i = 0; i < states_.size(); ++i) {
    if (states_[i].empty()) continue;
    c10::impl::GenericDict entry(c10::StringType::get(), c10::AnyType::get());
    for (const auto& [name, tensor] : states_[i]) entry.insert(name, tensor);
    state.insert(static_cast<int64_t>(i), entry);
  }
  c10::impl::GenericList groups(c10::AnyType::get());
  for (const Group& group : groups_) {
    c10::impl::GenericDict entry(c10::StringType::get(), c10::AnyType::get());
    entry.insert("lr", options_.lr);
    entry.insert("weight_decay", group.weight_decay);
    for (const auto& [name, value] : GroupHyperParameters(group)) entry.insert(name, value);
    c10::List<int64_t> indices;
    for (size_t i : group.indices) indices.push_back(static_cast<int64_t>(i));
    entry.insert("params", indices);
    groups.push_back(entry);
  }
  c10::impl::GenericDict result(c10::StringType::get(), c10::AnyType::get());
  result.insert("state", state);
  result.insert("param_groups", groups);
  return result;
}

absl::Status Optimizer::LoadStateDict(const c10::IValue& state_dict) {
  if (!state_dict.isGenericDict()) {
    return absl::InvalidArgumentError("optimizer state is not a dict");
  }
  const c10::impl::GenericDict dict = state_dict.toGenericDict();
  if (!dict.contains("state") || !dict.contains("param_groups") ||
      !dict.at("state").isGenericDict() || !dict.at("param_groups").isList()) {
    return absl::InvalidArgumentError("optimizer state lacks \"state\" or \"param_groups\"");
  }
  const c10::impl::GenericList groups = dict.at("param_groups").toList();
  if (groups.size() != groups_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("optimizer state has ", groups.size(),
                                                   " param groups, expected ", groups_.size()));
  }
  std::vector<double> weight_decays(groups_.size());
  for (size_t g = 0; g < groups_.size(); ++g) {
    if (!groups.get(g).isGenericDict()) {
      return absl::InvalidArgumentError(
          absl::StrCat("optimizer param group ", g, " is not a dict"));
    }
    const c10::impl::GenericDict group = groups.get(g).toGenericDict();
    if (!group.contains("params") || !group.at("params").isList()) {
      return absl::InvalidArgumentError(
          absl::StrCat("optimizer param group ", g, " has no params"));
    }
    const size_t count = group.at("params").toList().size();
    if (count != groups_[g].indices.size()) {
      return absl::InvalidArgumentError(absl::StrCat("optimizer param group ", g, " covers ", count,
                                                     " parameters, the model has ",
                                                     groups_[g].indices.size()));
    }
    weight_decays[g] = group.contains("weight_decay") && group.at("weight_decay").isDouble()
                           ? group.at("weight_decay").toDouble()
                           : groups_[g].weight_decay;
  }
  std::vector<State> states(params_.size());
  for (const auto& item : dict.at("state").toGenericDict()) {
    if (!item.key().isInt() || !item.value().isGenericDict()) {
      return absl::InvalidArgumentError("optimizer state entries must be {index: dict}");
    }
    const int64_t index = item.key().toInt();
    if (index < 0 || index >= static_cast<int64_t>(params_.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("optimizer state index ", index, " out of range"));
    }
    for (const auto& entry : item.value().toGenericDict()) {
      if (!entry.value().isTensor()) {
        return absl::InvalidArgumentError(
            absl::StrCat("optimizer state of parameter ", index, " holds a non-tensor"));
      }
      const at::Tensor tensor = entry.value().toTensor();
      const std::string name = entry.key().toStringRef();
      if (name != "step" && !tensor.sizes().equals(params_[index].sizes())) {
        return absl::InvalidArgumentError(absl::StrCat("optimizer state ", name, " of parameter ",
                                                       index, " has the wrong shape"));
      }
      // Buffers go where their parameter lives (a GPU when resuming a GPU run from a
      // host-side checkpoint); AdamW's step count stays on the host, as PyTorch keeps it.
      states[index][name] =
          name == "step" ? tensor.clone() : tensor.clone().to(params_[index].device());
    }
  }
  const c10::impl::GenericDict first = groups.get(0).toGenericDict();
  auto read = [&first](const char* name, double* value) {
    if (first.contains(name) && first.at(name).isDouble()) *value = first.at(name).toDouble();
  };
  read("lr", &options_.lr);
  read("momentum", &options_.momentum);
  read("trust_coefficient", &options_.trust_coefficient);
  read("eps", &options_.eps);
  for (size_t g = 0; g < groups_.size(); ++g) groups_[g].weight_decay = weight_decays[g];
  states_ = std::move(states);
  return absl::OkStatus();
}

namespace {

// torch.optim.SGD's momentum buffer: the first step stores the update itself.
at::Tensor& MomentumBuffer(std::map<std::string, at::Tensor>& state, const at::Tensor& update,
                           double momentum) {
  at::Tensor& buffer = state["momentum_buffer"];
  if (!buffer.defined()) {
    buffer = update.clone();
  } else {
    buffer.mul_(momentum).add_(update);
  }
  return buffer;
}

class Lars : public Optimizer {
 public:
  using Optimizer::Optimizer;
  std::string name() const override { return "lars"; }

 protected:
  void Update(at::Tensor& param, const at::Tensor& grad, State& state,
              const Group& group) override {
    at::Tensor update = grad;
    if (param.dim() > 1 && !group.no_trust_ratio) {
      update = grad.add(param, group.weight_decay);
      // The trust ratio stays on the device (no host synchronization per parameter), in
      // double as before, then scales the update as a scalar would: torch.where as in
      // moco-v3's LARS, 1 when either norm is 0.
      const at::Tensor param_norm = param.norm().to(at::kDouble);
      const at::Tensor update_norm = update.norm().to(at::kDouble);
      const at::Tensor ratio = at::where(param_norm.gt(0).logical_and(update_norm.gt(0)),
                                         param_norm.mul(options_.trust_coefficient).div(update_norm),
                                         at::ones_like(param_norm));
      update = update.mul(ratio.to(update.scalar_type()));
    }
    at::Tensor& mu = state["mu"];
    if (!mu.defined()) mu = at::zeros_like(param);
    mu.mul_(options_.momentum).add_(update);
    param.add_(mu, -options_.lr);
  }
  // Update's arithmetic for the whole group: the trust-ratio parameters' decayed
  // gradients and norms as lists, their ratios as one vector, the momentum and the
  // parameter steps as multi-tensor ops.
  void UpdateGroup(Batch& batch, const Group& group) override {
    const size_t n = batch.params.size();
    std::vector<at::Tensor> updates = batch.grads;
    std::vector<size_t> trusted;
    for (size_t i = 0; i < n; ++i) {
      if (batch.params[i].dim() > 1 && !group.no_trust_ratio) trusted.push_back(i);
    }
    if (!trusted.empty()) {
      std::vector<at::Tensor> params, grads;
      for (size_t i : trusted) {
        params.push_back(batch.params[i]);
        grads.push_back(batch.grads[i]);
      }
      const std::vector<at::Tensor> decayed = at::_foreach_add(grads, params, group.weight_decay);
      const at::Tensor param_norms = at::stack(at::_foreach_norm(params)).to(at::kDouble);
      const at::Tensor update_norms = at::stack(at::_foreach_norm(decayed)).to(at::kDouble);
      const std::vector<at::Tensor> ratios =
          at::where(param_norms.gt(0).logical_and(update_norms.gt(0)),
                    param_norms.mul(options_.trust_coefficient).div(update_norms),
                    at::ones_like(param_norms))
              .unbind();
      for (size_t j = 0; j < trusted.size(); ++j) {
        updates[trusted[j]] = decayed[j].mul(ratios[j].to(decayed[j].scalar_type()));
      }
    }
    std::vector<at::Tensor> mus(n);
    for (size_t i = 0; i < n; ++i) {
      at::Tensor& mu = (*batch.states[i])["mu"];
      if (!mu.defined()) mu = at::zeros_like(batch.params[i]);
      mus[i] = mu;
    }
    at::_foreach_mul_(mus, options_.momentum);
    at::_foreach_add_(mus, updates);
    at::_foreach_add_(batch.params, mus, -options_.lr);
  }
  std::vector<std::pair<std::string, c10::IValue>> GroupHyperParameters(
      const Group&) const override {
    return {{"momentum", options_.momentum}, {"trust_coefficient", options_.trust_coefficient}};
  }
};

class Larc : public Optimizer {
 public:
  using Optimizer::Optimizer;
  std::string name() const override { return "larc"; }

 protected:
  void Update(at::Tensor& param, const at::Tensor& grad, State& state,
              const Group& group) override {
    at::Tensor update = grad;
    if (!group.no_trust_ratio && param.is_cuda()) {
      // On a GPU the same rule stays on the device (a host read per parameter would
      // stall every step); on the CPU the scalar form below keeps apex's arithmetic.
      const at::Tensor param_norm = param.norm().to(at::kDouble);
      const at::Tensor grad_norm = grad.norm().to(at::kDouble);
      at::Tensor adaptive = param_norm.mul(options_.trust_coefficient)
                                .div(grad_norm.add(param_norm.mul(group.weight_decay))
                                         .add(options_.eps));
      if (options_.clip) adaptive = adaptive.div(options_.lr).clamp_max(1.0);
      const at::Tensor use = param_norm.ne(0).logical_and(grad_norm.ne(0));
      update = at::where(use, grad.add(param, group.weight_decay).mul(adaptive.to(grad.scalar_type())),
                         grad);
    } else if (!group.no_trust_ratio) {
      const double param_norm = param.norm().item<double>();
      const double grad_norm = grad.norm().item<double>();
      if (param_norm != 0 && grad_norm != 0) {
        double adaptive = options_.trust_coefficient * param_norm /
                          (grad_norm + param_norm * group.weight_decay + options_.eps);
        if (options_.clip) adaptive = std::min(adaptive / options_.lr, 1.0);
        update = grad.add(param, group.weight_decay).mul(adaptive);
      }
    } else if (group.weight_decay != 0) {
      update = grad.add(param, group.weight_decay);
    }
    param.add_(MomentumBuffer(state, update, options_.momentum), -options_.lr);
  }
  std::vector<std::pair<std::string, c10::IValue>> GroupHyperParameters(
      const Group&) const override {
    return {{"momentum", options_.momentum},
            {"dampening", 0.0},
            {"nesterov", false},
            {"trust_coefficient", options_.trust_coefficient},
            {"clip", options_.clip},
            {"eps", options_.eps}};
  }
};

class M2TeacherLars : public Optimizer {
 public:
  using Optimizer::Optimizer;
  std::string name() const override { return "m2t_lars"; }

 protected:
  void Update(at::Tensor& param, const at::Tensor& grad, State& state,
              const Group& group) override {
    at::Tensor& buffer = state["momentum_buffer"];
    if (!buffer.defined()) buffer = at::zeros_like(param);
    if (!group.no_trust_ratio && param.is_cuda()) {
      // On a GPU the local lr stays on the device; addcmul_ with it computes what the
      // fused add_(x, alpha) below computes, without a host read per parameter.
      const at::Tensor weight_norm = param.norm().to(at::kDouble);
      const at::Tensor grad_norm = grad.norm().to(at::kDouble);
      const at::Tensor scaled =
          weight_norm.mul(options_.lr * options_.trust_coefficient)
              .div(grad_norm.add(weight_norm.mul(group.weight_decay)));
      const at::Tensor local_lr = at::where(weight_norm.mul(grad_norm).gt(1e-8), scaled,
                                            at::full({}, options_.lr, scaled.options()));
      buffer.mul_(options_.momentum)
          .addcmul_(grad.add(param, group.weight_decay), local_lr.to(param.scalar_type()));
      param.sub_(buffer);
      return;
    }
    double local_lr = options_.lr;
    if (!group.no_trust_ratio) {
      const double weight_norm = param.norm().item<double>();
      const double grad_norm = grad.norm().item<double>();
      if (weight_norm * grad_norm > 1e-8) {
        local_lr = options_.lr * options_.trust_coefficient * weight_norm /
                   (grad_norm + group.weight_decay * weight_norm);
      }
    }
    buffer.mul_(options_.momentum).add_(grad.add(param, group.weight_decay), local_lr);
    param.sub_(buffer);
  }
  std::vector<std::pair<std::string, c10::IValue>> GroupHyperParameters(
      const Group& group) const override {
    return {{"momentum", options_.momentum},
            {"dampening", 0.0},
            {"eta", options_.trust_coefficient},
            {"lars_exclude", group.no_trust_ratio}};
  }
};

class Sgd : public Optimizer {
 public:
  using Optimizer::Optimizer;
  std::string name() const override { return "sgd"; }

 protected:
  void Update(at::Tensor& param, const at::Tensor& grad, State& state,
              const Group& group) override {
    at::Tensor update = group.weight_decay != 0 ? grad.add(param, group.weight_decay) : grad;
    if (options_.momentum != 0) update = MomentumBuffer(state, update, options_.momentum);
    param.add_(update, -options_.lr);
  }
  // Update's arithmetic as multi-tensor ops (a first step's buffers are copies, as in
  // MomentumBuffer).
  void UpdateGroup(Batch& batch, const Group& group) override {
    std::vector<at::Tensor> updates = group.weight_decay != 0
                                          ? at::_foreach_add(batch.grads, batch.params,
                                                             group.weight_decay)
                                          : batch.grads;
    if (options_.momentum != 0) {
      std::vector<at::Tensor> buffers, buffered_updates;
      for (size_t i = 0; i < updates.size(); ++i) {
        at::Tensor& buffer = (*batch.states[i])["momentum_buffer"];
        if (!buffer.defined()) {
          buffer = updates[i].clone();
        } else {
          buffers.push_back(buffer);
          buffered_updates.push_back(updates[i]);
        }
        updates[i] = buffer;
      }
      if (!buffers.empty()) {
        at::_foreach_mul_(buffers, options_.momentum);
        at::_foreach_add_(buffers, buffered_updates);
      }
    }
    at::_foreach_add_(batch.params, updates, -options_.lr);
  }
  std::vector<std::pair<std::string, c10::IValue>> GroupHyperParameters(
      const Group&) const override {
    return {{"momentum", options_.momentum}, {"dampening", 0.0}, {"nesterov", false}};
  }
};

class AdamW : public Optimizer {
 public:
  using Optimizer::Optimizer;
  std::string name() const override { return "adamw"; }

 protected:
  void Update(at::Tensor& param, const at::Tensor& grad, State& state,
              const Group& group) override {
    at::Tensor& step = state["step"];
    at::Tensor& exp_avg = state["exp_avg"];
    at::Tensor& exp_avg_sq = state["exp_avg_sq"];
    if (!step.defined()) {
      step = at::zeros({}, at::kFloat);
      exp_avg = at::zeros_like(param);
      exp_avg_sq = at::zeros_like(param);
    }
    step.add_(1);
    const double t = step.item<double>();
    param.mul_(1 - options_.lr * group.weight_decay);
    exp_avg.mul_(options_.beta1).add_(grad, 1 - options_.beta1);
    exp_avg_sq.mul_(options_.beta2).addcmul_(grad, grad, 1 - options_.beta2);
    const double bias_correction1 = 1 - std::pow(options_.beta1, t);
    const double bias_correction2 = 1 - std::pow(options_.beta2, t);
    const at::Tensor denom = exp_avg_sq.sqrt().div_(std::sqrt(bias_correction2)).add_(options_.eps);
    param.addcdiv_(exp_avg, denom, -options_.lr / bias_correction1);
  }
  // Update's arithmetic as multi-tensor ops when every parameter of the group is at the
  // same step (the usual case; the step counts live on the host, so reading them does
  // not wait for a GPU); per parameter otherwise.
  void UpdateGroup(Batch& batch, const Group& group) override {
    const size_t n = batch.params.size();
    double t = -1;
    for (size_t i = 0; i < n; ++i) {
      const State& state = *batch.states[i];
      const auto step = state.find("step");
      const double t_i = step == state.end() || !step->second.defined()
                             ? 1.0
                             : step->second.item<double>() + 1.0;
      if (i == 0) t = t_i;
      if (t_i != t) {
        Optimizer::UpdateGroup(batch, group);
        return;
      }
    }
    std::vector<at::Tensor> exp_avgs(n), exp_avg_sqs(n);
    for (size_t i = 0; i < n; ++i) {
      State& state = *batch.states[i];
      at::Tensor& step = state["step"];
      if (!step.defined()) {
        step = at::zeros({}, at::kFloat);
        state["exp_avg"] = at::zeros_like(batch.params[i]);
        state["exp_avg_sq"] = at::zeros_like(batch.params[i]);
      }
      step.add_(1);
      exp_avgs[i] = state["exp_avg"];
      exp_avg_sqs[i] = state["exp_avg_sq"];
    }
    at::_foreach_mul_(batch.params, 1 - options_.lr * group.weight_decay);
    at::_foreach_mul_(exp_avgs, options_.beta1);
    at::_foreach_add_(exp_avgs, batch.grads, 1 - options_.beta1);
    at::_foreach_mul_(exp_avg_sqs, options_.beta2);
    at::_foreach_addcmul_(exp_avg_sqs, batch.grads, batch.grads, 1 - options_.beta2);
    const double bias_correction1 = 1 - std::pow(options_.beta1, t);
    const double bias_correction2 = 1 - std::pow(options_.beta2, t);
    std::vector<at::Tensor> denoms = at::_foreach_sqrt(exp_avg_sqs);
    at::_foreach_div_(denoms, std::sqrt(bias_correction2));
    at::_foreach_add_(denoms, options_.eps);
    at::_foreach_addcdiv_(batch.params, exp_avgs, denoms, -options_.lr / bias_correction1);
  }
  std::vector<std::pair<std::string, c10::IValue>> GroupHyperParameters(
      const Group&) const override {
    return {{"beta1", options_.beta1}, {"beta2", options_.beta2}, {"eps", options_.eps}};
  }
};

}  // namespace

std::unique_ptr<Optimizer> MakeLars(std::vector<at::Tensor> params, OptimizerOptions options) {
  return std::make_unique<Lars>(std::move(params), options);
}
std::unique_ptr<Optimizer> MakeLars(std::vector<ParamGroup> groups, OptimizerOptions options) {
  return std::make_unique<Lars>(std::move(groups), options);
}
std::unique_ptr<Optimizer> MakeLarc(std::vector<ParamGroup> groups, OptimizerOptions options) {
  return std::make_unique<Larc>(std::move(groups), options);
}
std::unique_ptr<Optimizer> MakeM2TeacherLars(std::vector<ParamGroup> groups,
                                             OptimizerOptions options) {
  return std::make_unique<M2TeacherLars>(std::move(groups), options);
}
std::unique_ptr<Optimizer> MakeSgd(std::vector<at::Tensor> params, OptimizerOptions options) {
  return std::make_unique<Sgd>(std::move(params), options);
}
std::unique_ptr<Optimizer> MakeSgd(std::vector<ParamGroup> groups, OptimizerOptions options) {
  return std::make_unique<Sgd>(std::move(groups), options);
}
std::unique_ptr<Optimizer> MakeAdamW(std::vector<at::Tensor> params, OptimizerOptions options) {
  return std::make_unique<AdamW>(std::move(params), options);
}
std::unique_ptr<Optimizer> MakeAdamW(std::vector<ParamGroup> groups, OptimizerOptions options) {
  return std::make_unique<AdamW>(std::move(groups), options);
}

absl::StatusOr<std::unique_ptr<Optimizer>> MakeOptimizer(const std::string& name,
                                                         std::vector<ParamGroup> groups,
                                                         OptimizerOptions options) {
  if (name == "lars") return MakeLars(std::move(groups), options);
  if (name == "larc") return MakeLarc(std::move(groups), options);
  if (name == "m2t_lars") return MakeM2TeacherLars(std::move(groups), options);
  if (name == "sgd") return MakeSgd(std::move(groups), options);
  if (name == "adamw") return MakeAdamW(std::move(groups), options);
  return absl::InvalidArgumentError(
      absl::StrCat("optimizer must be lars, larc, m2t_lars, sgd or adamw, got \"", name, "\""));
}

}  // namespace ssl::optim
