// Golden files written by tools/make_torchvision_golden.py and tools/make_vit_golden.py:
// "key <name> <shape...>" and "logits <values...>" lines, and the deterministic weight
// fill both scripts use, so that no weights need to be stored.
#ifndef SSL_BACKBONES_GOLDEN_TEST_UTIL_H_
#define SSL_BACKBONES_GOLDEN_TEST_UTIL_H_

#include <ATen/ops/arange.h>
#include <ATen/ops/sin.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "ssl/nn/state_dict.h"

namespace ssl::backbones {

struct Golden {
  std::vector<std::pair<std::string, std::vector<int64_t>>> keys;
  std::vector<std::vector<double>> logits;
};

/// A file under ssl/backbones/testdata in the test's runfiles.
inline std::string TestdataPath(const std::string& file) {
  return std::string(std::getenv("TEST_SRCDIR")) + "/" + std::getenv("TEST_WORKSPACE") +
         "/ssl/backbones/testdata/" + file;
}

inline Golden ReadGolden(const std::string& file) {
  const std::string path = TestdataPath(file);
  std::ifstream in_file(path);
  EXPECT_TRUE(in_file.good()) << path;
  Golden golden;
  std::string line;
  while (std::getline(in_file, line)) {
    std::istringstream in(line);
    std::string kind;
    in >> kind;
    if (kind == "key") {
      std::string name;
      in >> name;
      std::vector<int64_t> shape;
      for (int64_t d; in >> d;) shape.push_back(d);
      golden.keys.emplace_back(name, shape);
    } else if (kind == "logits") {
      golden.logits.emplace_back();
      for (double v; in >> v;) golden.logits.back().push_back(v);
    }
  }
  return golden;
}

/// The scripts' fill_deterministically: key k's i-th element is a sinusoid of (i, k),
/// scaled like a sane init; keys in `keep` (and BN counters) keep their values.
inline void FillDeterministically(torch::nn::Module& model, const std::set<std::string>& keep = {}) {
  torch::NoGradGuard no_grad;
  int k = 0;
  for (auto& [name, tensor] : ssl::nn::StateDict(model)) {
    const int key = k++;
    const auto ends_with = [&name = name](const std::string& suffix) {
      return name.size() >= suffix.size() &&
             name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (ends_with("num_batches_tracked") || keep.count(name)) continue;
    const at::Tensor i = at::arange(tensor.numel(), at::kDouble);
    const at::Tensor wave = at::sin(0.1 * i + key);
    at::Tensor values;
    if (ends_with("running_var")) {
      values = 1.0 + 0.5 * wave * wave;
    } else if (tensor.dim() > 1) {
      values = wave * std::sqrt(3.0 / (tensor.numel() / tensor.size(0)));
    } else if (ends_with("weight")) {
      values = 1.0 + 0.1 * wave;
    } else {
      values = 0.1 * wave;
    }
    tensor.copy_(values.reshape(tensor.sizes()).to(tensor.scalar_type()));
  }
}

}  // namespace ssl::backbones

#endif  // SSL_BACKBONES_GOLDEN_TEST_UTIL_H_
