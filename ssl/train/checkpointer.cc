#include "ssl/train/checkpointer.h"

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ssl/train/checkpoint.h"

namespace ssl::train {
namespace fs = std::filesystem;
namespace {

using Dict = c10::impl::GenericDict;

Dict NewDict() { return Dict(c10::StringType::get(), c10::AnyType::get()); }
Dict NewTensorDict() { return Dict(c10::StringType::get(), c10::TensorType::get()); }

// `dict[key]` as a string-keyed dict, or an error naming the key.
absl::StatusOr<Dict> SubDict(const Dict& dict, const std::string& key, const std::string& where) {
  if (!dict.contains(key) || !dict.at(key).isGenericDict()) {
    return absl::InvalidArgumentError(absl::StrCat(where, " has no \"", key, "\" dict"));
  }
  return dict.at(key).toGenericDict();
}

absl::StatusOr<int64_t> IntEntry(const Dict& dict, const std::string& key,
                                 const std::string& where) {
  if (!dict.contains(key) || !dict.at(key).isInt()) {
    return absl::InvalidArgumentError(absl::StrCat(where, " has no integer \"", key, "\""));
  }
  return dict.at(key).toInt();
}

// Copies tensor entries of `source` into `target` with `prefix` prepended.
absl::Status AddWithPrefix(const Dict& source, const std::string& prefix, Dict& target) {
  for (const auto& item : source) {
    if (!item.key().isString() || !item.value().isTensor()) {
      return absl::InvalidArgumentError(
          absl::StrCat("state dict entry under \"", prefix, "\" is not a named tensor"));
    }
    target.insert(prefix + item.key().toStringRef(), item.value());
  }
  return absl::OkStatus();
}

std::string StringEntry(const Dict& dict, const std::string& key) {
  return dict.contains(key) && dict.at(key).isString() ? dict.at(key).toStringRef() : "";
}

Dict ExtraOrEmpty(const Dict& dict, const std::string& key) {
  return dict.contains(key) && dict.at(key).isGenericDict() ? dict.at(key).toGenericDict()
                                                            : NewDict();
}

// The snapshot's module state under DDP's "module." prefix, as MoCo v3 and Momentum^2
// Teacher save it.
Dict WithModulePrefix(const Dict& model) {
  Dict state = NewTensorDict();
  for (const auto& item : model) state.insert("module." + item.key().toStringRef(), item.value());
  return state;
}

// What resuming needs beyond an original's layout, kept beside it under ssl_* keys.
void AddResumeEntries(const TrainingSnapshot& s, Dict& file) {
  file.insert("ssl_config", s.config_json);
  file.insert("ssl_global_step", s.global_step);
  file.insert("ssl_extra", s.extra);
}

// The ssl_* entries back; an original's file has none (global step -1: unknown).
// `method` names the files the original wrote without this framework's ssl_config.
void ReadResumeEntries(const Dict& file, TrainingSnapshot& s, const std::string& method) {
  s.config_json = StringEntry(file, "ssl_config");
  if (s.config_json.empty()) s.config_json = nlohmann::json({{"method", method}}).dump();
  s.extra = ExtraOrEmpty(file, "ssl_extra");
  s.global_step = file.contains("ssl_global_step") && file.at("ssl_global_step").isInt()
                      ? file.at("ssl_global_step").toInt()
                      : -1;
}

class MocoV3FileLayout : public CheckpointLayout {
 public:
  std::string name() const override { return "mocov3"; }
  std::string FileName(int64_t epochs_done, bool) const override {
    return absl::StrFormat("checkpoint_%04d.pth.tar", epochs_done - 1);
  }
  std::optional<int64_t> EpochsOfFile(const std::string& file_name) const override {
    static const std::regex kPattern(R"(checkpoint_(\d+)\.pth\.tar)");
    std::smatch match;
    if (!std::regex_match(file_name, match, kPattern)) return std::nullopt;
    return std::stoll(match[1]) + 1;
  }
  c10::IValue Pack(const TrainingSnapshot& s) const override {
    Dict file = NewDict();
    file.insert("epoch", s.epochs_done);
    file.insert("arch", s.arch);
    file.insert("state_dict", WithModulePrefix(s.model));
    file.insert("optimizer", s.optimizer);
    file.insert("scaler", s.scaler);
    AddResumeEntries(s, file);
    return file;
  }
  absl::StatusOr<TrainingSnapshot> Unpack(const c10::IValue& file) const override {
    if (!file.isGenericDict()) return absl::InvalidArgumentError("the file is not a dict");
    const Dict dict = file.toGenericDict();
    TrainingSnapshot s;
    absl::StatusOr<int64_t> epoch = IntEntry(dict, "epoch", "the checkpoint");
    if (!epoch.ok()) return epoch.status();
    s.epochs_done = *epoch;
    absl::StatusOr<Dict> state = SubDict(dict, "state_dict", "the checkpoint");
    if (!state.ok()) return state.status();
    for (const auto& item : *state) {
      const std::string key = item.key().toStringRef();
      if (key.rfind("module.", 0) != 0 || !item.value().isTensor()) {
        return absl::InvalidArgumentError(
            absl::StrCat("state_dict entry \"", key, "\" is not a module.* tensor"));
      }
      s.model.insert(key.substr(7), item.value());
    }
    s.arch = StringEntry(dict, "arch");
    s.optimizer = dict.contains("optimizer") ? dict.at("optimizer") : c10::IValue();
    s.scaler = ExtraOrEmpty(dict, "scaler");
    ReadResumeEntries(dict, s, "mocov3");
    return s;
  }
  bool Recognizes(const c10::IValue& file) const override {
    return file.isGenericDict() && file.toGenericDict().contains("state_dict") &&
           file.toGenericDict().contains("epoch");
  }
};

class VisslFileLayout : public CheckpointLayout {
 public:
  std::string name() const override { return "vissl"; }
  std::string FileName(int64_t epochs_done, bool final) const override {
    return absl::StrCat(final ? "model_final_checkpoint_phase" : "model_phase", epochs_done - 1,
                        ".torch");
  }
  std::optional<int64_t> EpochsOfFile(const std::string& file_name) const override {
    static const std::regex kPattern(R"(model_(?:final_checkpoint_)?phase(\d+)\.torch)");
    std::smatch match;
    if (!std::regex_match(file_name, match, kPattern)) return std::nullopt;
    return std::stoll(match[1]) + 1;
  }
  c10::IValue Pack(const TrainingSnapshot& s) const override {
    // Module paths "trunk.*" and "heads.*" become VISSL's model.trunk / model.heads.
    Dict model = NewDict();
    for (const auto& item : s.model) {
      const std::string key = item.key().toStringRef();
      // Top-level parameters (none in VISSL's models) go under "".
      const size_t dot = key.find('.');
      const std::string part = dot == std::string::npos ? "" : key.substr(0, dot);
      if (!model.contains(part)) model.insert(part, NewTensorDict());
      model.at(part).toGenericDict().insert(dot == std::string::npos ? key : key.substr(dot + 1),
                                            item.value());
    }
    Dict meta = NewDict();
    meta.insert("trunk", NewDict());
    meta.insert("heads", c10::impl::GenericList(c10::AnyType::get()));
    Dict base_model = NewDict();
    base_model.insert("model", model);
    base_model.insert("meta", meta);
    Dict optimizer = NewDict();
    optimizer.insert("optim", s.optimizer);
    const int64_t phase = s.epochs_done - 1;
    Dict classy = NewDict();
    classy.insert("train", true);
    classy.insert("base_model", base_model);
    classy.insert("meters", c10::impl::GenericList(c10::AnyType::get()));
    classy.insert("optimizer", optimizer);
    classy.insert("phase_idx", phase);
    classy.insert("train_phase_idx", phase);
    classy.insert("num_updates", s.global_step);
    classy.insert("losses", c10::impl::GenericList(c10::AnyType::get()));
    classy.insert("hooks", NewDict());
    classy.insert("loss", s.extra);
    classy.insert("amp", s.scaler);
    Dict file = NewDict();
    file.insert("phase_idx", phase);
    file.insert("iteration", s.global_step);
    file.insert("loss", s.extra);
    file.insert("iteration_num", s.global_step);
    file.insert("train_phase_idx", phase);
    file.insert("classy_state_dict", classy);
    file.insert("ssl_config", s.config_json);
    file.insert("ssl_arch", s.arch);
    return file;
  }
  absl::StatusOr<TrainingSnapshot> Unpack(const c10::IValue& file) const override {
    if (!file.isGenericDict()) return absl::InvalidArgumentError("the file is not a dict");
    const Dict dict = file.toGenericDict();
    absl::StatusOr<Dict> classy = SubDict(dict, "classy_state_dict", "the checkpoint");
    if (!classy.ok()) return classy.status();
    absl::StatusOr<Dict> base_model = SubDict(*classy, "base_model", "classy_state_dict");
    if (!base_model.ok()) return base_model.status();
    absl::StatusOr<Dict> model = SubDict(*base_model, "model", "classy_state_dict.base_model");
    if (!model.ok()) return model.status();
    TrainingSnapshot s;
    for (const auto& part : *model) {
      if (!part.value().isGenericDict()) {
        return absl::InvalidArgumentError(absl::StrCat("classy_state_dict.base_model.model.",
                                                       part.key().toStringRef(),
                                                       " is not a state dict"));
      }
      const std::string part_name = part.key().toStringRef();
      if (absl::Status st = AddWithPrefix(part.value().toGenericDict(),
                                          part_name.empty() ? "" : part_name + ".", s.model);
          !st.ok()) {
        return st;
      }
    }
    absl::StatusOr<int64_t> phase = IntEntry(dict, "train_phase_idx", "the checkpoint");
    if (!phase.ok()) return phase.status();
    s.epochs_done = *phase + 1;
    absl::StatusOr<int64_t> iteration = IntEntry(dict, "iteration", "the checkpoint");
    if (!iteration.ok()) return iteration.status();
    s.global_step = *iteration;
    if (classy->contains("optimizer") && classy->at("optimizer").isGenericDict() &&
        classy->at("optimizer").toGenericDict().contains("optim")) {
      s.optimizer = classy->at("optimizer").toGenericDict().at("optim");
    }
    s.extra = ExtraOrEmpty(dict, "loss");
    s.scaler = ExtraOrEmpty(*classy, "amp");
    s.config_json = StringEntry(dict, "ssl_config");
    if (s.config_json.empty()) s.config_json = nlohmann::json({{"method", "swav"}}).dump();
    s.arch = StringEntry(dict, "ssl_arch");
    return s;
  }
  bool Recognizes(const c10::IValue& file) const override {
    return file.isGenericDict() && file.toGenericDict().contains("classy_state_dict");
  }
  absl::Status AfterSave(const std::string& dir, const std::string& path) const override {
    // checkpoint.torch -> the newest file, replaced atomically (VISSL's resume link).
    const fs::path link = fs::path(dir) / "checkpoint.torch";
    const fs::path temporary = fs::path(dir) / ".checkpoint.torch.new";
    std::error_code error;
    fs::remove(temporary, error);
    fs::create_symlink(fs::path(path).filename(), temporary, error);
    if (!error) fs::rename(temporary, link, error);
    if (error) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot point ", link.string(), " at ", path, ": ", error.message()));
    }
    return absl::OkStatus();
  }
};

// Momentum^2 Teacher's tools/train.py: one last_epoch_ckpt.pth.tar, overwritten each
// epoch, {start_epoch, model: module.*, optimizer}.
class M2TeacherFileLayout : public CheckpointLayout {
 public:
  std::string name() const override { return "m2teacher"; }
  std::string FileName(int64_t, bool) const override { return "last_epoch_ckpt.pth.tar"; }
  std::optional<int64_t> EpochsOfFile(const std::string& file_name) const override {
    if (file_name != "last_epoch_ckpt.pth.tar") return std::nullopt;
    return 0;  // the only file; its epoch is inside
  }
  c10::IValue Pack(const TrainingSnapshot& s) const override {
    Dict file = NewDict();
    file.insert("start_epoch", s.epochs_done);
    file.insert("model", WithModulePrefix(s.model));
    file.insert("optimizer", s.optimizer);
    file.insert("ssl_arch", s.arch);
    file.insert("scaler", s.scaler);
    AddResumeEntries(s, file);
    return file;
  }
  absl::StatusOr<TrainingSnapshot> Unpack(const c10::IValue& file) const override {
    if (!file.isGenericDict()) return absl::InvalidArgumentError("the file is not a dict");
    const Dict dict = file.toGenericDict();
    TrainingSnapshot s;
    absl::StatusOr<int64_t> epoch = IntEntry(dict, "start_epoch", "the checkpoint");
    if (!epoch.ok()) return epoch.status();
    s.epochs_done = *epoch;
    absl::StatusOr<Dict> state = SubDict(dict, "model", "the checkpoint");
    if (!state.ok()) return state.status();
    for (const auto& item : *state) {
      const std::string key = item.key().toStringRef();
      if (!item.value().isTensor()) {
        return absl::InvalidArgumentError(
            absl::StrCat("model entry \"", key, "\" is not a tensor"));
      }
      // Single-GPU runs of the original save without DDP's "module." prefix.
      s.model.insert(key.rfind("module.", 0) == 0 ? key.substr(7) : key, item.value());
    }
    s.optimizer = dict.contains("optimizer") ? dict.at("optimizer") : c10::IValue();
    s.arch = StringEntry(dict, "ssl_arch");
    s.scaler = ExtraOrEmpty(dict, "scaler");
    ReadResumeEntries(dict, s, "m2teacher");
    return s;
  }
  bool Recognizes(const c10::IValue& file) const override {
    return file.isGenericDict() && file.toGenericDict().contains("start_epoch") &&
           file.toGenericDict().contains("model");
  }
};

}  // namespace

