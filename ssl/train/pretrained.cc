#include "ssl/train/pretrained.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ssl/core/status_macros.h"
#include "ssl/train/checkpoint.h"
#include "ssl/train/checkpointer.h"

namespace ssl::train {
namespace {

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
    // MoCo v3 checkpoints written before the engine recorded its backbones.
    if (snapshot.arch.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, " records no backbone architecture; not a pretraining checkpoint"));
    }
    config.available = {"base"};
    config.backbone = "base";
    config.arch = snapshot.arch;
    config.prefix = "base_encoder.";
    config.head_prefixes = {"fc."};
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
    const std::string& path, int64_t num_classes, const std::string& backbone) {
  SSL_ASSIGN_OR_RETURN(TrainingSnapshot snapshot, ReadSnapshot(path));
  SSL_ASSIGN_OR_RETURN(CheckpointConfig config, ConfigOf(snapshot, path, backbone));
  backbones::BackboneOptions options;
  options.cifar_stem = config.cifar_stem;
  options.num_classes = num_classes;
  SSL_ASSIGN_OR_RETURN(std::shared_ptr<backbones::Backbone> model,
                       backbones::CreateBackbone(config.arch, options));
  // The checkpoint's head (MoCo v3's projector at fc.*) is skipped; a fresh classifier
  // of num_classes keeps its own initialization.
  std::vector<std::string> skip = config.head_prefixes;
  if (num_classes > 0) skip.push_back("fc.");
  if (absl::Status s = LoadStateDictFromIValue(*model, snapshot.model, config.prefix, skip);
      !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot load the ", config.backbone,
                                                   " backbone of ", path, ": ", s.message()));
  }
  return model;
}

}  // namespace ssl::train
