#include "ssl/nn/mlp.h"

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/linear.h>

#include "ssl/core/logging.h"
#include "ssl/nn/batch_norm.h"

namespace ssl::nn {

Mlp BuildMlp(const MlpOptions& options) {
  CHECK_GE(options.num_layers(), 1);
  Mlp mlp;
  for (int layer = 0; layer < options.num_layers(); ++layer) {
    const int64_t in = layer == 0 ? options.input_dim() : options.hidden_dim();
    const bool last = layer == options.num_layers() - 1;
    const int64_t out = last ? options.output_dim() : options.hidden_dim();
    mlp->push_back(torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(options.bias())));
    if (!last) {
      mlp->push_back(BatchNorm1d(out));
      mlp->push_back(torch::nn::ReLU(torch::nn::ReLUOptions().inplace(true)));
    } else if (options.last_bn()) {
      mlp->push_back(BatchNorm1d(torch::nn::BatchNorm1dOptions(out).affine(false)));
    }
  }
  return mlp;
}

}  // namespace ssl::nn
