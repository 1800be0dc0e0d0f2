#include "tools/lockstep_testing.h"

#include <ATen/ATen.h>
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <utility>

namespace ssl::tools {

at::Tensor LockstepUniform(int64_t count, int64_t seed) {
  constexpr uint64_t kMask = 0xFFFFFFFFULL;
  std::vector<double> values(count);
  for (int64_t j = 0; j < count; ++j) {
    uint64_t h = (static_cast<uint64_t>(j) * 2654435761ULL +
                  static_cast<uint64_t>(seed) * 40503ULL + 12345ULL) &
                 kMask;
    h ^= h >> 15;
    h = (h * 0x2C1B3C6DULL) & kMask;
    h ^= h >> 12;
    h = (h * 0x297A2D39ULL) & kMask;
    h ^= h >> 15;
    values[j] = static_cast<double>(h) / 4294967296.0;
  }
  return at::tensor(values, at::kDouble);
}

at::Tensor LockstepInitialValue(const std::string& name, const at::Tensor& param) {
  int64_t seed = 0;
  for (unsigned char c : name) seed += c;
  const at::Tensor wave = LockstepUniform(param.numel(), seed) * 2.0 - 1.0;
  at::Tensor value;
  if (param.dim() > 1) {
    const int64_t fan_in = param.numel() / param.size(0);
    value = wave * std::sqrt(6.0 / fan_in);
  } else if (name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0) {
    value = wave * 0.1 + 1.0;
  } else {
    value = wave * 0.05;
  }
  return value.reshape(param.sizes());
}

at::Tensor LockstepBatch(int64_t step, int view, int64_t batch, int64_t size) {
  return (LockstepUniform(batch * 3 * size * size, 100000 + 10 * step + view) * 4.0 - 2.0)
      .reshape({batch, 3, size, size});
}

LockstepReference ReadLockstepReference(const std::string& file) {
  std::ifstream in(std::string(std::getenv("TEST_SRCDIR")) + "/" + std::getenv("TEST_WORKSPACE") +
                   "/tools/testdata/" + file);
  LockstepReference reference;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string key;
    fields >> key;
    std::vector<double> values;
    for (double v; fields >> v;) values.push_back(v);
    if (key == "losses") {
      reference.losses = values;
    } else {
      reference.tensors[key] = values;
    }
  }
  return reference;
}

namespace {

// The largest |actual - expected| / tolerance of one comparison, and what it was.
struct Worst {
  double ratio = 0;
  std::string what;
  void See(double ratio_seen, const std::string& what_seen) {
    if (ratio_seen > ratio) {
      ratio = ratio_seen;
      what = what_seen;
    }
  }
};

void ExpectNear(double actual, double expected, double tolerance, const std::string& what,
                Worst& worst) {
  worst.See(std::abs(actual - expected) / tolerance, what);
  EXPECT_LE(std::abs(actual - expected), tolerance)
      << what << ": " << actual << " here, " << expected << " in the original";
}

}  // namespace

void ExpectLockstep(const LockstepRun& run, const LockstepReference& reference, size_t steps,
                    size_t min_tensors, const LockstepTolerances& tolerances) {
  ASSERT_EQ(reference.losses.size(), steps) << "reference file missing or truncated";
  ASSERT_EQ(run.losses.size(), steps);
  Worst worst;
  std::ostringstream both;  // every step's pair, printed once when any differs
  both.precision(9);
  bool losses_agree = true;
  for (size_t s = 0; s < steps; ++s) {
    both << "\n  step " << s + 1 << ": " << run.losses[s] << " here, " << reference.losses[s]
         << " in the original";
    const double tolerance = tolerances.loss * std::max(1.0, std::abs(reference.losses[s]));
    const double ratio = std::abs(run.losses[s] - reference.losses[s]) / tolerance;
    losses_agree &= ratio <= 1;
    worst.See(ratio, "loss at step " + std::to_string(s + 1));
  }
  EXPECT_TRUE(losses_agree) << "the losses leave lockstep:" << both.str();
  ASSERT_GE(reference.tensors.size(), min_tensors);
  for (const auto& [name, expected] : reference.tensors) {
    auto found = run.tensors.find(name);
    ASSERT_NE(found, run.tensors.end()) << name << " is missing here";
    const at::Tensor flat = found->second.detach().to(at::kDouble).flatten();
    const int64_t n = flat.numel();
    ASSERT_EQ(n, static_cast<int64_t>(expected[0])) << name;
    const double abs_sum = expected[2];
    const double mean_abs = abs_sum / n;
    ExpectNear(flat.sum().item<double>(), expected[1], tolerances.sum * abs_sum + 1e-12,
               name + " sum", worst);
    ExpectNear(flat.abs().sum().item<double>(), abs_sum, tolerances.sum * abs_sum + 1e-12,
               name + " sum |x|", worst);
    const int64_t picks[] = {0, n / 3, 2 * n / 3, n - 1};
    for (int k = 0; k < 4; ++k) {
      ExpectNear(flat[picks[k]].item<double>(), expected[3 + k],
                 tolerances.element * mean_abs + 1e-12,
                 name + " element " + std::to_string(picks[k]), worst);
    }
  }
  std::cout << "largest deviation: " << worst.ratio << " of its tolerance (" << worst.what << ")\n";
}

bool LeavesLockstep(const LockstepRun& run, const LockstepReference& reference, size_t steps,
                    size_t min_tensors) {
  ::testing::TestPartResultArray failures;
  {
    ::testing::ScopedFakeTestPartResultReporter reporter(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &failures);
    ExpectLockstep(run, reference, steps, min_tensors);
  }
  return failures.size() > 0;
}

std::vector<optim::ParamGroup> EngineParamGroups(methods::Method& method, double weight_decay) {
  std::vector<optim::ParamGroup> groups;
  for (methods::ParameterGroup& group : method.ParameterGroups()) {
    groups.push_back(optim::ParamGroup{std::move(group.parameters),
                                       group.no_weight_decay ? 0.0 : weight_decay,
                                       group.no_trust_ratio});
  }
  return groups;
}

}  // namespace ssl::tools
