#include "ssl/nn/state_dict.h"

namespace ssl::nn {

NamedTensors StateDict(const torch::nn::Module& module, const std::string& prefix) {
  NamedTensors result;
  for (const auto& item : module.named_parameters(/*recurse=*/false)) {
    result.emplace_back(prefix + item.key(), item.value());
  }
  for (const auto& item : module.named_buffers(/*recurse=*/false)) {
    result.emplace_back(prefix + item.key(), item.value());
  }
  for (const auto& child : module.named_children()) {
    NamedTensors nested = StateDict(*child.value(), prefix + child.key() + ".");
    result.insert(result.end(), std::make_move_iterator(nested.begin()),
                  std::make_move_iterator(nested.end()));
  }
  return result;
}

}  // namespace ssl::nn
