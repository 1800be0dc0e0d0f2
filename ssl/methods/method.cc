#include "ssl/methods/method.h"

#include <ATen/ops/exp.h>
#include <ATen/ops/log.h>
#include <ATen/ops/log_softmax.h>
#include <ATen/ops/std.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/GradMode.h>
#include <torch/nn/functional/normalization.h>

#include <cmath>

#include "absl/strings/str_cat.h"

namespace ssl::methods {

c10::impl::GenericDict NewStateDict() {
  return c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get());
}

c10::impl::GenericDict Method::ExtraState() { return NewStateDict(); }

absl::Status Method::LoadExtraState(const c10::impl::GenericDict& state) {
  if (state.size() != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the checkpoint holds ", state.size(), " extra state entries that ", name(),
                     " does not keep (first: ", state.begin()->key().toStringRef(), ")"));
  }
  return absl::OkStatus();
}

at::Tensor L2Normalize(const at::Tensor& x) {
  return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(1));
}

namespace {

// Per-row entropies (natural log) of rows that sum to 1; 0 log 0 counts as 0.
at::Tensor RowEntropies(const at::Tensor& probabilities) {
  const at::Tensor p = probabilities.to(at::kDouble);
  const at::Tensor logs = at::where(p > 0, at::log(p), at::zeros_like(p));
  return (p * logs).sum(1).neg();
}

}  // namespace

double EmbeddingSpread(const at::Tensor& embeddings) {
  c10::AutoGradMode no_grad(false);
  const at::Tensor rows = L2Normalize(embeddings.detach().to(at::kDouble));
  return rows.std(0, /*unbiased=*/false).mean().item<double>() * std::sqrt(rows.size(1));
}

double MeanRowPerplexity(const at::Tensor& probabilities) {
  c10::AutoGradMode no_grad(false);
  return std::exp(RowEntropies(probabilities.detach()).mean().item<double>());
}

double PerplexityOfMeanRow(const at::Tensor& probabilities) {
  c10::AutoGradMode no_grad(false);
  return std::exp(RowEntropies(probabilities.detach().mean(0, true)).item<double>());
}

double MeanSoftmaxEntropy(const at::Tensor& logits) {
  c10::AutoGradMode no_grad(false);
  const at::Tensor log_p = at::log_softmax(logits.detach().to(at::kDouble), 1);
  return (log_p.exp() * log_p).sum(1).neg().mean().item<double>();
}

}  // namespace ssl::methods
