// MLP heads as MoCo v3's _build_mlp builds them: Linear (bias-free by default), then
// BN-ReLU after every hidden layer, and optionally a final BatchNorm1d without affine.
// Children are numbered like nn.Sequential ("0", "1", ...), so the keys match.
#ifndef SSL_NN_MLP_H_
#define SSL_NN_MLP_H_

#include <torch/arg.h>
#include <torch/nn/modules/container/sequential.h>

#include <cstdint>

namespace ssl::nn {

struct MlpOptions {
  TORCH_ARG(int, num_layers) = 2;
  TORCH_ARG(int64_t, input_dim) = 2048;
  TORCH_ARG(int64_t, hidden_dim) = 4096;
  TORCH_ARG(int64_t, output_dim) = 256;
  /// BatchNorm1d(affine=False) after the last Linear (SimCLR's design).
  TORCH_ARG(bool, last_bn) = true;
  /// Linear bias (MoCo v3: off; Momentum^2 Teacher's heads: on).
  TORCH_ARG(bool, bias) = false;
};

/// A Sequential with a concrete forward, so it can sit in an AnyModule (a backbone's
/// head slot).
class MlpImpl : public torch::nn::SequentialImpl {
 public:
  using SequentialImpl::SequentialImpl;
  at::Tensor forward(const at::Tensor& x) { return SequentialImpl::forward(x); }
};
TORCH_MODULE(Mlp);

/// Builds the head; num_layers >= 1.
Mlp BuildMlp(const MlpOptions& options);

}  // namespace ssl::nn

#endif  // SSL_NN_MLP_H_
