#include "ssl/nn/state_dict.h"

namespace ssl::nn {

NamedTensors StateDict(const torch::nn::Module& module, const std::string& prefix) {
  NamedTensors result;
  // Undefined entries (BatchNorm's weight/bias without affine) are None in PyTorch,
  // which leaves them out of state_dict() too.
  for (const auto& item : module.named_parameters(/*recurse=*/false)) {
    if (item.value().defined()) result.emplace_back(prefix + item.key(), item.value());
  }
  for (const auto& item : module.named_buffers(/*recurse=*/false)) {
    if (item.value().defined()) result.emplace_back(prefix + item.key(), item.value());
  }
  for (const auto& child : module.named_children()) {
    NamedTensors nested = StateDict(*child.value(), prefix + child.key() + ".");
    result.insert(result.end(), std::make_move_iterator(nested.begin()),
                  std::make_move_iterator(nested.end()));
  }
  return result;
}

std::vector<at::Tensor> Parameters(const torch::nn::Module& module) {
  std::vector<at::Tensor> result;
  for (const at::Tensor& p : module.parameters()) {
    if (p.defined()) result.push_back(p);
  }
  return result;
}

}  // namespace ssl::nn
