// Pretraining checkpoints in the original projects' layouts. The engine deals in one
// layout-free snapshot (epochs done, module state dict, optimizer, method extra state,
// ssl_config); a layout maps it to and from the file its original writes:
//   mocov3    checkpoint_%04d.pth.tar  {epoch, arch, state_dict: module.*, optimizer,
//             scaler, ssl_config, ssl_extra}
//   vissl     model_phase<N>.torch, model_final_checkpoint_phase<N>.torch and the
//             checkpoint.torch link  {phase_idx, iteration, iteration_num,
//             train_phase_idx, loss, classy_state_dict: {train, base_model: {model:
//             {trunk, heads}, meta}, optimizer: {optim}, phase_idx, train_phase_idx,
//             num_updates, losses, hooks, loss, meters}, ssl_config}
//   m2teacher last_epoch_ckpt.pth.tar (overwritten each epoch)  {start_epoch, model:
//             module.*, optimizer, scaler, ssl_config, ssl_extra}
// The fp16 loss scaler's state is "scaler" (VISSL: classy_state_dict.amp).
// Files are written atomically, so a crash never leaves a partial checkpoint.
#ifndef SSL_TRAIN_CHECKPOINTER_H_
#define SSL_TRAIN_CHECKPOINTER_H_

#include <ATen/core/Dict.h>
#include <ATen/core/ivalue.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace ssl::train {

/// Everything a resumed run needs, independent of the file layout.
struct TrainingSnapshot {
  int64_t epochs_done = 0;
  int64_t global_step = 0;
  std::string arch;  ///< the evaluation backbone's registry name
  /// Parameters and buffers by module path ("base_encoder.conv1.weight").
  c10::impl::GenericDict model{c10::StringType::get(), c10::AnyType::get()};
  c10::IValue optimizer;
  /// Method::ExtraState().
  c10::impl::GenericDict extra{c10::StringType::get(), c10::AnyType::get()};
  /// GradScaler.state_dict() of an fp16 run; empty otherwise (as moco-v3 saves it).
  c10::impl::GenericDict scaler{c10::StringType::get(), c10::AnyType::get()};
  /// JSON: {"method", "backbones": {name: {arch, cifar_stem, prefix, head_prefixes}},
  /// "eval_backbone", engine and method options}.
  std::string config_json;
};

class CheckpointLayout {
 public:
  virtual ~CheckpointLayout() = default;
  /// "mocov3", "vissl" or "m2teacher".
  virtual std::string name() const = 0;
  /// The file a snapshot after `epochs_done` epochs goes to; `final` marks the last.
  virtual std::string FileName(int64_t epochs_done, bool final) const = 0;
  /// Epochs done of a file name this layout writes; nullopt for other names.
  virtual std::optional<int64_t> EpochsOfFile(const std::string& file_name) const = 0;
  virtual c10::IValue Pack(const TrainingSnapshot& snapshot) const = 0;
  /// InvalidArgument naming what is missing when `file` is not of this layout.
  virtual absl::StatusOr<TrainingSnapshot> Unpack(const c10::IValue& file) const = 0;
  /// Whether a loaded file looks like this layout.
  virtual bool Recognizes(const c10::IValue& file) const = 0;
  /// Called after a successful save (the VISSL layout points checkpoint.torch at it).
  virtual absl::Status AfterSave(const std::string& dir, const std::string& path) const {
    return absl::OkStatus();
  }
};

std::shared_ptr<CheckpointLayout> MocoV3Layout();
std::shared_ptr<CheckpointLayout> VisslLayout();
std::shared_ptr<CheckpointLayout> M2TeacherLayout();

/// Reads any checkpoint this framework writes, whatever its layout.
absl::StatusOr<TrainingSnapshot> ReadSnapshot(const std::string& path);

/// Saves and finds snapshots of one run directory in one layout.
class Checkpointer {
 public:
  Checkpointer(std::string dir, std::shared_ptr<CheckpointLayout> layout);

  /// Writes the snapshot atomically; returns the path.
  absl::StatusOr<std::string> Save(const TrainingSnapshot& snapshot, bool final) const;
  /// The snapshot to resume from: `resume` "" starts fresh (nullopt), "latest" takes
  /// the newest checkpoint of the directory (nullopt when there is none), anything
  /// else is a path. The file's method must be `method`.
  absl::StatusOr<std::optional<TrainingSnapshot>> Load(const std::string& resume,
                                                       const std::string& method,
                                                       std::string* path) const;
  /// The newest checkpoint file of the directory; NotFound when there is none.
  absl::StatusOr<std::string> Latest() const;

  const CheckpointLayout& layout() const { return *layout_; }

 private:
  std::string dir_;
  std::shared_ptr<CheckpointLayout> layout_;
};

/// The "method" recorded in a snapshot's config ("mocov3" for files written before
/// checkpoints recorded it).
std::string SnapshotMethod(const TrainingSnapshot& snapshot);

}  // namespace ssl::train

#endif  // SSL_TRAIN_CHECKPOINTER_H_
