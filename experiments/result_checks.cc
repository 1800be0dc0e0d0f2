#include "experiments/result_checks.h"

namespace ssl::experiments {

std::optional<double> FindMetric(const nlohmann::json& results, const std::string& metric) {
  auto lookup = [&results](const std::string& section,
                           const std::string& key) -> std::optional<double> {
    if (!results.contains(section) || !results[section].contains(key) ||
        !results[section][key].is_number()) {
      return std::nullopt;
    }
    return results[section][key].get<double>();
  };
  const size_t dot = metric.find('.');
  if (dot == std::string::npos) return lookup("pretrained", metric);
  const std::string section = metric.substr(0, dot), key = metric.substr(dot + 1);
  if (section == "gain") {
    const std::optional<double> a = lookup("pretrained", key), b = lookup("random_init", key);
    if (!a || !b) return std::nullopt;
    return *a - *b;
  }
  return lookup(section, key);
}

std::optional<Check> ParseCheck(const std::string& text) {
  const size_t first = text.find(':');
  const size_t second = text.find(':', first + 1);
  if (first == std::string::npos || second == std::string::npos) return std::nullopt;
  try {
    return Check{text.substr(0, first), std::stod(text.substr(first + 1, second - first - 1)),
                 std::stod(text.substr(second + 1))};
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace ssl::experiments
