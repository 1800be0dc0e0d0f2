#include "ssl/optim/optimizer.h"

#include <ATen/core/Dict.h>
#include <ATen/core/List.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace ssl::optim {

Optimizer::Optimizer(std::vector<at::Tensor> params, OptimizerOptions options)
    : params_(std::move(params)), states_(params_.size()), options_(options) {}

void Optimizer::Step() {
  c10::AutoGradMode no_grad(false);
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& param = params_[i];
    const at::Tensor& grad = param.grad();
    if (!grad.defined()) continue;
    Update(param, grad, states_[i]);
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
  c10::impl::GenericDict group(c10::StringType::get(), c10::AnyType::get());
  for (const auto& [name, value] : GroupHyperParameters()) group.insert(name, value);
  c10::List<int64_t> indices;
  for (size_t i = 0; i < params_.size(); ++i) indices.push_back(static_cast<int64_t>(i));
  group.insert("params", indices);
  c10::impl::GenericList groups(c10::AnyType::get());
  groups.push_back(group);
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
  if (!dict.contains("state") || !dict.contains("param_groups")) {
    return absl::InvalidArgumentError("optimizer state lacks \"state\" or \"param_groups\"");
  }
  const c10::impl::GenericList groups = dict.at("param_groups").toList();
  if (groups.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("optimizer state has ", groups.size(), " param groups, expected 1"));
  }
  const c10::impl::GenericDict group = groups.get(0).toGenericDict();
  const int64_t num_params = static_cast<int64_t>(group.at("params").toList().size());
  if (num_params != static_cast<int64_t>(params_.size())) {
    return absl::InvalidArgumentError(absl::StrCat("optimizer state covers ", num_params,
                                                   " parameters, the model has ", params_.size()));
  }
  std::vector<State> states(params_.size());
  for (const auto& item : dict.at("state").toGenericDict()) {
    const int64_t index = item.key().toInt();
    if (index < 0 || index >= num_params) {
      return absl::InvalidArgumentError(
          absl::StrCat("optimizer state index ", index, " out of range"));
    }
    for (const auto& entry : item.value().toGenericDict()) {
      const at::Tensor tensor = entry.value().toTensor();
      const std::string name = entry.key().toStringRef();
      if (name != "step" && !tensor.sizes().equals(params_[index].sizes())) {
        return absl::InvalidArgumentError(absl::StrCat("optimizer state ", name, " of parameter ",
                                                       index, " has the wrong shape"));
      }
      states[index][name] = tensor.clone();
    }
  }
  for (const auto& [name, unused] : GroupHyperParameters()) {
    if (!group.contains(name)) continue;
    const double value = group.at(name).toDouble();
    if (name == "lr")
      options_.lr = value;
    else if (name == "weight_decay")
      options_.weight_decay = value;
    else if (name == "momentum")
      options_.momentum = value;
    else if (name == "trust_coefficient")
      options_.trust_coefficient = value;
    else if (name == "eps")
      options_.eps = value;
  }
  states_ = std::move(states);
  return absl::OkStatus();
}

namespace {

class Lars : public Optimizer {
 public:
  using Optimizer::Optimizer;
  std::string name() const override { return "lars"; }

 protected:
  void Update(at::Tensor& param, const at::Tensor& grad, State& state) override {
    at::Tensor update = grad;
    if (param.dim() > 1) {
      update = grad.add(param, options_.weight_decay);
      const double param_norm = param.norm().item<double>();
      const double update_norm = update.norm().item<double>();
      if (param_norm > 0 && update_norm > 0) {
        update = update.mul(options_.trust_coefficient * param_norm / update_norm);
      }
    }
    at::Tensor& mu = state["mu"];
    if (!mu.defined()) mu = at::zeros_like(param);
    mu.mul_(options_.momentum).add_(update);
    param.add_(mu, -options_.lr);
  }
  std::vector<std::pair<std::string, double>> GroupHyperParameters() const override {
    return {{"lr", options_.lr},
            {"weight_decay", options_.weight_decay},
            {"momentum", options_.momentum},
            {"trust_coefficient", options_.trust_coefficient}};
  }
};

class Sgd : public Optimizer {
 public:
  using Optimizer::Optimizer;
  std::string name() const override { return "sgd"; }

 protected:
  void Update(at::Tensor& param, const at::Tensor& grad, State& state) override {
    at::Tensor update = options_.weight_decay != 0 ? grad.add(param, options_.weight_decay) : grad;
    if (options_.momentum != 0) {
      at::Tensor& buffer = state["momentum_buffer"];
      if (!buffer.defined()) {
        buffer = update.clone();
      } else {
        buffer.mul_(options_.momentum).add_(update);
      }
      update = buffer;
    }
    param.add_(update, -options_.lr);
  }
  std::vector<std::pair<std::string, double>> GroupHyperParameters() const override {
    return {{"lr", options_.lr},
            {"momentum", options_.momentum},
            {"dampening", 0.0},
            {"weight_decay", options_.weight_decay}};
  }
};

class AdamW : public Optimizer {
 public:
  using Optimizer::Optimizer;
  std::string name() const override { return "adamw"; }

 protected:
  void Update(at::Tensor& param, const at::Tensor& grad, State& state) override {
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
    param.mul_(1 - options_.lr * options_.weight_decay);
    exp_avg.mul_(options_.beta1).add_(grad, 1 - options_.beta1);
    exp_avg_sq.mul_(options_.beta2).addcmul_(grad, grad, 1 - options_.beta2);
    const double bias_correction1 = 1 - std::pow(options_.beta1, t);
    const double bias_correction2 = 1 - std::pow(options_.beta2, t);
    const at::Tensor denom = exp_avg_sq.sqrt().div_(std::sqrt(bias_correction2)).add_(options_.eps);
    param.addcdiv_(exp_avg, denom, -options_.lr / bias_correction1);
  }
  std::vector<std::pair<std::string, double>> GroupHyperParameters() const override {
    return {{"lr", options_.lr},
            {"beta1", options_.beta1},
            {"beta2", options_.beta2},
            {"eps", options_.eps},
            {"weight_decay", options_.weight_decay}};
  }
};

}  // namespace

std::unique_ptr<Optimizer> MakeLars(std::vector<at::Tensor> params, OptimizerOptions options) {
  return std::make_unique<Lars>(std::move(params), options);
}
std::unique_ptr<Optimizer> MakeSgd(std::vector<at::Tensor> params, OptimizerOptions options) {
  return std::make_unique<Sgd>(std::move(params), options);
}
std::unique_ptr<Optimizer> MakeAdamW(std::vector<at::Tensor> params, OptimizerOptions options) {
  return std::make_unique<AdamW>(std::move(params), options);
}

}  // namespace ssl::optim
