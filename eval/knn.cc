#include "eval/knn.h"

#include <ATen/ops/matmul.h>
#include <ATen/ops/topk.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>
#include <torch/nn/functional/normalization.h>

#include <algorithm>

namespace ssl::eval {

std::vector<KnnResult> KnnClassify(const FeatureSet& train, const FeatureSet& test,
                                   const std::vector<int>& ks, double temperature,
                                   int num_classes) {
  c10::AutoGradMode no_grad(false);
  namespace F = torch::nn::functional;
  const at::Tensor bank =
      F::normalize(train.features.to(at::kFloat), F::NormalizeFuncOptions().dim(1));
  const at::Tensor queries =
      F::normalize(test.features.to(at::kFloat), F::NormalizeFuncOptions().dim(1));
  const int64_t n_train = bank.size(0), n_test = queries.size(0);
  const int max_k =
      static_cast<int>(std::min<int64_t>(*std::max_element(ks.begin(), ks.end()), n_train));
  std::vector<int64_t> correct1(ks.size(), 0), correct5(ks.size(), 0);
  constexpr int64_t kChunk = 256;  // bounds the similarity matrix's memory
  for (int64_t start = 0; start < n_test; start += kChunk) {
    const int64_t rows = std::min(kChunk, n_test - start);
    const at::Tensor similarity = at::matmul(queries.narrow(0, start, rows), bank.t());
    const auto [top_similarity, top_index] = at::topk(similarity, max_k, 1);
    const at::Tensor neighbour_labels =
        train.labels.index_select(0, top_index.reshape(-1)).reshape({rows, max_k});
    const at::Tensor weights = top_similarity.div(temperature).exp();
    const at::Tensor truth = test.labels.narrow(0, start, rows);
    for (size_t i = 0; i < ks.size(); ++i) {
      const int k = std::min<int>(ks[i], max_k);
      at::Tensor votes = at::zeros({rows, num_classes}, at::kFloat);
      votes.scatter_add_(1, neighbour_labels.narrow(1, 0, k), weights.narrow(1, 0, k));
      const int top = std::min(5, num_classes);
      const at::Tensor predictions = std::get<1>(at::topk(votes, top, 1));
      const at::Tensor hits = predictions.eq(truth.unsqueeze(1));
      correct1[i] += hits.narrow(1, 0, 1).sum().item<int64_t>();
      correct5[i] += hits.sum().item<int64_t>();
    }
  }
  std::vector<KnnResult> results;
  for (size_t i = 0; i < ks.size(); ++i) {
    results.push_back({ks[i], 100.0 * correct1[i] / n_test, 100.0 * correct5[i] / n_test});
  }
  return results;
}

}  // namespace ssl::eval
