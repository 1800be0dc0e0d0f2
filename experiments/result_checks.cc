#include "experiments/result_checks.h"

#include <cmath>
#include <cstdio>

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

bool Check::Passes(double value) const {
  return at_least ? value >= reference : std::abs(value - reference) <= tolerance;
}

std::string Check::Describe() const {
  char text[64];
  if (at_least) {
    std::snprintf(text, sizeof(text), ">= %.2f", reference);
  } else {
    std::snprintf(text, sizeof(text), "%.2f +- %.2f", reference, tolerance);
  }
  return text;
}

std::optional<Check> ParseCheck(const std::string& text) {
  const size_t first = text.find(':');
  const size_t second = text.find(':', first + 1);
  if (first == std::string::npos || second == std::string::npos) return std::nullopt;
  const std::string middle = text.substr(first + 1, second - first - 1);
  try {
    size_t used = 0;
    const std::string last = text.substr(second + 1);
    const double bound = std::stod(last, &used);
    if (used != last.size()) return std::nullopt;
    if (middle == ">=") return Check{text.substr(0, first), bound, 0, /*at_least=*/true};
    const double reference = std::stod(middle, &used);
    if (used != middle.size()) return std::nullopt;
    return Check{text.substr(0, first), reference, bound};
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace ssl::experiments
