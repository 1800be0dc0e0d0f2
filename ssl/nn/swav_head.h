// SwAV's head exactly as VISSL's swav_head builds it: a projection MLP over `dims`
// (Linear with bias, then BatchNorm1d and ReLU after every layer but the last unless
// use_bn is off), L2 normalization of the embedding, and one or several bias-free
// prototype layers "prototypes0", "prototypes1", ... scoring it.
#ifndef SSL_NN_SWAV_HEAD_H_
#define SSL_NN_SWAV_HEAD_H_

#include <torch/arg.h>
#include <torch/nn/modules/linear.h>

#include <cstdint>
#include <vector>

#include "ssl/nn/chain.h"

namespace ssl::nn {

struct SwavHeadOptions {
  /// Widths: dims[0] is the trunk's feature width, dims.back() the embedding width;
  /// [2048, 2048, 128] is Linear(2048, 2048)-BN-ReLU-Linear(2048, 128).
  TORCH_ARG(std::vector<int64_t>, dims) = std::vector<int64_t>{2048, 2048, 128};
  TORCH_ARG(bool, use_bn) = true;
  TORCH_ARG(bool, use_bias) = true;
  /// One prototype layer per entry, e.g. {3000}; empty: embeddings only.
  TORCH_ARG(std::vector<int64_t>, num_clusters) = std::vector<int64_t>{3000};
  TORCH_ARG(double, bn_eps) = 1e-5;      ///< MODEL.HEAD.BATCHNORM_EPS
  TORCH_ARG(double, bn_momentum) = 0.1;  ///< MODEL.HEAD.BATCHNORM_MOMENTUM
  TORCH_ARG(bool, normalize_feats) = true;
};

struct SwavHeadOutput {
  at::Tensor embedding;            ///< [N, dims.back()], L2-normalized
  std::vector<at::Tensor> scores;  ///< per prototype layer, [N, K]
};

class SwavHeadImpl : public torch::nn::Module {
 public:
  explicit SwavHeadImpl(const SwavHeadOptions& options);
  SwavHeadOutput forward(const at::Tensor& features);
  /// L2-normalizes every prototype row in place, without gradient.
  void NormalizePrototypes();
  const SwavHeadOptions& options() const { return options_; }

  Chain projection_head{nullptr};
  std::vector<torch::nn::Linear> prototypes;

 private:
  SwavHeadOptions options_;
};
TORCH_MODULE(SwavHead);

}  // namespace ssl::nn

#endif  // SSL_NN_SWAV_HEAD_H_
