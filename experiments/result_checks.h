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
};

/// Parses "metric:reference:tolerance"; nullopt when malformed.
std::optional<Check> ParseCheck(const std::string& text);

}  // namespace ssl::experiments

#endif  // EXPERIMENTS_RESULT_CHECKS_H_
