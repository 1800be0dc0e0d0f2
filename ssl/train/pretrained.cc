#include "ssl/train/pretrained.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "ssl/core/status_macros.h"
#include "ssl/train/checkpoint.h"
#include "ssl/train/checkpointer.h"

namespace ssl::train {
namespace {

// The ResNet under `prefix` of a state dict, from its keys and shapes: torchvision's
// names (conv1, layer<i>.<j>.conv<k>, fc) as MoCo v3, VISSL's trunk, Momentum^2 Teacher
// and torchvision itself use them.
std::optional<std::pair<std::string, bool>> InferResnet(const c10::impl::GenericDict& model,
                                                        const std::string& prefix) {
  const auto tensor = [&](const std::string& key) -> std::optional<at::Tensor> {
    if (!model.contains(prefix + key) || !model.at(prefix + key).isTensor()) return std::nullopt;
    return model.at(prefix + key).toTensor();
  };
  const std::optional<at::Tensor> stem = tensor("conv1.weight");
  if (!stem || stem->dim() != 4 || !tensor("layer1.0.conv1.weight")) return std::nullopt;
  const bool bottleneck = tensor("layer1.0.conv3.weight").has_value();
  std::vector<int> blocks;
  for (int stage = 1; stage <= 4; ++stage) {
    int count = 0;
    while (tensor(absl::StrCat("layer", stage, ".", count, ".conv1.weight"))) ++count;
    blocks.push_back(count);
  }
  static const std::map<std::pair<bool, std::vector<int>>, int> kDepths = {
      {{false, {2, 2, 2, 2}}, 18},
      {{false, {3, 4, 6, 3}}, 34},
      {{true, {3, 4, 6, 3}}, 50},
      {{true, {3, 4, 23, 3}}, 101},
      {{true, {3, 8, 36, 3}}, 152}};
  auto depth = kDepths.find({bottleneck, blocks});
  if (depth == kDepths.end()) return std::nullopt;
  const int64_t stem_width = stem->size(0);
  std::string arch = absl::StrCat("resnet", depth->second);
  if (stem_width != 64) {
    std::string width = absl::StrFormat("%g", stem_width / 64.0);
    absl::StrAppend(&arch, "w", width);
  }
  return std::make_pair(arch, /*cifar_stem=*/stem->size(2) == 3);
}

// The ViT under `prefix`, from timm's names: the width names the size (moco-v3's
// vit_small has 12 heads, which the weights cannot show), the patch projection the
// patch size and the position table the image size.
struct InferredVit {
  std::string arch;
  int image_size = 224;
};

std::optional<InferredVit> InferVit(const c10::impl::GenericDict& model,
                                    const std::string& prefix) {
  const auto tensor = [&](const std::string& key) -> std::optional<at::Tensor> {
    if (!model.contains(prefix + key) || !model.at(prefix + key).isTensor()) return std::nullopt;
    return model.at(prefix + key).toTensor();
  };
  const std::optional<at::Tensor> pos = tensor("pos_embed");
  const std::optional<at::Tensor> patch = tensor("patch_embed.proj.weight");
  if (!pos || !patch || pos->dim() != 3 || patch->dim() != 4 || !tensor("cls_token")) {
    return std::nullopt;
  }
  int depth = 0;
  while (tensor(absl::StrCat("blocks.", depth, ".attn.qkv.weight"))) ++depth;
  static const std::map<std::pair<int64_t, int>, std::string> kSizes = {{{192, 12}, "vit_tiny"},
                                                                        {{384, 12}, "vit_small"},
                                                                        {{768, 12}, "vit_base"},
                                                                        {{1024, 24}, "vit_large"}};
  auto size = kSizes.find({patch->size(0), depth});
  if (size == kSizes.end()) return std::nullopt;
  InferredVit vit;
  const int64_t patch_size = patch->size(2);
  vit.arch = size->second;
  if (patch_size != 16) absl::StrAppend(&vit.arch, "_patch", patch_size);
  const int64_t grid = std::llround(std::sqrt(static_cast<double>(pos->size(1) - 1)));
  vit.image_size = static_cast<int>(grid * patch_size);
  return vit;
}

// Files the originals wrote (no ssl_config): the backbone is found by its module path
// and its architecture read off the weights.
absl::StatusOr<CheckpointConfig> ForeignConfig(const TrainingSnapshot& snapshot,
                                               const std::string& path,
                                               const std::string& backbone) {
  struct Candidate {
    const char* name;
    const char* prefix;
  };
  static const Candidate kCandidates[] = {{"base", "base_encoder."},
                                          {"momentum", "momentum_encoder."},
                                          {"teacher", "teacher_encoder."},
                                          {"student", "student_encoder."},
                                          {"trunk", "trunk._feature_blocks."},
                                          {"trunk", "trunk."},
                                          {"model", ""}};
  CheckpointConfig config;
  config.epoch = static_cast<int>(snapshot.epochs_done);
  config.method = "imported";
  struct Found {
    const Candidate* candidate;
    std::string arch;
    bool cifar_stem = false;
    int image_size = 224;
  };
  std::vector<Found> found;
  for (const Candidate& candidate : kCandidates) {
    if (std::any_of(found.begin(), found.end(), [&](const Found& f) {
          return std::string(f.candidate->name) == candidate.name;
        })) {
      continue;
    }
    if (auto resnet = InferResnet(snapshot.model, candidate.prefix)) {
      found.push_back({&candidate, resnet->first, resnet->second});
    } else if (auto vit = InferVit(snapshot.model, candidate.prefix)) {
      found.push_back({&candidate, vit->arch, false, vit->image_size});
    }
  }
  for (const Found& f : found) config.available.push_back(f.candidate->name);
  if (found.empty()) {
    if (!snapshot.arch.empty()) {  // MoCo v3's own record, e.g. an architecture not a ResNet
      config.available = {"base"};
      config.backbone = "base";
      config.arch = snapshot.arch;
      config.prefix = "base_encoder.";
      config.head_prefixes = {backbones::HeadName(snapshot.arch) + "."};
      return config;
    }
    const std::string first =
        snapshot.model.empty() ? "(none)" : snapshot.model.begin()->key().toStringRef();
    return absl::InvalidArgumentError(
        absl::StrCat(path,
                     " holds no backbone this framework can rebuild: no ResNet with torchvision's "
                     "names or ViT with timm's under base_encoder., teacher_encoder., "
                     "trunk._feature_blocks. or the top level (first key: ",
                     first, ")"));
  }
  const Found* chosen = &found.front();
  if (!backbone.empty()) {
    chosen = nullptr;
    for (const Found& f : found) {
      if (backbone == f.candidate->name) chosen = &f;
    }
    if (!chosen) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, " has no backbone \"", backbone,
                       "\"; it holds: ", absl::StrJoin(config.available, ", ")));
    }
  }
  config.backbone = chosen->candidate->name;
  config.prefix = chosen->candidate->prefix;
  config.arch = chosen->arch;
  config.cifar_stem = chosen->cifar_stem;
  config.image_size = chosen->image_size;
  config.head_prefixes = {backbones::HeadName(chosen->arch) + "."};
  if (config.prefix.empty()) {
    // main_swav.py's ResNet holds its projection head and prototypes beside the trunk.
    config.head_prefixes.push_back("projection_head.");
    config.head_prefixes.push_back("prototypes.");
  }
  return config;
}

