// Checkpoint files in PyTorch's pickle format (Python's torch.load reads them), written
// atomically so that a crash never leaves a partial file under a checkpoint's name.
#ifndef SSL_TRAIN_CHECKPOINT_H_
#define SSL_TRAIN_CHECKPOINT_H_

#include <ATen/core/ivalue.h>
#include <torch/nn/module.h>

#include <string>

#include "absl/status/statusor.h"
#include "ssl/nn/state_dict.h"

namespace ssl::train {

/// torch::pickle_save's format without TorchScript type tags (so that PyTorch >= 2.6's
/// default torch.load, weights_only=True, reads it) to a temporary file, fsync, rename.
absl::Status SaveIValue(const c10::IValue& value, const std::string& path);
/// Reads a file written by SaveIValue (or by Python's torch.save of plain dicts).
absl::StatusOr<c10::IValue> LoadIValue(const std::string& path);

/// A dict {prefix + key: tensor} of the module's state, in state_dict() order.
c10::impl::GenericDict StateDictToIValue(const torch::nn::Module& module,
                                         const std::string& prefix = "");

/// Copies entries `prefix + key` of `state` into the module's parameters and buffers.
/// Every module key must be present with the same shape; entries of `state` under the
/// prefix that the module lacks are errors too unless `allow_unexpected`. Keys starting
/// with any of `skip_prefixes` (after the prefix) are left alone on both sides.
absl::Status LoadStateDictFromIValue(torch::nn::Module& module, const c10::impl::GenericDict& state,
                                     const std::string& prefix,
                                     const std::vector<std::string>& skip_prefixes = {},
                                     bool allow_unexpected = false);

}  // namespace ssl::train

#endif  // SSL_TRAIN_CHECKPOINT_H_