std::shared_ptr<CheckpointLayout> M2TeacherLayout() {
  return std::make_shared<M2TeacherFileLayout>();
}

std::shared_ptr<CheckpointLayout> MocoV3Layout() { return std::make_shared<MocoV3FileLayout>(); }
std::shared_ptr<CheckpointLayout> VisslLayout() { return std::make_shared<VisslFileLayout>(); }

absl::StatusOr<TrainingSnapshot> ReadSnapshot(const std::string& path) {
  absl::StatusOr<c10::IValue> loaded = LoadIValue(path);
  if (!loaded.ok()) return loaded.status();
  for (const std::shared_ptr<CheckpointLayout>& layout :
       {MocoV3Layout(), VisslLayout(), M2TeacherLayout()}) {
    if (!layout->Recognizes(*loaded)) continue;
    absl::StatusOr<TrainingSnapshot> snapshot = layout->Unpack(*loaded);
    if (!snapshot.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(path, " is not a usable ", layout->name(),
                                                     " checkpoint: ", snapshot.status().message()));
    }
    return snapshot;
  }
  // A bare state dict (torchvision's, torch.save(model.state_dict())) or DeiT's
  // {'model': state dict}: weights without training state, for evaluation and init.
  if (loaded->isGenericDict()) {
    Dict dict = loaded->toGenericDict();
    for (const char* wrapper : {"model", "state_dict"}) {
      if (dict.contains(wrapper) && dict.at(wrapper).isGenericDict()) {
        dict = dict.at(wrapper).toGenericDict();
        break;
      }
    }
    TrainingSnapshot s;
    for (const auto& item : dict) {
      if (!item.key().isString() || !item.value().isTensor()) {
        s.model.clear();
        break;
      }
      const std::string& key = item.key().toStringRef();
      s.model.insert(key.rfind("module.", 0) == 0 ? key.substr(7) : key, item.value());
    }
    if (!s.model.empty()) {
      s.global_step = -1;
      return s;
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      path,
      " is not a checkpoint: neither a pretraining layout (MoCo v3's state_dict/epoch, "
      "VISSL's classy_state_dict, Momentum^2 Teacher's start_epoch/model) nor a state dict "
      "of named tensors"));
}