absl::StatusOr<CheckpointConfig> ConfigOf(const TrainingSnapshot& snapshot, const std::string& path,
                                          const std::string& backbone) {
  CheckpointConfig config;
  config.epoch = static_cast<int>(snapshot.epochs_done);
  config.method = SnapshotMethod(snapshot);
  const nlohmann::json json = nlohmann::json::parse(snapshot.config_json, nullptr, false);
  const bool has_config = json.is_object();
  if (has_config) {
    config.image_size = json.value("image_size", 224);
    config.cifar_stem = json.value("cifar_stem", false);
  }
  if (!has_config || !json.contains("backbones")) {
    // The originals' files, and MoCo v3 checkpoints written before the engine recorded
    // its backbones.
    return ForeignConfig(snapshot, path, backbone);
  } else {
    const nlohmann::json& backbones = json["backbones"];
    for (const auto& item : backbones.items()) config.available.push_back(item.key());
    config.backbone = backbone.empty() ? json.value("eval_backbone", std::string()) : backbone;
    if (!backbones.contains(config.backbone)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, " has no backbone \"", config.backbone,
                       "\"; it holds: ", absl::StrJoin(config.available, ", ")));
    }
    const nlohmann::json& where = backbones[config.backbone];
    config.arch = where.value("arch", std::string());
    config.cifar_stem = where.value("cifar_stem", false);
    config.prefix = where.value("prefix", std::string());
    config.head_prefixes = where.value("head_prefixes", std::vector<std::string>());
  }
  return config;
}

}  // namespace

