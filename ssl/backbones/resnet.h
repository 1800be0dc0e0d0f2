// ResNet-18/34/50/101/152 with torchvision's parameter and buffer names (conv1.weight,
// layer1.0.bn1.running_mean, layer2.0.downsample.0.weight, fc.weight, ...), ResNet v1.5
// (stride on the 3x3 conv), SwAV's width multiplier and an optional CIFAR stem.
#ifndef SSL_BACKBONES_RESNET_H_
#define SSL_BACKBONES_RESNET_H_

#include <torch/arg.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <string>

#include "ssl/backbones/backbone.h"
#include "ssl/nn/batch_norm.h"

namespace ssl::backbones {

struct ResNetOptions {
  /// 18, 34 (basic blocks) or 50, 101, 152 (bottlenecks).
  TORCH_ARG(int, depth) = 50;
  /// Scales every width: stem 64 * w, stages 64 * w * {1, 2, 4, 8} (SwAV's widen).
  TORCH_ARG(double, width_multiplier) = 1.0;
  /// 3x3 stride-1 stem without max-pool, for 32x32 inputs.
  TORCH_ARG(bool, cifar_stem) = false;
  /// Zero gamma of each block's last BN, so every block starts as the identity.
  TORCH_ARG(bool, zero_init_residual) = false;
  /// > 0: a final Linear `fc`; 0: forward returns pooled features.
  TORCH_ARG(int64_t, num_classes) = 0;
};

/// conv-bn-relu-conv-bn (+ shortcut), expansion 1.
class BasicBlockImpl : public torch::nn::Module {
 public:
  BasicBlockImpl(int64_t in_channels, int64_t planes, int64_t stride);
  at::Tensor forward(const at::Tensor& x);
  static constexpr int64_t kExpansion = 1;

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  ssl::nn::BatchNorm bn1{nullptr}, bn2{nullptr};
  torch::nn::Sequential downsample{nullptr};  ///< 1x1 conv + BN when shape changes
};
TORCH_MODULE(BasicBlock);

/// 1x1 reduce, 3x3 (strided), 1x1 expand (+ shortcut), expansion 4.
class BottleneckImpl : public torch::nn::Module {
 public:
  BottleneckImpl(int64_t in_channels, int64_t planes, int64_t stride);
  at::Tensor forward(const at::Tensor& x);
  static constexpr int64_t kExpansion = 4;

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  ssl::nn::BatchNorm bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(Bottleneck);

class ResNetImpl : public Backbone {
 public:
  explicit ResNetImpl(const ResNetOptions& options);
  at::Tensor forward(const at::Tensor& images) override;
  int64_t feature_dim() const override { return feature_dim_; }
  std::string name() const override;
  at::Tensor Features(const at::Tensor& images) override;
  void SetHead(torch::nn::AnyModule head) override;
  const ResNetOptions& options() const { return options_; }

  torch::nn::Conv2d conv1{nullptr};
  ssl::nn::BatchNorm bn1{nullptr};
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};
  torch::nn::Linear fc{nullptr};  ///< the classifier when built with num_classes > 0

 private:
  torch::nn::AnyModule head_;  ///< what forward() applies after pooling, if anything
  ResNetOptions options_;
  int64_t feature_dim_ = 0;
};
TORCH_MODULE(ResNet);

}  // namespace ssl::backbones

#endif  // SSL_BACKBONES_RESNET_H_