std::string SnapshotMethod(const TrainingSnapshot& snapshot) {
  const nlohmann::json config = nlohmann::json::parse(snapshot.config_json, nullptr, false);
  if (config.is_object() && config.contains("method") && config["method"].is_string()) {
    return config["method"].get<std::string>();
  }
  return "mocov3";
}

Checkpointer::Checkpointer(std::string dir, std::shared_ptr<CheckpointLayout> layout)
    : dir_(std::move(dir)), layout_(std::move(layout)) {}

absl::StatusOr<std::string> Checkpointer::Save(const TrainingSnapshot& snapshot, bool final) const {
  const std::string path =
      (fs::path(dir_) / layout_->FileName(snapshot.epochs_done, final)).string();
  if (absl::Status s = SaveIValue(layout_->Pack(snapshot), path); !s.ok()) return s;
  if (absl::Status s = layout_->AfterSave(dir_, path); !s.ok()) return s;
  return path;
}

absl::StatusOr<std::string> Checkpointer::Latest() const {
  std::error_code error;
  int64_t best = -1;
  std::string best_path;
  for (const auto& entry : fs::directory_iterator(dir_, error)) {
    const std::optional<int64_t> epochs = layout_->EpochsOfFile(entry.path().filename().string());
    if (epochs && *epochs > best) {
      best = *epochs;
      best_path = entry.path().string();
    }
  }
  if (best < 0) {
    return absl::NotFoundError(absl::StrCat("no ", layout_->name(), " checkpoint in ", dir_));
  }
  return best_path;
}

absl::StatusOr<std::optional<TrainingSnapshot>> Checkpointer::Load(const std::string& resume,
                                                                   const std::string& method,
                                                                   std::string* path) const {
  path->clear();
  if (resume.empty()) return std::optional<TrainingSnapshot>();
  if (resume == "latest") {
    absl::StatusOr<std::string> latest = Latest();
    if (!latest.ok()) return std::optional<TrainingSnapshot>();
    *path = *latest;
  } else {
    *path = resume;
  }
  absl::StatusOr<TrainingSnapshot> snapshot = ReadSnapshot(*path);
  if (!snapshot.ok()) return snapshot.status();
  const std::string written_by = SnapshotMethod(*snapshot);
  if (written_by != method) {
    return absl::InvalidArgumentError(absl::StrCat("cannot resume ", method, " from ", *path,
                                                   ": it is a ", written_by, " checkpoint"));
  }
  return std::optional<TrainingSnapshot>(*std::move(snapshot));
}

}  // namespace ssl::train
