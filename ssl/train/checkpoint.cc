#include "ssl/train/checkpoint.h"

#include <ATen/core/Dict.h>
#include <c10/core/GradMode.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/csrc/jit/serialization/pickler.h>

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ssl/core/file.h"
#include "ssl/train/torch_file.h"

namespace ssl::train {

namespace {

// Typed lists (List[int], List[float], ...) as plain lists: LibTorch pickles those as
// torch.jit._pickle.build_intlist(...) calls, which torch.load(weights_only=True) (the
// default from PyTorch 2.6) refuses.
c10::IValue WithPlainLists(const c10::IValue& value) {
  if (value.isList()) {
    c10::impl::GenericList plain(c10::AnyType::get());
    for (const c10::IValue& element : value.toListRef()) plain.push_back(WithPlainLists(element));
    return plain;
  }
  if (value.isGenericDict()) {
    const c10::impl::GenericDict dict = value.toGenericDict();
    c10::impl::GenericDict plain(dict.keyType(), c10::AnyType::get());
    for (const auto& item : dict) plain.insert(item.key(), WithPlainLists(item.value()));
    return plain;
  }
  if (value.isTuple()) {
    std::vector<c10::IValue> elements;
    for (const c10::IValue& element : value.toTupleRef().elements()) {
      elements.push_back(WithPlainLists(element));
    }
    return c10::ivalue::Tuple::create(std::move(elements));
  }
  return value;
}

// torch::jit::pickle_save's zip archive, but with the pickler's type tags off: tagged
// dicts and lists call torch.jit._pickle.restore_type_tag, which PyTorch >= 2.6's
// default torch.load (weights_only=True) refuses. Untagged, the pickle holds only what
// Python's own torch.save of the same dict would: dicts, lists, tuples, numbers,
// strings and torch._utils._rebuild_tensor_v2 tensors.
std::vector<char> PickleForPython(const c10::IValue& value) {
  std::vector<char> pickle;
  torch::jit::Pickler pickler(
      [&pickle](const char* bytes, size_t size) {
        pickle.insert(pickle.end(), bytes, bytes + size);
      },
      /*tensor_table=*/nullptr, /*type_renamer=*/nullptr, /*memoized_class_types=*/nullptr,
      /*get_tensor_id=*/nullptr, /*tag_aggregates=*/false);
  pickler.protocol();
  pickler.pushIValue(WithPlainLists(value));
  pickler.stop();
  std::vector<char> archive;
  caffe2::serialize::PyTorchStreamWriter writer([&archive](const void* bytes, size_t size) {
    const char* begin = static_cast<const char*>(bytes);
    archive.insert(archive.end(), begin, begin + size);
    return size;
  });
  // The layout torch.save writes: the tensors' bytes at data/<persistent id>, the
  // pickle at data.pkl.
  const std::vector<at::Tensor>& tensors = pickler.tensorData();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const torch::jit::WriteableTensorData bytes = torch::jit::getWriteableTensorData(tensors[i]);
    writer.writeRecord(absl::StrCat("data/", i), bytes.data(), bytes.sizeInBytes());
  }
  writer.writeRecord("data.pkl", pickle.data(), pickle.size());
  writer.writeEndOfFile();
  return archive;
}

}  // namespace

absl::Status SaveIValue(const c10::IValue& value, const std::string& path) {
  std::vector<char> bytes;
  try {
    bytes = PickleForPython(value);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("cannot serialize ", path, ": ", e.what()));
  }
  return ssl::WriteFileAtomically(path, std::string_view(bytes.data(), bytes.size()));
}

absl::StatusOr<c10::IValue> LoadIValue(const std::string& path) {
  absl::StatusOr<std::string> bytes = ssl::ReadFileBytes(path);
  if (!bytes.ok()) return bytes.status();
  // This framework's reader first: LibTorch's turns OrderedDicts and unknown objects
  // into None (or fails with a C++ backtrace) and has no legacy format. LibTorch's is
  // the fallback for TorchScript-typed values.
  absl::StatusOr<c10::IValue> parsed = ParseTorchSave(*bytes, path);
  if (parsed.ok()) return parsed;
  try {
    return torch::jit::pickle_load(std::vector<char>(bytes->begin(), bytes->end()));
  } catch (const std::exception&) {
    return parsed.status();
  }
}

c10::impl::GenericDict StateDictToIValue(const torch::nn::Module& module,
                                         const std::string& prefix) {
  c10::impl::GenericDict dict(c10::StringType::get(), c10::TensorType::get());
  for (const auto& [key, tensor] : nn::StateDict(module, prefix)) dict.insert(key, tensor.detach());
  return dict;
}

absl::Status LoadStateDictFromIValue(torch::nn::Module& module, const c10::impl::GenericDict& state,
                                     const std::string& prefix,
                                     const std::vector<std::string>& skip_prefixes,
                                     bool allow_unexpected) {
  auto skipped = [&skip_prefixes](const std::string& key) {
    for (const std::string& skip : skip_prefixes) {
      if (key.rfind(skip, 0) == 0) return true;
    }
    return false;
  };
  std::set<std::string> expected;
  std::vector<std::string> missing, bad_shape;
  c10::AutoGradMode no_grad(false);
  for (auto& [key, tensor] : nn::StateDict(module)) {
    if (skipped(key)) continue;
    expected.insert(key);
    const std::string full = prefix + key;
    if (!state.contains(full)) {
      missing.push_back(full);
      continue;
    }
    const at::Tensor source = state.at(full).toTensor();
    if (!source.sizes().equals(tensor.sizes())) {
      bad_shape.push_back(absl::StrCat(full, " (file ", c10::str(source.sizes()), ", model ",
                                       c10::str(tensor.sizes()), ")"));
      continue;
    }
    tensor.copy_(source);
  }
  std::vector<std::string> unexpected;
  if (!allow_unexpected) {
    for (const auto& item : state) {
      const std::string key = item.key().toStringRef();
      if (key.rfind(prefix, 0) != 0) continue;
      const std::string local = key.substr(prefix.size());
      if (!skipped(local) && !expected.count(local)) unexpected.push_back(key);
    }
  }
  if (missing.empty() && bad_shape.empty() && unexpected.empty()) return absl::OkStatus();
  auto first = [](const std::vector<std::string>& keys) {
    std::vector<std::string> head(keys.begin(), keys.begin() + std::min<size_t>(keys.size(), 5));
    return absl::StrCat(absl::StrJoin(head, ", "), keys.size() > 5 ? ", ..." : "");
  };
  std::string message = "state dict does not fit the model:";
  if (!missing.empty())
    absl::StrAppend(&message, " missing ", missing.size(), " keys (", first(missing), ")");
  if (!bad_shape.empty()) absl::StrAppend(&message, " wrong shape for ", first(bad_shape));
  if (!unexpected.empty()) {
    absl::StrAppend(&message, " unexpected ", unexpected.size(), " keys (", first(unexpected), ")");
  }
  return absl::InvalidArgumentError(message);
}

}  // namespace ssl::train
