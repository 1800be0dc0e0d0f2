// The small pieces of the pretraining loop that are not training: rank 0's progress
// line and metrics.jsonl records, and the hard stop on a non-finite loss.
#ifndef SSL_TRAIN_TRAINING_LOG_H_
#define SSL_TRAIN_TRAINING_LOG_H_

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "ssl/core/progress.h"
#include "ssl/methods/method.h"
#include "ssl/train/metrics.h"

namespace ssl::train {

/// A progress line and a metrics record every `print_freq` iterations (and at the end
/// of each epoch): loss, lr, the method's scheduled values, images/s and the share of
/// time spent waiting for data over the window, and the ETA of this invocation.
/// Everything is a no-op on ranks other than 0.
class TrainingLog {
 public:
  TrainingLog(const std::string& metrics_path, bool is_main, int64_t iterations_this_run,
              int print_freq);

  void StartEpoch(double loader_wait_seconds);
  /// Whether iteration `step.iteration` ends a logging window.
  bool Due(const methods::StepContext& step) const;
  /// Records one iteration of `images` images (over all processes); prints and writes
  /// when Due(step), with `loss` the mean over processes. `indicators` (the method's, asked
  /// for only when Due) all go to metrics.jsonl; those marked go on the progress line.
  void Iteration(const methods::StepContext& step, double loss,
                 const std::vector<std::pair<std::string, double>>& scheduled,
                 const std::vector<methods::Indicator>& indicators, int64_t images,
                 double loader_wait_seconds);
  /// Prints and writes an epoch record.
  void Epoch(const nlohmann::json& record);

 private:
  bool is_main_;
  int print_freq_;
  MetricsWriter metrics_;
  ProgressMeter progress_;
  int64_t iterations_done_ = 0;
  std::chrono::steady_clock::time_point window_start_;
  int64_t window_images_ = 0;
  double window_wait_start_ = 0;
};

/// What is known about the step whose loss was not finite.
struct NonFiniteLoss {
  double loss = 0;
  methods::StepContext step;
  at::Tensor batch_indices;
};

/// Saves nan_diagnostic_epoch<E>_iter<I>.pth (loss, step, lr, batch indices, the
/// method's scheduled values and weights) plus the method's own dump into `dir`, and
/// returns the error that stops the run, naming both.
absl::Status StopOnNonFiniteLoss(const NonFiniteLoss& what, methods::Method& method,
                                 const std::string& dir);

}  // namespace ssl::train

#endif  // SSL_TRAIN_TRAINING_LOG_H_
