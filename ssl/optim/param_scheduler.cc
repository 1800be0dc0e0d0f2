#include "ssl/optim/param_scheduler.h"

#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "ssl/core/constants.h"

namespace ssl::optim {
namespace {
// fvcore's CompositeParamScheduler.WHERE_EPSILON: a where at a boundary belongs to the
// next scheduler.
constexpr double kWhereEpsilon = 1e-6;
}  // namespace

absl::Status ValidateSchedule(const ScheduleSpec& spec) {
  if (spec.update_interval != "step" && spec.update_interval != "epoch") {
    return absl::InvalidArgumentError(absl::StrCat(
        "schedule update_interval must be step or epoch, got \"", spec.update_interval, "\""));
  }
  if (spec.name == "constant" || spec.name == "linear" || spec.name == "cosine") {
    return absl::OkStatus();
  }
  if (spec.name == "multistep") {
    if (spec.values.empty() || spec.milestones.size() + 1 != spec.values.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("multistep schedule needs one more value than milestones, got ",
                       spec.values.size(), " values and ", spec.milestones.size(), " milestones"));
    }
    return absl::OkStatus();
  }
  if (spec.name != "composite") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown schedule \"", spec.name,
                     "\"; known: constant, linear, cosine, multistep, composite"));
  }
  if (spec.schedulers.empty() || spec.lengths.size() != spec.schedulers.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("composite schedule has ", spec.schedulers.size(), " schedulers and ",
                     spec.lengths.size(), " lengths; they must match"));
  }
  if (!spec.interval_scaling.empty() && spec.interval_scaling.size() != spec.schedulers.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("composite schedule has ", spec.schedulers.size(), " schedulers and ",
                     spec.interval_scaling.size(), " interval_scaling entries; they must match"));
  }
  for (const std::string& scaling : spec.interval_scaling) {
    if (scaling != "rescaled" && scaling != "fixed") {
      return absl::InvalidArgumentError(absl::StrCat(
          "composite interval_scaling must be rescaled or fixed, got \"", scaling, "\""));
    }
  }
  const double total = std::accumulate(spec.lengths.begin(), spec.lengths.end(), 0.0);
  if (std::abs(total - 1.0) > 1e-3) {
    return absl::InvalidArgumentError(
        absl::StrCat("composite schedule lengths must sum to 1, got ", total));
  }
  for (const ScheduleSpec& child : spec.schedulers) {
    if (absl::Status s = ValidateSchedule(child); !s.ok()) return s;
  }
  return absl::OkStatus();
}

double ScheduleValue(const ScheduleSpec& spec, double where, int epochs) {
  if (spec.name == "constant") return spec.value;
  if (spec.name == "linear") return spec.start_value + where * (spec.end_value - spec.start_value);
  if (spec.name == "cosine") {
    return spec.end_value +
           0.5 * (spec.start_value - spec.end_value) * (1.0 + std::cos(kPi * where));
  }
  if (spec.name == "multistep") {
    const double epoch = where * epochs;
    size_t i = 0;
    while (i < spec.milestones.size() && epoch + kWhereEpsilon >= spec.milestones[i]) ++i;
    return spec.values[i];
  }
  // Composite.
  size_t i = 0;
  double running_total = spec.lengths[0];
  while (where + kWhereEpsilon > running_total && i + 1 < spec.schedulers.size()) {
    ++i;
    running_total += spec.lengths[i];
  }
  double child_where = where;
  const bool rescaled = spec.interval_scaling.empty() || spec.interval_scaling[i] == "rescaled";
  if (rescaled) {
    const double start = running_total - spec.lengths[i];
    child_where = (where - start) / spec.lengths[i];
  }
  return ScheduleValue(spec.schedulers[i], child_where, epochs);
}

double ScheduleValueAt(const ScheduleSpec& spec, int64_t global_step, int64_t steps_per_epoch,
                       int epochs) {
  const double total = static_cast<double>(steps_per_epoch) * epochs;
  double where = spec.update_interval == "epoch"
                     ? static_cast<double>(global_step / steps_per_epoch) / epochs
                     : global_step / total;
  return ScheduleValue(spec, where, epochs);
}

}  // namespace ssl::optim
