// A Sequential with a concrete Tensor -> Tensor forward, so that sequences can nest
// (LibTorch's AnyModule cannot hold a plain Sequential) while their children keep
// nn.Sequential's names ("0", "1", ... or the names given).
#ifndef SSL_NN_CHAIN_H_
#define SSL_NN_CHAIN_H_

#include <torch/nn/modules/container/sequential.h>

namespace ssl::nn {

class ChainImpl : public torch::nn::SequentialImpl {
 public:
  using SequentialImpl::SequentialImpl;
  at::Tensor forward(const at::Tensor& x) { return SequentialImpl::forward(x); }
};
TORCH_MODULE(Chain);

}  // namespace ssl::nn

#endif  // SSL_NN_CHAIN_H_
