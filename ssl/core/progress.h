// Progress lines for long work: items done, throughput and ETA.
#ifndef SSL_CORE_PROGRESS_H_
#define SSL_CORE_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <string>

namespace ssl {

/// "45s", "12m05s", "3h07m": compact durations for progress lines.
std::string FormatDuration(double seconds);

/// Tracks work toward a known total. Not thread-safe; call from one thread.
class ProgressMeter {
 public:
  /// `total` items (images, iterations) are expected; `label` prefixes each line.
  ProgressMeter(int64_t total, std::string label);

  /// Records that `done` items are complete so far (monotone).
  void Update(int64_t done);

  double ElapsedSeconds() const;
  /// Items per second since construction (0 before any progress).
  double Throughput() const;
  /// Seconds until `total` at the current throughput; negative when unknown.
  double EtaSeconds() const;
  /// "label 120/1000 (12.0%) 85.3/s ETA 10s".
  std::string Line() const;

 private:
  int64_t total_;
  int64_t done_ = 0;
  std::string label_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace ssl

#endif  // SSL_CORE_PROGRESS_H_
