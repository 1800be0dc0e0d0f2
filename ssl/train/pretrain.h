// The pretraining engine shared by every method (ssl/methods/method.h): per-iteration
// learning rate, optimizer step, gradient averaging over processes, BatchNorm mode,
// parameters frozen for the first iterations, checkpoints in the original's layout with
// exact resume, a hard stop with a saved diagnostic on a non-finite loss, a progress
// line, metrics as JSON lines and an epoch monitor. The method supplies the loss, its
// hooks and its parameter groups; nothing here knows which method it runs.
#ifndef SSL_TRAIN_PRETRAIN_H_
#define SSL_TRAIN_PRETRAIN_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/statusor.h"
#include "ssl/backbones/backbone.h"
#include "ssl/core/device.h"
#include "ssl/distributed/communicator.h"
#include "ssl/methods/method.h"
#include "ssl/optim/optimizer.h"
#include "ssl/train/checkpointer.h"

namespace ssl::train {

/// The learning rate of a step (the engine sets it before the method's hooks run).
using LearningRateSchedule = std::function<double(const methods::StepContext& step)>;

struct PretrainOptions {
  std::string data;           ///< ImageFolder root of the training images
  std::string output_dir;     ///< checkpoints, metrics.jsonl, diagnostics
  int64_t batch_size = 4096;  ///< global, over all processes
  int epochs = 100;
  LearningRateSchedule learning_rate;  ///< required
  /// lars | larc | m2t_lars | sgd | adamw, with its hyper-parameters (lr is scheduled;
  /// weight_decay applies to groups that do not opt out).
  std::string optimizer = "lars";
  optim::OptimizerOptions optimizer_options;
  int print_freq = 10;
  uint64_t seed = 0;
  /// "" starts fresh; "latest" resumes from the newest checkpoint in output_dir (fresh
  /// when there is none); anything else is a checkpoint path.
  std::string resume;
  int workers = 2;
  /// BatchNorm statistics in training: "sync" (SyncBN over the group below; plain BN
  /// for a single process), "local" (per process) or "split" (per sub-batch).
  std::string bn = "sync";
  int sync_bn_group_size = 0;  ///< VISSL: -1 per machine, 0 all processes, N
  int split_bn_splits = 8;     ///< sub-batches per process for bn = "split"
  /// Gradient all-reduce bucket size; buckets start while backward is still running.
  int64_t bucket_bytes = 25 << 20;
  /// Stop (cleanly, after saving) once this many epochs have run in this invocation;
  /// 0 runs to `epochs`. For chunked runs under a time limit.
  int max_epochs_this_run = 0;
  /// Save every N epochs (and always after the last).
  int checkpoint_every = 1;
  /// Where the model, optimizer state and batches live (ssl::ResolveDevice); batches
  /// come to a GPU from pinned host memory, copied asynchronously.
  c10::Device device = c10::kCPU;
  /// Autocast for the method's forward and loss; fp16 adds a dynamic loss scaler whose
  /// state is the checkpoint's "scaler".
  MixedPrecision amp = MixedPrecision::kOff;
  /// Convolution weights and input batches in channels-last order (ResNets on GPUs).
  bool channels_last = false;
  /// Deterministic GPU algorithms (bitwise resume on a GPU) instead of cuDNN benchmark.
  bool deterministic = false;
  /// Non-empty: a Chrome trace (chrome://tracing; tools/summarize_trace.py) of LibTorch's
  /// operators over ten iterations of this invocation's first epoch, from its eleventh
  /// (from its first when the epoch is shorter than 20), written to this path.
  std::string profile_trace;
  /// The file layout of the original this run imitates.
  std::shared_ptr<CheckpointLayout> layout = MocoV3Layout();
  /// Recorded in the checkpoint's ssl_config under "program" (e.g. the VISSL config).
  nlohmann::json program_config;
};

/// Called after each epoch's checkpoint with the epoch (1-based count) and the
/// method's evaluation backbone; what it returns is added to the epoch's metrics
/// record. The kNN monitor plugs in here (eval/ depends on train/, not the reverse).
using EpochMonitor =
    std::function<absl::StatusOr<nlohmann::json>(int epoch, backbones::Backbone& backbone)>;

struct PretrainResult {
  std::string last_checkpoint;
  int epochs_completed = 0;
  double final_loss = 0;         ///< mean loss of the last epoch run
  double images_per_second = 0;  ///< training throughput of this invocation
};

/// <output_dir>/pretrain_result.json, written atomically by the pretraining programs and
/// read by run_experiment, which starts them as subprocesses.
absl::Status WritePretrainResult(const PretrainResult& result, int epochs,
                                 const std::string& output_dir);
absl::StatusOr<PretrainResult> ReadPretrainResult(const std::string& output_dir);

/// Trains `method` (created by the caller after at::manual_seed(options.seed)).
/// Multi-process runs: every process calls this with its communicator; the global batch
/// is split evenly, initial weights are broadcast from rank 0, gradients are averaged,
/// and only rank 0 logs, writes metrics and checkpoints (and runs the monitor). A lost
/// peer ends the run with an Unavailable status naming it.
absl::StatusOr<PretrainResult> RunPretraining(
    methods::Method& method, const PretrainOptions& options,
    std::shared_ptr<distributed::Communicator> communicator, const EpochMonitor& monitor = nullptr);

}  // namespace ssl::train

#endif  // SSL_TRAIN_PRETRAIN_H_
