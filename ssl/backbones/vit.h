// Vision Transformers as MoCo v3's vits.py builds them on timm's VisionTransformer:
// patch embedding, class token, a fixed 2-D sin-cos position table (a parameter that
// never trains), pre-norm blocks with drop path, LayerNorm eps 1e-6, and the original's
// initialization. Module names are timm's (patch_embed.proj, cls_token, pos_embed,
// blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}, norm, head), so DeiT, timm
// and moco-v3's checkpoints map 1:1.
#ifndef SSL_BACKBONES_VIT_H_
#define SSL_BACKBONES_VIT_H_

#include <torch/arg.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <cstdint>
#include <optional>
#include <string>

#include "ssl/backbones/backbone.h"

namespace ssl::backbones {

struct VisionTransformerOptions {
  TORCH_ARG(int64_t, image_size) = 224;
  TORCH_ARG(int64_t, patch_size) = 16;
  TORCH_ARG(int64_t, embed_dim) = 384;
  TORCH_ARG(int64_t, depth) = 12;
  TORCH_ARG(int64_t, num_heads) = 12;
  TORCH_ARG(double, mlp_ratio) = 4.0;
  /// Stochastic depth: block i drops its residual branches with rate i / (depth - 1)
  /// times this (timm's linspace), only in training.
  TORCH_ARG(double, drop_path_rate) = 0.0;
  /// MoCo v3's --stop-grad-conv1: the patch projection keeps its random init.
  TORCH_ARG(bool, stop_grad_conv1) = false;
  /// > 0 adds the classifier `head`.
  TORCH_ARG(int64_t, num_classes) = 0;
  /// The registry name, for name() and checkpoints.
  TORCH_ARG(std::string, name) = "vit_small";
};

/// Sizes of a registry name: "vit_tiny" (192 wide, 3 heads), "vit_small" (384, 12 heads
/// as moco-v3 has it, not DeiT's 6), "vit_base" (768, 12), "vit_large" (1024, 24 blocks,
/// 16 heads), each patch 16 unless suffixed "_patch<P>" (e.g. "vit_tiny_patch8" for
/// small images). nullopt for any other name.
std::optional<VisionTransformerOptions> VisionTransformerOptionsByName(const std::string& name);

/// moco-v3's fixed table [1 + h*w, dim]: a zero row for the class token, then per patch
/// token m the four blocks [sin(a*u), cos(a*u), sin(a*v), cos(a*v)], a_i = 10000^(-i/(dim/4)),
/// where (u, v) = (m / h, m % h) as its 'ij' meshgrid of (grid_w, grid_h) flattens them
/// (u is the row for square grids). dim must be a multiple of 4.
at::Tensor SinCosPositionTable(int64_t grid_h, int64_t grid_w, int64_t dim);

/// timm's DropPath: in training, each sample's `x` is zeroed with probability `rate` and
/// scaled by 1 / (1 - rate) otherwise; the identity in eval or at rate 0.
at::Tensor DropPath(const at::Tensor& x, double rate, bool training);

class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(int64_t dim, int64_t num_heads);
  at::Tensor forward(const at::Tensor& x);

  torch::nn::Linear qkv{nullptr}, proj{nullptr};

 private:
  int64_t num_heads_;
  double scale_;
};
TORCH_MODULE(Attention);

class TransformerMlpImpl : public torch::nn::Module {
 public:
  TransformerMlpImpl(int64_t dim, int64_t hidden_dim);
  at::Tensor forward(const at::Tensor& x);

  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(TransformerMlp);

class TransformerBlockImpl : public torch::nn::Module {
 public:
  TransformerBlockImpl(int64_t dim, int64_t num_heads, double mlp_ratio, double drop_path_rate);
  at::Tensor forward(const at::Tensor& x);

  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  Attention attn{nullptr};
  TransformerMlp mlp{nullptr};
  double drop_path_rate;
};
TORCH_MODULE(TransformerBlock);

class PatchEmbedImpl : public torch::nn::Module {
 public:
  PatchEmbedImpl(int64_t patch_size, int64_t dim);
  /// [N, 3, H, W] -> [N, (H/P)*(W/P), dim], patches in row-major order.
  at::Tensor forward(const at::Tensor& images);

  torch::nn::Conv2d proj{nullptr};
};
TORCH_MODULE(PatchEmbed);

class VisionTransformerImpl : public Backbone {
 public:
  explicit VisionTransformerImpl(const VisionTransformerOptions& options);
  at::Tensor forward(const at::Tensor& images) override;
  /// The class token after the final norm (what linear probing and DeiT classify).
  at::Tensor Features(const at::Tensor& images) override;
  void SetHead(torch::nn::AnyModule head) override;
  int64_t feature_dim() const override { return options_.embed_dim(); }
  std::string name() const override { return options_.name(); }
  const VisionTransformerOptions& options() const { return options_; }

  PatchEmbed patch_embed{nullptr};
  at::Tensor cls_token, pos_embed;
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::Linear head{nullptr};  ///< the classifier when built with num_classes > 0

 private:
  torch::nn::AnyModule head_;
  VisionTransformerOptions options_;
};
TORCH_MODULE(VisionTransformer);

}  // namespace ssl::backbones

#endif  // SSL_BACKBONES_VIT_H_