absl::StatusOr<CheckpointConfig> ReadCheckpointConfig(const std::string& path,
                                                      const std::string& backbone) {
  SSL_ASSIGN_OR_RETURN(TrainingSnapshot snapshot, ReadSnapshot(path));
  return ConfigOf(snapshot, path, backbone);
}

absl::StatusOr<std::shared_ptr<backbones::Backbone>> LoadPretrainedBackbone(
    const std::string& path, int64_t num_classes, const std::string& backbone,
    double drop_path_rate) {
  SSL_ASSIGN_OR_RETURN(TrainingSnapshot snapshot, ReadSnapshot(path));
  SSL_ASSIGN_OR_RETURN(CheckpointConfig config, ConfigOf(snapshot, path, backbone));
  backbones::BackboneOptions options;
  options.cifar_stem = config.cifar_stem;
  options.num_classes = num_classes;
  options.image_size = config.image_size;
  options.drop_path_rate = drop_path_rate;
  SSL_ASSIGN_OR_RETURN(std::shared_ptr<backbones::Backbone> model,
                       backbones::CreateBackbone(config.arch, options));
  // The checkpoint's head (MoCo v3's projector at fc.*) is skipped; a fresh classifier
  // of num_classes keeps its own initialization.
  std::vector<std::string> skip = config.head_prefixes;
  if (num_classes > 0) skip.push_back(backbones::HeadName(config.arch) + ".");
  if (absl::Status s = LoadStateDictFromIValue(*model, snapshot.model, config.prefix, skip);
      !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot load the ", config.backbone,
                                                   " backbone of ", path, ": ", s.message()));
  }
  return model;
}

absl::StatusOr<std::pair<CheckpointConfig, int64_t>> ExportBackbone(const std::string& path,
                                                                    const std::string& backbone,
                                                                    const std::string& format,
                                                                    const std::string& output) {
  if (format != "torchvision" && format != "deit") {
    return absl::InvalidArgumentError("--format=" + format + " is not one of torchvision, deit");
  }
  SSL_ASSIGN_OR_RETURN(CheckpointConfig config, ReadCheckpointConfig(path, backbone));
  SSL_ASSIGN_OR_RETURN(std::shared_ptr<backbones::Backbone> model,
                       LoadPretrainedBackbone(path, 0, backbone));
  // Built without a classifier: the state dict is the trunk alone, the head left out.
  const c10::impl::GenericDict state = StateDictToIValue(*model);
  c10::IValue file = state;
  if (format == "deit") {
    c10::impl::GenericDict wrapper(c10::StringType::get(), c10::AnyType::get());
    wrapper.insert("model", state);
    file = wrapper;
  }
  SSL_RETURN_IF_ERROR(SaveIValue(file, output));
  return std::make_pair(config, static_cast<int64_t>(state.size()));
}

}  // namespace ssl::train
