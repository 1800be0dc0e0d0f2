// PyTorch-compatible state dicts of LibTorch modules.
#ifndef SSL_NN_STATE_DICT_H_
#define SSL_NN_STATE_DICT_H_

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <string>
#include <utility>
#include <vector>

namespace ssl::nn {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

/// Parameters and buffers in the order of PyTorch's `state_dict()`: module by module
/// (pre-order, registration order), each module's own parameters then its own buffers,
/// keys joined with "." and prefixed with `prefix`.
NamedTensors StateDict(const torch::nn::Module& module, const std::string& prefix = "");

/// Defined parameters in PyTorch's `parameters()` order (what optimizers index).
std::vector<at::Tensor> Parameters(const torch::nn::Module& module);

}  // namespace ssl::nn

#endif  // SSL_NN_STATE_DICT_H_
