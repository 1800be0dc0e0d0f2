// Sinkhorn-Knopp equipartition of prototype scores over all processes, as VISSL's
// distributed_sinkhornknopp computes SwAV's codes: Q = exp(scores / epsilon)^T
// (K x B_global), made doubly stochastic by alternately normalizing its rows (sums
// all-reduced over processes) to 1/K and its columns to 1/B_global, then scaled so
// that every column sums to 1.
#ifndef SSL_METHODS_SINKHORN_H_
#define SSL_METHODS_SINKHORN_H_

#include <ATen/core/Tensor.h>

#include "ssl/distributed/communicator.h"

namespace ssl::methods {

struct SinkhornOptions {
  int num_iters = 3;
  double epsilon = 0.05;
  /// Computes in float64 (VISSL's use_double_precision); the result has the scores'
  /// type (float32 in training, as VISSL's).
  bool double_precision = false;
  /// One-hot codes (the argmax of each row), VISSL's temp_hard_assignment_iters.
  bool hard_assignment = false;
};

/// `scores`: this process's [n, K] scores (n rows, the same n on every process).
/// Returns the codes of its first `rows_needed` rows (all when negative), each summing
/// to 1, computed from the scores of every process. The maximum score (all-reduced) is
/// subtracted before the exponential, so large scores / small epsilons do not
/// overflow; a prototype that receives no mass gets VISSL's 1e-12 floor.
at::Tensor DistributedSinkhorn(const at::Tensor& scores, const SinkhornOptions& options,
                               distributed::Communicator& communicator,
                               int64_t rows_needed = -1);

}  // namespace ssl::methods

#endif  // SSL_METHODS_SINKHORN_H_
