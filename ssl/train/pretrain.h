// MoCo v3 pretraining loop, as main_moco.py's train(): per-iteration learning rate
// (linear warmup, half-cosine) and momentum (cosine), a progress line every print_freq
// iterations, a checkpoint every epoch in MoCo v3's layout, exact resume, metrics as
// JSON lines, and a hard stop with a saved diagnostic on a non-finite loss.
#ifndef SSL_TRAIN_PRETRAIN_H_
#define SSL_TRAIN_PRETRAIN_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/statusor.h"
#include "ssl/backbones/backbone.h"
#include "ssl/distributed/communicator.h"
#include "ssl/methods/mocov3.h"

namespace ssl::train {

struct PretrainOptions {
  std::string data;        ///< ImageFolder root of the training images
  std::string output_dir;  ///< checkpoints, metrics.jsonl
  methods::MocoV3Options moco;
  int64_t batch_size = 4096;  ///< global, over all processes
  int epochs = 100;
  double warmup_epochs = 10;
  std::string optimizer = "lars";  ///< lars | sgd | adamw
  double base_lr = 0.6;            ///< scaled by batch_size / 256
  double weight_decay = 1e-6;
  double moco_m = 0.99;
  bool moco_m_cos = true;
  double crop_min = 0.2;
  int image_size = 224;
  int print_freq = 10;
  uint64_t seed = 0;
  /// "" starts fresh; "latest" resumes from the newest checkpoint in output_dir (fresh
  /// when there is none); anything else is a checkpoint path.
  std::string resume;
  int workers = 2;
  /// BatchNorm statistics in training: "sync" (MoCo v3's SyncBN over the group below;
  /// plain BN for a single process), "local" (per process) or "split" (per sub-batch).
  std::string bn = "sync";
  int sync_bn_group_size = 0;  ///< VISSL: -1 per machine, 0 all processes, N
  int split_bn_splits = 8;     ///< sub-batches per process for bn = "split"
  /// Gradient all-reduce bucket size; buckets start while backward is still running.
  int64_t bucket_bytes = 25 << 20;
  /// Stop (cleanly, after saving) once this many epochs have run in this invocation;
  /// 0 runs to `epochs`. For chunked runs under a time limit.
  int max_epochs_this_run = 0;
};

/// Multi-process runs: every process calls this with its communicator; the global batch
/// is split evenly, initial weights are broadcast from rank 0, gradients are averaged,
/// and only rank 0 logs, writes metrics and checkpoints (and runs the monitor). A lost
/// peer ends the run with an Unavailable status naming it.
///
/// Called after each epoch's checkpoint with the epoch (1-based count) and the base
/// encoder's backbone; what it returns is added to the epoch's metrics record. The kNN
/// monitor plugs in here (eval/ depends on train/, not the other way).
using EpochMonitor =
    std::function<absl::StatusOr<nlohmann::json>(int epoch, backbones::Backbone& backbone)>;

struct PretrainResult {
  std::string last_checkpoint;
  int epochs_completed = 0;
  double final_loss = 0;         ///< mean loss of the last epoch run
  double images_per_second = 0;  ///< training throughput of this invocation
};

absl::StatusOr<PretrainResult> RunMocoV3Pretraining(
    const PretrainOptions& options, std::shared_ptr<distributed::Communicator> communicator,
    const EpochMonitor& monitor = nullptr);

/// The options a checkpoint was trained with (the "ssl_config" entry), for evaluation
/// tools that rebuild the backbone.
struct CheckpointConfig {
  std::string arch;
  bool cifar_stem = false;
  int image_size = 224;
  int epoch = 0;
};
absl::StatusOr<CheckpointConfig> ReadCheckpointConfig(const std::string& path);

/// Builds the checkpoint's base-encoder backbone (projector dropped), optionally with a
/// fresh classifier of `num_classes`. MoCo v3's main_lincls loading rule: keys
/// module.base_encoder.* except module.base_encoder.fc.*.
absl::StatusOr<std::shared_ptr<backbones::Backbone>> LoadPretrainedBackbone(
    const std::string& path, int64_t num_classes = 0);

}  // namespace ssl::train

#endif  // SSL_TRAIN_PRETRAIN_H_
