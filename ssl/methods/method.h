// The interface every self-supervised method implements, so that one pretraining
// engine (ssl/train) runs them all: what a method owns is its modules, its loss, the
// hooks that run before each step (EMA of a teacher, prototype normalization, schedules
// of its own), how its parameters are optimized, the state a checkpoint must hold
// besides weights and optimizer, the backbone that evaluation uses, and its views.
// Everything else (lr schedule, optimizer step, gradient averaging, BN mode,
// checkpoints, resume, NaN stop, progress, metrics, monitors) belongs to the engine.
#ifndef SSL_METHODS_METHOD_H_
#define SSL_METHODS_METHOD_H_

#include <ATen/core/Dict.h>
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "ssl/backbones/backbone.h"
#include "ssl/data/views.h"

namespace ssl::methods {

/// Where training stands when the engine calls a method.
struct StepContext {
  int64_t epoch = 0;                 ///< 0-based
  int64_t iteration = 0;             ///< within the epoch
  int64_t iterations_per_epoch = 1;  ///< on this process
  int64_t epochs = 1;                ///< of the whole run
  int64_t global_step = 0;           ///< epoch * iterations_per_epoch + iteration
  int64_t total_steps = 1;           ///< epochs * iterations_per_epoch
  double lr = 0;                     ///< what the optimizer steps with
  /// epoch + iteration / iterations_per_epoch: MoCo v3's per-iteration schedules.
  double FractionalEpoch() const {
    return epoch + static_cast<double>(iteration) / iterations_per_epoch;
  }
};

/// Parameters that share an optimizer treatment. The engine makes one optimizer
/// parameter group per entry (PyTorch's param_groups, in this order).
struct ParameterGroup {
  std::string name;  ///< for logs, e.g. "regularized", "bn_and_bias"
  std::vector<at::Tensor> parameters;
  bool no_weight_decay = false;  ///< VISSL's regularize_bn / regularize_bias false
  bool no_trust_ratio = false;   ///< excluded from LARS / LARC trust-ratio scaling
  /// Gradients are dropped while the global step is below this (VISSL's
  /// TEMP_FROZEN_PARAMS_ITER_MAP), so no momentum or weight decay reaches them.
  int64_t frozen_iterations = 0;
};

/// Where in the model a backbone's weights live and how to rebuild it, for evaluation
/// and export.
struct BackboneLocation {
  std::string arch;         ///< registry name, e.g. "resnet50"
  bool cifar_stem = false;  ///< ResNet stem variant
  std::string prefix;       ///< module path of the backbone, e.g. "base_encoder."
  /// Sub-keys under the prefix that are not the trunk (a head kept in the backbone's
  /// classifier slot, e.g. MoCo v3's projector at "fc.").
  std::vector<std::string> head_prefixes;
};

/// A number that tells how training is going (collapse, how sharp a method's targets
/// are), computed from the last step's outputs.
struct Indicator {
  std::string name;
  double value = 0;
  /// Also shown on the progress line (the others go to metrics.jsonl only).
  bool on_progress_line = false;
};

class Method : public torch::nn::Module {
 public:
  /// Registry-style name written into checkpoints ("mocov3", "swav", "m2teacher").
  virtual std::string name() const = 0;

  /// The crops this method trains on, as the loader produces them.
  virtual data::ViewRecipe Views() const = 0;

  /// Runs before the forward of every training step.
  virtual void BeforeStep(const StepContext& step) {}

  /// The training loss of one batch. `crop_groups` holds one tensor per crop group of
  /// Views(), crop-major ([count * b, 3, size, size]: every sample's first crop of the
  /// group, then every sample's second crop, ...).
  virtual at::Tensor Loss(const std::vector<at::Tensor>& crop_groups, const StepContext& step) = 0;

  /// How the optimizer treats the parameters. Parameters absent from every group are
  /// not optimized (a momentum encoder, a teacher).
  virtual std::vector<ParameterGroup> ParameterGroups() = 0;

  /// What a checkpoint must hold besides weights and optimizer state (a queue, a
  /// schedule position). Called on every process (it may use collectives); only rank
  /// 0's result is saved.
  virtual c10::impl::GenericDict ExtraState();
  /// Restores ExtraState(); InvalidArgument when it does not fit this method.
  virtual absl::Status LoadExtraState(const c10::impl::GenericDict& state);

  /// The backbone monitors evaluate and tools export (MoCo v3: the base encoder;
  /// Momentum^2 Teacher: the teacher).
  virtual backbones::Backbone& EvalBackbone() = 0;
  /// Every backbone a checkpoint of this method holds, by name ("base", "teacher", ...);
  /// the first is the one evaluation uses unless told otherwise.
  virtual std::vector<std::pair<std::string, BackboneLocation>> Backbones() const = 0;

  /// Values the last BeforeStep scheduled (e.g. {"momentum", 0.99}), for the progress
  /// line and metrics.jsonl.
  virtual std::vector<std::pair<std::string, double>> ScheduledValues() const { return {}; }

  /// Indicators of the last training step (no gradient), e.g. every method's
  /// embedding spread and SwAV's code perplexity. The engine asks at print intervals
  /// only (on a GPU every value read is a synchronization), on every process, and logs
  /// rank 0's.
  virtual std::vector<Indicator> Indicators() const { return {}; }

  /// After a non-finite loss: writes what helps debugging into `dir` (SwAV writes its
  /// scores and assignments as VISSL does) and returns the files written.
  virtual std::vector<std::string> DumpDiagnostics(const std::string& dir) { return {}; }

  /// The method's options, recorded in the checkpoint's "ssl_config" beside the
  /// engine's.
  virtual nlohmann::json Config() const = 0;
};

/// A new empty string-keyed dict, for ExtraState().
c10::impl::GenericDict NewStateDict();

/// Rows scaled to unit L2 norm (dim 1), as the methods' losses use them.
at::Tensor L2Normalize(const at::Tensor& x);

/// The collapse indicator: the standard deviation across the batch of each dimension of
/// the L2-normalized rows of `embeddings` [n, d], averaged over the d dimensions and
/// multiplied by sqrt(d). About 1 when the rows spread evenly over the sphere, 0 when
/// every row is the same (a collapsed representation). Population std (divides by n).
double EmbeddingSpread(const at::Tensor& embeddings);

/// exp of the mean over rows of each row's entropy (natural log; zeros contribute 0):
/// how many entries a row of `probabilities` [n, k] effectively spreads over, from 1
/// (one-hot) to k (uniform).
double MeanRowPerplexity(const at::Tensor& probabilities);

/// exp of the entropy of the mean row of `probabilities` [n, k]: how many entries the
/// batch as a whole uses.
double PerplexityOfMeanRow(const at::Tensor& probabilities);

/// The mean over rows of each row's entropy (natural log) of softmax(logits), [n, k].
double MeanSoftmaxEntropy(const at::Tensor& logits);

}  // namespace ssl::methods

#endif  // SSL_METHODS_METHOD_H_
