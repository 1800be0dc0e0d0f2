#include "ssl/backbones/resnet.h"

#include <ATen/ops/relu.h>
#include <torch/nn/init.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "ssl/core/logging.h"
#include "ssl/nn/max_pool.h"
#include "ssl/nn/winograd_conv.h"

namespace ssl::backbones {
namespace {

namespace nn = torch::nn;

nn::Conv2d Conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).bias(false));
}

nn::Sequential MaybeDownsample(int64_t in, int64_t out, int64_t stride) {
  if (stride == 1 && in == out) return nullptr;
  return nn::Sequential(Conv(in, out, 1, stride, 0), ssl::nn::BatchNorm2d(out));
}

template <typename Block>
nn::Sequential MakeStage(int64_t& in_channels, int64_t planes, int blocks, int64_t stride) {
  nn::Sequential stage;
  for (int i = 0; i < blocks; ++i) {
    stage->push_back(Block(in_channels, planes, i == 0 ? stride : 1));
    in_channels = planes * Block::Impl::kExpansion;
  }
  return stage;
}

const int kStageBlocks[][4] = {
    {2, 2, 2, 2}, {3, 4, 6, 3}, {3, 4, 6, 3}, {3, 4, 23, 3}, {3, 8, 36, 3}};

int DepthIndex(int depth) {
  switch (depth) {
    case 18:
      return 0;
    case 34:
      return 1;
    case 50:
      return 2;
    case 101:
      return 3;
    case 152:
      return 4;
  }
  LOG(FATAL) << "ResNet depth must be 18, 34, 50, 101 or 152, got " << depth;
}

}  // namespace

BasicBlockImpl::BasicBlockImpl(int64_t in_channels, int64_t planes, int64_t stride) {
  conv1 = register_module("conv1", Conv(in_channels, planes, 3, stride, 1));
  bn1 = register_module("bn1", ssl::nn::BatchNorm2d(planes));
  conv2 = register_module("conv2", Conv(planes, planes, 3, 1, 1));
  bn2 = register_module("bn2", ssl::nn::BatchNorm2d(planes));
  if (auto shortcut = MaybeDownsample(in_channels, planes * kExpansion, stride)) {
    downsample = register_module("downsample", shortcut);
  }
}

at::Tensor BasicBlockImpl::forward(const at::Tensor& x) {
  at::Tensor out = at::relu(bn1(ssl::nn::Conv2dForward(*conv1, x)));
  out = bn2(ssl::nn::Conv2dForward(*conv2, out));
  out += downsample ? downsample->forward(x) : x;
  return at::relu_(out);
}

BottleneckImpl::BottleneckImpl(int64_t in_channels, int64_t planes, int64_t stride) {
  conv1 = register_module("conv1", Conv(in_channels, planes, 1, 1, 0));
  bn1 = register_module("bn1", ssl::nn::BatchNorm2d(planes));
  conv2 = register_module("conv2", Conv(planes, planes, 3, stride, 1));
  bn2 = register_module("bn2", ssl::nn::BatchNorm2d(planes));
  conv3 = register_module("conv3", Conv(planes, planes * kExpansion, 1, 1, 0));
  bn3 = register_module("bn3", ssl::nn::BatchNorm2d(planes * kExpansion));
  if (auto shortcut = MaybeDownsample(in_channels, planes * kExpansion, stride)) {
    downsample = register_module("downsample", shortcut);
  }
}

at::Tensor BottleneckImpl::forward(const at::Tensor& x) {
  at::Tensor out = at::relu(bn1(conv1(x)));
  out = at::relu(bn2(ssl::nn::Conv2dForward(*conv2, out)));
  out = bn3(conv3(out));
  out += downsample ? downsample->forward(x) : x;
  return at::relu_(out);
}

ResNetImpl::ResNetImpl(const ResNetOptions& options) : options_(options) {
  const int depth_index = DepthIndex(options.depth());
  const double base = 64 * options.width_multiplier();
  CHECK(base >= 1 && std::abs(base - std::round(base)) < 1e-9)
      << "64 * width multiplier must be a positive whole number, got " << base;
  const int64_t width = std::llround(base);
  const bool bottleneck = options.depth() >= 50;
  conv1 = register_module("conv1",
                          options.cifar_stem() ? Conv(3, width, 3, 1, 1) : Conv(3, width, 7, 2, 3));
  bn1 = register_module("bn1", ssl::nn::BatchNorm2d(width));
  int64_t channels = width;
  nn::Sequential* stages[] = {&layer1, &layer2, &layer3, &layer4};
  for (int s = 0; s < 4; ++s) {
    const int64_t planes = width << s;
    const int blocks = kStageBlocks[depth_index][s];
    const int64_t stride = s == 0 ? 1 : 2;
    *stages[s] =
        register_module(absl::StrCat("layer", s + 1),
                        bottleneck ? MakeStage<Bottleneck>(channels, planes, blocks, stride)
                                   : MakeStage<BasicBlock>(channels, planes, blocks, stride));
  }
  feature_dim_ = channels;
  if (options.num_classes() > 0) {
    fc = register_module("fc", nn::Linear(feature_dim_, options.num_classes()));
    head_ = nn::AnyModule(fc);
  }
  // torchvision's init: He-normal (fan_out) convs, BN gamma 1 / beta 0; Linear keeps
  // PyTorch's default.
  for (const auto& module : modules(/*include_self=*/false)) {
    if (auto* conv = module->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
    } else if (auto* bn = module->as<ssl::nn::BatchNorm>()) {
      nn::init::ones_(bn->weight);
      nn::init::zeros_(bn->bias);
    }
  }
  if (options.zero_init_residual()) {
    for (const auto& module : modules(false)) {
      if (auto* block = module->as<Bottleneck>()) nn::init::zeros_(block->bn3->weight);
      if (auto* block = module->as<BasicBlock>()) nn::init::zeros_(block->bn2->weight);
    }
  }
}

std::string ResNetImpl::name() const {
  std::string name = absl::StrCat("resnet", options_.depth());
  if (options_.width_multiplier() != 1.0) absl::StrAppend(&name, "w", options_.width_multiplier());
  return name;
}

at::Tensor ResNetImpl::Features(const at::Tensor& images) {
  at::Tensor x = bn1(conv1(images));
  at::relu_(x);
  if (!options_.cifar_stem()) x = ssl::nn::MaxPool2d(x, 3, 2, 1);
  x = layer4->forward(layer3->forward(layer2->forward(layer1->forward(x))));
  return x.mean({2, 3});  // adaptive average pool to 1x1, flattened
}

at::Tensor ResNetImpl::forward(const at::Tensor& images) {
  at::Tensor features = Features(images);
  return head_.is_empty() ? features : head_.forward(features);
}

void ResNetImpl::SetHead(torch::nn::AnyModule head) {
  if (named_children().contains("fc")) {
    replace_module("fc", head.ptr());
  } else {
    register_module("fc", head.ptr());
  }
  head_ = std::move(head);
  fc = nullptr;
}

}  // namespace ssl::backbones
