// Files written by Python's torch.save, read without Python: the zip format (torch >= 1.6)
// and the legacy one, protocol-2 pickles of dicts (OrderedDict included, which LibTorch
// 1.13's unpickler turns into None), lists, tuples, numbers, strings and tensors, with
// tensors that share a storage sharing it here too. Objects the framework has no use for
// (argparse.Namespace, numpy scalars, ...) become a dict of their attributes or None, so
// a checkpoint that carries them still loads.
#ifndef SSL_TRAIN_TORCH_FILE_H_
#define SSL_TRAIN_TORCH_FILE_H_

#include <ATen/core/ivalue.h>

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace ssl::train {

/// The object `bytes` (a whole torch.save file) holds. Dicts become GenericDicts (keys
/// strings where all are strings, ints where all are ints, else their text), tuples
/// Tuples, lists GenericLists. `name` goes into errors, which are one sentence;
/// Unimplemented for TorchScript-typed containers, which torch::jit::pickle_load reads.
absl::StatusOr<c10::IValue> ParseTorchSave(std::string_view bytes, const std::string& name);

}  // namespace ssl::train

#endif  // SSL_TRAIN_TORCH_FILE_H_
