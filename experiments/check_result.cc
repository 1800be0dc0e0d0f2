// Compares a results JSON with references:
//   check_result --result=results.json --check=linear_top1:68.9:0.5 \
//       [--check=gain.knn_top1_k20:>=:8 ...]
// Prints one line per metric and "N passed, M failed"; exits 1 on any failure.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <vector>

#include "experiments/result_checks.h"

int main(int argc, char** argv) {
  std::string result_path;
  std::vector<ssl::experiments::Check> checks;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--result=", 9) == 0) {
      result_path = argv[i] + 9;
    } else if (std::strncmp(argv[i], "--check=", 8) == 0) {
      const auto check = ssl::experiments::ParseCheck(argv[i] + 8);
      if (!check) {
        std::cerr
            << "check_result: --check must be metric:reference:tolerance or metric:>=:floor, got "
            << argv[i] + 8 << "\n";
        return 2;
      }
      checks.push_back(*check);
    } else {
      std::cerr << "check_result: unknown argument " << argv[i] << "\n";
      return 2;
    }
  }
  std::ifstream file(result_path);
  if (!file) {
    std::cerr << "check_result: cannot read " << result_path << "\n";
    return 2;
  }
  const nlohmann::json results = nlohmann::json::parse(file, nullptr, false);
  if (results.is_discarded()) {
    std::cerr << "check_result: " << result_path << " is not valid JSON\n";
    return 2;
  }
  int passed = 0, failed = 0;
  for (const auto& check : checks) {
    const std::optional<double> value = ssl::experiments::FindMetric(results, check.metric);
    const bool ok = value && check.Passes(*value);
    std::printf("%-28s recorded %8s  reference %s  %s\n", check.metric.c_str(),
                value ? std::to_string(*value).substr(0, 7).c_str() : "missing",
                check.Describe().c_str(), ok ? "ok" : "FAIL");
    (ok ? passed : failed)++;
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 && passed > 0 ? 0 : 1;
}
