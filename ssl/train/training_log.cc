#include "ssl/train/training_log.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "ssl/core/logging.h"
#include "ssl/train/checkpoint.h"

namespace ssl::train {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

TrainingLog::TrainingLog(const std::string& metrics_path, bool is_main, int64_t iterations_this_run,
                         int print_freq)
    : is_main_(is_main),
      print_freq_(print_freq),
      metrics_(is_main ? metrics_path : ""),
      progress_(iterations_this_run, "pretrain") {}

void TrainingLog::StartEpoch(double loader_wait_seconds) {
  window_start_ = Clock::now();
  window_images_ = 0;
  window_wait_start_ = loader_wait_seconds;
}

bool TrainingLog::Due(const methods::StepContext& step) const {
  return (step.iteration + 1) % print_freq_ == 0 || step.iteration + 1 == step.iterations_per_epoch;
}

void TrainingLog::Iteration(const methods::StepContext& step, double loss,
                            const std::vector<std::pair<std::string, double>>& scheduled,
                            const std::vector<methods::Indicator>& indicators, int64_t images,
                            double loader_wait_seconds) {
  ++iterations_done_;
  window_images_ += images;
  if (!is_main_ || !Due(step)) return;
  progress_.Update(iterations_done_);
  const double window = std::chrono::duration<double>(Clock::now() - window_start_).count();
  const double images_per_second = window > 0 ? window_images_ / window : 0;
  const double data_share = window > 0 ? (loader_wait_seconds - window_wait_start_) / window : 0;
  std::string values;
  nlohmann::json record = {{"type", "iteration"},
                           {"epoch", step.epoch},
                           {"iteration", step.iteration},
                           {"global_step", step.global_step},
                           {"loss", loss},
                           {"lr", step.lr}};
  for (const auto& [name, value] : scheduled) {
    absl::StrAppendFormat(&values, "  %s %.5g", name, value);
    record[name] = value;
  }
  for (const methods::Indicator& indicator : indicators) {
    if (indicator.on_progress_line) {
      absl::StrAppendFormat(&values, "  %s %.4g", indicator.name, indicator.value);
    }
    record[indicator.name] = indicator.value;
  }
  record["images_per_second"] = images_per_second;
  record["data_wait_share"] = data_share;
  const int width = static_cast<int>(std::to_string(step.iterations_per_epoch).size());
  LOG(INFO) << absl::StrFormat(
      "Epoch: [%d/%d][%*d/%d]  loss %.4f  lr %.6f%s  %.1f img/s  data %.1f%%  ETA %s",
      step.epoch + 1, step.epochs, width, step.iteration + 1, step.iterations_per_epoch, loss,
      step.lr, values, images_per_second, 100 * data_share, FormatDuration(progress_.EtaSeconds()));
  metrics_.Write(record);
  window_start_ = Clock::now();
  window_images_ = 0;
  window_wait_start_ = loader_wait_seconds;
}

void TrainingLog::Epoch(const nlohmann::json& record) {
  if (!is_main_) return;
  LOG(INFO) << "epoch " << record.value("epoch", 0) << " done: " << record.dump();
  metrics_.Write(record);
}

absl::Status StopOnNonFiniteLoss(const NonFiniteLoss& what, methods::Method& method,
                                 const std::string& dir) {
  const std::string diagnostic =
      (fs::path(dir) / absl::StrFormat("nan_diagnostic_epoch%04d_iter%06d.pth", what.step.epoch,
                                       what.step.iteration))
          .string();
  c10::impl::GenericDict dump(c10::StringType::get(), c10::AnyType::get());
  dump.insert("method", method.name());
  dump.insert("epoch", what.step.epoch);
  dump.insert("iteration", what.step.iteration);
  dump.insert("global_step", what.step.global_step);
  dump.insert("loss", what.loss);
  dump.insert("lr", what.step.lr);
  for (const auto& [name, value] : method.ScheduledValues()) dump.insert(name, value);
  if (what.batch_indices.defined()) dump.insert("batch_indices", what.batch_indices);
  dump.insert("state_dict", StateDictToIValue(method, "module."));
  const absl::Status saved = SaveIValue(dump, diagnostic);
  std::vector<std::string> files;
  if (saved.ok()) files.push_back(diagnostic);
  for (const std::string& file : method.DumpDiagnostics(dir)) files.push_back(file);
  return absl::InternalError(
      absl::StrCat("loss became ", what.loss, " at epoch ", what.step.epoch, " iteration ",
                   what.step.iteration, " (lr ", what.step.lr, "); ",
                   saved.ok() ? "diagnostic saved to " + absl::StrJoin(files, ", ")
                              : "diagnostic could not be saved: " + std::string(saved.message()),
                   ". Try a lower learning rate or a longer warmup"));
}

}  // namespace ssl::train
