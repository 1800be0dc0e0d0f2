// Backbones out of pretraining checkpoints of any method and layout, for evaluation
// and export: the checkpoint's ssl_config says which backbones it holds, where, and how
// to rebuild them.
#ifndef SSL_TRAIN_PRETRAINED_H_
#define SSL_TRAIN_PRETRAINED_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ssl/backbones/backbone.h"

namespace ssl::train {

/// What evaluation tools need to know about a checkpoint.
struct CheckpointConfig {
  std::string method;  ///< "mocov3", "swav", ...
  std::string arch;    ///< of the chosen backbone
  bool cifar_stem = false;
  int image_size = 224;                    ///< the largest training crop
  int epoch = 0;                           ///< epochs done
  std::string backbone;                    ///< which backbone ("base", "trunk", "teacher", ...)
  std::string prefix;                      ///< its module path in the checkpoint
  std::vector<std::string> head_prefixes;  ///< sub-keys that are not the trunk
  std::vector<std::string> available;      ///< every backbone the checkpoint holds
};

/// Reads the config of `path`; `backbone` "" picks the method's evaluation backbone
/// (MoCo v3: base encoder; Momentum^2 Teacher: teacher), else one of `available`.
absl::StatusOr<CheckpointConfig> ReadCheckpointConfig(const std::string& path,
                                                      const std::string& backbone = "");

/// Builds the chosen backbone and loads its weights (its head dropped), optionally with
/// a fresh classifier of `num_classes` (and, for fine-tuning a ViT, drop path).
absl::StatusOr<std::shared_ptr<backbones::Backbone>> LoadPretrainedBackbone(
    const std::string& path, int64_t num_classes = 0, const std::string& backbone = "",
    double drop_path_rate = 0.0);

/// Writes the chosen backbone of `path` (its head left out) as torchvision's state dict
/// (`format` "torchvision") or as DeiT's {'model': state dict} ("deit", moco-v3's
/// convert_to_deit.py layout) to `output`; returns the checkpoint's config and the
/// number of tensors written.
absl::StatusOr<std::pair<CheckpointConfig, int64_t>> ExportBackbone(const std::string& path,
                                                                  const std::string& backbone,
                                                                  const std::string& format,
                                                                  const std::string& output);

}  // namespace ssl::train

#endif  // SSL_TRAIN_PRETRAINED_H_
