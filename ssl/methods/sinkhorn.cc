#include "ssl/methods/sinkhorn.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/full.h>
#include <ATen/ops/isinf.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/GradMode.h>

namespace ssl::methods {
namespace {

// The maximum over every process (all-gathered, then reduced locally).
at::Tensor GlobalMax(const at::Tensor& x, distributed::Communicator& communicator) {
  const at::Tensor local = x.max().reshape({1});
  return communicator.world_size() == 1 ? local[0] : communicator.AllGather(local).max();
}

// Entries that are +-inf become the largest finite entry (VISSL zeroes them, takes the
// max, and writes it back).
at::Tensor ReplaceInfinities(const at::Tensor& x) {
  const at::Tensor infinite = at::isinf(x);
  if (!infinite.any().item<bool>()) return x;
  const at::Tensor finite_max = at::where(infinite, at::zeros_like(x), x).max();
  return at::where(infinite, finite_max, x);
}

}  // namespace

at::Tensor DistributedSinkhorn(const at::Tensor& scores, const SinkhornOptions& options,
                               distributed::Communicator& communicator) {
  c10::AutoGradMode no_grad(false);
  const at::ScalarType dtype = options.double_precision ? at::kDouble : at::kFloat;
  at::Tensor logits = scores.detach().to(dtype) / options.epsilon;
  logits = logits - GlobalMax(logits, communicator);
  at::Tensor q = ReplaceInfinities(logits.exp().t().contiguous());  // K x n
  at::Tensor total = q.sum().reshape({1});
  communicator.AllReduceSum(total);
  q.div_(total);
  const int64_t k = q.size(0);
  const double global_columns = static_cast<double>(q.size(1)) * communicator.world_size();
  for (int iter = 0; iter < options.num_iters; ++iter) {
    at::Tensor row_sums = q.sum(1);
    communicator.AllReduceSum(row_sums);
    if ((row_sums == 0).any().item<bool>()) {
      q.add_(1e-12);
      row_sums = q.sum(1);
      communicator.AllReduceSum(row_sums);
    }
    // Rows to 1/K, then columns to 1/B_global.
    const at::Tensor row_scale = ReplaceInfinities(row_sums.reciprocal().div_(k));
    q.mul_(row_scale.unsqueeze(1));
    q.mul_(q.sum(0).reciprocal().div_(global_columns).unsqueeze(0));
  }
  // In the scores' precision (float32 as VISSL returns them; float64 for float64 models).
  at::Tensor codes = q.div(q.sum(0, /*keepdim=*/true)).t().to(scores.scalar_type()).contiguous();
  if (options.hard_assignment) {
    const at::Tensor best = codes.argmax(1, /*keepdim=*/true);
    codes = at::zeros_like(codes).scatter_(1, best, 1.0);
  }
  return codes;
}

}  // namespace ssl::methods
