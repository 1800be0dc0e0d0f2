#include "ssl/methods/sinkhorn.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/full.h>
#include <ATen/ops/isinf.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/GradMode.h>

#include "ssl/core/device.h"

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
                               distributed::Communicator& communicator, int64_t rows_needed) {
  c10::AutoGradMode no_grad(false);
  // fp32 (or fp64) whatever autocast is doing outside, as VISSL keeps it.
  AutocastDisabled full_precision;
  const at::ScalarType dtype = options.double_precision ? at::kDouble : at::kFloat;
  // Q is kept as Q^T, [n, K] (the scores' layout): VISSL's row sums (per prototype) are
  // sums over dim 0 here and its column sums (per sample) over dim 1, which saves
  // transposing n x K twice. After the max subtraction every entry is in [0, 1], so no
  // infinity can appear in Q itself.
  const at::Tensor logits = scores.detach().to(dtype);
  at::Tensor q = logits.sub(GlobalMax(logits, communicator)).div_(options.epsilon).exp_();
  at::Tensor total = q.sum().reshape({1});
  communicator.AllReduceSum(total);
  q.div_(total);
  const int64_t k = q.size(1);
  const double global_columns = static_cast<double>(q.size(0)) * communicator.world_size();
  for (int iter = 0; iter < options.num_iters; ++iter) {
    at::Tensor prototype_sums = q.sum(0);
    communicator.AllReduceSum(prototype_sums);
    if ((prototype_sums == 0).any().item<bool>()) {
      q.add_(1e-12);
      prototype_sums = q.sum(0);
      communicator.AllReduceSum(prototype_sums);
    }
    // Prototypes to 1/K, then samples to 1/B_global.
    q.mul_(ReplaceInfinities(prototype_sums.reciprocal().div_(k)).unsqueeze(0));
    q.mul_(q.sum(1).reciprocal().div_(global_columns).unsqueeze(1));
  }
  // Only the first rows (this batch, not the queue) become codes: each sums to 1, in
  // the scores' precision (float32 as VISSL returns them; float64 for float64 models;
  // float32 for the half-precision scores of mixed precision).
  const int64_t rows = rows_needed < 0 ? q.size(0) : std::min(rows_needed, q.size(0));
  at::Tensor codes = q.narrow(0, 0, rows);
  const at::ScalarType codes_type =
      IsHalfPrecision(scores.scalar_type()) ? at::kFloat : scores.scalar_type();
  codes = codes.div(codes.sum(1, /*keepdim=*/true)).to(codes_type);
  if (options.hard_assignment) {
    const at::Tensor best = codes.argmax(1, /*keepdim=*/true);
    codes = at::zeros_like(codes).scatter_(1, best, 1.0);
  }
  return codes;
}

}  // namespace ssl::methods
