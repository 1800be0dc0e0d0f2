// Reading metrics out of a results JSON and comparing them with references; shared by
// the per-entry tests and the results report.
#ifndef EXPERIMENTS_RESULT_CHECKS_H_
#define EXPERIMENTS_RESULT_CHECKS_H_

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace ssl::experiments {

/// A metric of a results file: "linear_top1" (the pretrained backbone's),
/// "random_init.linear_top1", or "gain.knn_top1_k20" (pretrained minus random init).
std::optional<double> FindMetric(const nlohmann::json& results, const std::string& metric);

struct Check {
  std::string metric;
  double reference = 0;
  double tolerance = 0;
  /// A floor instead of reference +- tolerance: the value must be >= reference (an
  /// entry's `minimum`, e.g. the least gain over random init that shows learning).
  bool at_least = false;

  bool Passes(double value) const;
  /// "68.90 +- 0.50" or ">= 8.00".
  std::string Describe() const;
};

/// Parses "metric:reference:tolerance" or "metric:>=:floor"; nullopt when malformed.
std::optional<Check> ParseCheck(const std::string& text);

}  // namespace ssl::experiments

#endif  // EXPERIMENTS_RESULT_CHECKS_H_
