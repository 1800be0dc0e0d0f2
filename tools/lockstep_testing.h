// What the lockstep tests share (tools/*_lockstep_test.cc): the reference scripts'
// integer hash for weights and batches, the reference file, and the comparison of a
// run's losses and final tensors with it.
#ifndef TOOLS_LOCKSTEP_TESTING_H_
#define TOOLS_LOCKSTEP_TESTING_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ssl/methods/method.h"
#include "ssl/optim/optimizer.h"

namespace ssl::tools {

/// u(j, seed) in [0, 1) for j < count, float64, exactly as the reference scripts compute
/// it (tools/make_m2teacher_lockstep_reference.py documents the hash).
at::Tensor LockstepUniform(int64_t count, int64_t seed);

/// The initial value of parameter `name` (seed: the sum of its character codes):
/// He-uniform for >= 2-d tensors, 1 + 0.1 (2u - 1) for 1-d weights, 0.05 (2u - 1) else.
at::Tensor LockstepInitialValue(const std::string& name, const at::Tensor& param);

/// View `view` (1 or 2) of step `step`: [batch, 3, size, size] of 4u - 2.
at::Tensor LockstepBatch(int64_t step, int view, int64_t batch, int64_t size);

/// A reference file: every step's loss, and per tensor {count, sum, sum of |x|, x[0],
/// x[n/3], x[2n/3], x[n-1]}.
struct LockstepReference {
  std::vector<double> losses;
  std::map<std::string, std::vector<double>> tensors;
};

/// tools/testdata/<file> from the test's runfiles (empty when absent).
LockstepReference ReadLockstepReference(const std::string& file);

/// What a run here produced: every step's loss and the final tensors by name.
struct LockstepRun {
  std::vector<double> losses;
  std::map<std::string, at::Tensor> tensors;
};

/// Relative tolerances (float64 on both sides; references hold 10 significant digits):
/// the loss, a tensor's sum and sum of |x| (relative to its sum of |x|), a sampled
/// element (relative to the tensor's mean |x|).
struct LockstepTolerances {
  double loss = 1e-7;
  double sum = 1e-7;
  double element = 1e-6;
};

/// gtest expectations: `steps` losses and at least `min_tensors` tensors, each of the
/// reference's tensors present here and equal within the tolerances. Prints the largest
/// deviation as a fraction of its tolerance.
void ExpectLockstep(const LockstepRun& run, const LockstepReference& reference, size_t steps,
                    size_t min_tensors, const LockstepTolerances& tolerances = {});

/// True when ExpectLockstep would report at least one failure (its failures intercepted).
bool LeavesLockstep(const LockstepRun& run, const LockstepReference& reference, size_t steps,
                    size_t min_tensors);

/// The method's parameter groups as the engine hands them to the optimizer
/// (ssl/train/pretrain.cc): the weight decay, or none where the group says so.
std::vector<optim::ParamGroup> EngineParamGroups(methods::Method& method, double weight_decay);

}  // namespace ssl::tools

#endif  // TOOLS_LOCKSTEP_TESTING_H_
