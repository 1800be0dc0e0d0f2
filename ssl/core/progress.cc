#include "ssl/core/progress.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_format.h"

namespace ssl {

std::string FormatDuration(double seconds) {
  if (!(seconds >= 0) || std::isinf(seconds)) return "?";
  const int64_t total = static_cast<int64_t>(std::llround(seconds));
  const int64_t hours = total / 3600, minutes = (total % 3600) / 60, secs = total % 60;
  if (hours > 0) return absl::StrFormat("%dh%02dm", hours, minutes);
  if (minutes > 0) return absl::StrFormat("%dm%02ds", minutes, secs);
  return absl::StrFormat("%ds", secs);
}

ProgressMeter::ProgressMeter(int64_t total, std::string label)
    : total_(total), label_(std::move(label)), start_(std::chrono::steady_clock::now()) {}

void ProgressMeter::Update(int64_t done) { done_ = done; }

double ProgressMeter::ElapsedSeconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

double ProgressMeter::Throughput() const {
  const double elapsed = ElapsedSeconds();
  return (done_ > 0 && elapsed > 0) ? done_ / elapsed : 0.0;
}

double ProgressMeter::EtaSeconds() const {
  const double rate = Throughput();
  if (rate <= 0) return -1;
  return (total_ - done_) / rate;
}

std::string ProgressMeter::Line() const {
  const double percent = total_ > 0 ? 100.0 * done_ / total_ : 0.0;
  return absl::StrFormat("%s %d/%d (%.1f%%) %.1f/s ETA %s", label_, done_, total_, percent,
                         Throughput(), FormatDuration(EtaSeconds()));
}

}  // namespace ssl
