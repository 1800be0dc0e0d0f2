// Parameter schedules as VISSL configures them (fvcore's ParamScheduler family): a
// value as a function of `where`, the fraction of training done, in [0, 1). VISSL's
// SwAV recipes use a composite of a linear warmup and a cosine decay with lengths and
// interval scaling; updated per step (where = step / total steps) or per epoch.
#ifndef SSL_OPTIM_PARAM_SCHEDULER_H_
#define SSL_OPTIM_PARAM_SCHEDULER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ssl::optim {

struct ScheduleSpec {
  /// "constant" (value), "linear" (start_value -> end_value), "cosine" (start_value ->
  /// end_value along a half cosine), "multistep" (values at milestones, in epochs) or
  /// "composite" (schedulers over consecutive lengths of training).
  std::string name = "constant";
  double value = 0;
  double start_value = 0;
  double end_value = 0;
  std::vector<double> values;            ///< multistep
  std::vector<int> milestones;           ///< multistep: epochs where the next value starts
  std::vector<ScheduleSpec> schedulers;  ///< composite
  std::vector<double> lengths;           ///< composite: fractions summing to 1
  /// composite, per scheduler: "rescaled" (its own where runs 0 -> 1 over its length)
  /// or "fixed" (it sees the global where).
  std::vector<std::string> interval_scaling;
  /// "step": where = step / total steps; "epoch": where = epoch / epochs.
  std::string update_interval = "step";
};

/// InvalidArgument naming the first problem (unknown name, lengths that do not sum to
/// 1, mismatched list sizes).
absl::Status ValidateSchedule(const ScheduleSpec& spec);

/// The value at `where` in [0, 1]; `epochs` converts multistep milestones. Call
/// ValidateSchedule first.
double ScheduleValue(const ScheduleSpec& spec, double where, int epochs);

/// The value for a training position, honouring update_interval.
double ScheduleValueAt(const ScheduleSpec& spec, int64_t global_step, int64_t steps_per_epoch,
                       int epochs);

}  // namespace ssl::optim

#endif  // SSL_OPTIM_PARAM_SCHEDULER_H_
