#include "ssl/backbones/vit.h"

#include <ATen/ops/arange.h>
#include <ATen/ops/bernoulli.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/gelu.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/outer.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>
#include <torch/nn/init.h>

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "ssl/core/logging.h"

namespace ssl::backbones {
namespace nn = torch::nn;

std::optional<VisionTransformerOptions> VisionTransformerOptionsByName(const std::string& name) {
  struct Size {
    const char* name;
    int64_t dim, depth, heads;
  };
  static const Size kSizes[] = {{"vit_tiny", 192, 12, 3},
                                {"vit_small", 384, 12, 12},
                                {"vit_base", 768, 12, 12},
                                {"vit_large", 1024, 24, 16}};
  for (const Size& size : kSizes) {
    const std::string base = size.name;
    if (name.rfind(base, 0) != 0) continue;
    int64_t patch = 16;
    const std::string rest = name.substr(base.size());
    if (!rest.empty()) {
      if (rest.rfind("_patch", 0) != 0 || !absl::SimpleAtoi(rest.substr(6), &patch) ||
          patch < 1) {
        continue;
      }
    }
    return VisionTransformerOptions()
        .name(name)
        .embed_dim(size.dim)
        .depth(size.depth)
        .num_heads(size.heads)
        .patch_size(patch);
  }
  return std::nullopt;
}

at::Tensor SinCosPositionTable(int64_t grid_h, int64_t grid_w, int64_t dim) {
  CHECK_EQ(dim % 4, 0) << "the sin-cos position table needs a width divisible by 4";
  const int64_t quarter = dim / 4;
  const at::Tensor omega =
      at::pow(10000.0, at::arange(quarter, at::kFloat).div(static_cast<double>(quarter)))
          .reciprocal();
  const at::Tensor token = at::arange(grid_h * grid_w, at::kLong);
  const at::Tensor u = at::outer(token.div(grid_h, "floor").to(at::kFloat), omega);
  const at::Tensor v = at::outer(token.remainder(grid_h).to(at::kFloat), omega);
  const at::Tensor patches = at::cat({u.sin(), u.cos(), v.sin(), v.cos()}, 1);
  return at::cat({at::zeros({1, dim}, at::kFloat), patches}, 0);
}

at::Tensor DropPath(const at::Tensor& x, double rate, bool training) {
  if (!training || rate == 0.0) return x;
  const double keep = 1.0 - rate;
  std::vector<int64_t> shape(x.dim(), 1);
  shape[0] = x.size(0);
  const at::Tensor mask = at::empty(shape, x.options()).bernoulli_(keep);
  return x.div(keep).mul(mask);
}

AttentionImpl::AttentionImpl(int64_t dim, int64_t num_heads)
    : num_heads_(num_heads), scale_(1.0 / std::sqrt(static_cast<double>(dim / num_heads))) {
  CHECK_EQ(dim % num_heads, 0) << "width " << dim << " is not divisible by " << num_heads
                               << " heads";
  qkv = register_module("qkv", nn::Linear(nn::LinearOptions(dim, 3 * dim).bias(true)));
  proj = register_module("proj", nn::Linear(dim, dim));
}

at::Tensor AttentionImpl::forward(const at::Tensor& x) {
  const int64_t batch = x.size(0), tokens = x.size(1), dim = x.size(2);
  // [3, batch, heads, tokens, head_dim]
  const at::Tensor qkv_heads =
      qkv(x).reshape({batch, tokens, 3, num_heads_, dim / num_heads_}).permute({2, 0, 3, 1, 4});
  const at::Tensor q = qkv_heads[0], k = qkv_heads[1], v = qkv_heads[2];
  const at::Tensor attention = at::matmul(q, k.transpose(-2, -1)).mul_(scale_).softmax(-1);
  return proj(at::matmul(attention, v).transpose(1, 2).reshape({batch, tokens, dim}));
}

TransformerMlpImpl::TransformerMlpImpl(int64_t dim, int64_t hidden_dim) {
  fc1 = register_module("fc1", nn::Linear(dim, hidden_dim));
  fc2 = register_module("fc2", nn::Linear(hidden_dim, dim));
}

at::Tensor TransformerMlpImpl::forward(const at::Tensor& x) { return fc2(at::gelu(fc1(x))); }

TransformerBlockImpl::TransformerBlockImpl(int64_t dim, int64_t num_heads, double mlp_ratio,
                                           double drop_path_rate)
    : drop_path_rate(drop_path_rate) {
  const auto layer_norm = [dim] { return nn::LayerNorm(nn::LayerNormOptions({dim}).eps(1e-6)); };
  norm1 = register_module("norm1", layer_norm());
  attn = register_module("attn", Attention(dim, num_heads));
  norm2 = register_module("norm2", layer_norm());
  mlp = register_module("mlp",
                        TransformerMlp(dim, static_cast<int64_t>(std::llround(dim * mlp_ratio))));
}

at::Tensor TransformerBlockImpl::forward(const at::Tensor& x) {
  at::Tensor out = x + DropPath(attn(norm1(x)), drop_path_rate, is_training());
  return out + DropPath(mlp(norm2(out)), drop_path_rate, is_training());
}

PatchEmbedImpl::PatchEmbedImpl(int64_t patch_size, int64_t dim) {
  proj = register_module("proj", nn::Conv2d(nn::Conv2dOptions(3, dim, patch_size)
                                                .stride(patch_size)
                                                .bias(true)));
}

at::Tensor PatchEmbedImpl::forward(const at::Tensor& images) {
  return proj(images).flatten(2).transpose(1, 2);
}

VisionTransformerImpl::VisionTransformerImpl(const VisionTransformerOptions& options)
    : options_(options) {
  const int64_t dim = options.embed_dim(), patch = options.patch_size();
  CHECK(options.image_size() % patch == 0)
      << "image size " << options.image_size() << " is not a multiple of the patch size " << patch;
  const int64_t grid = options.image_size() / patch;
  patch_embed = register_module("patch_embed", PatchEmbed(patch, dim));
  cls_token = register_parameter("cls_token", at::zeros({1, 1, dim}));
  pos_embed = register_parameter("pos_embed", SinCosPositionTable(grid, grid, dim).unsqueeze(0),
                                 /*requires_grad=*/false);
  blocks = register_module("blocks", nn::ModuleList());
  for (int64_t i = 0; i < options.depth(); ++i) {
    const double rate = options.depth() > 1 ? options.drop_path_rate() * static_cast<double>(i) /
                                                  static_cast<double>(options.depth() - 1)
                                            : 0.0;
    blocks->push_back(TransformerBlock(dim, options.num_heads(), options.mlp_ratio(), rate));
  }
  norm = register_module("norm", nn::LayerNorm(nn::LayerNormOptions({dim}).eps(1e-6)));
  if (options.num_classes() > 0) {
    head = register_module("head", nn::Linear(dim, options.num_classes()));
    head_ = nn::AnyModule(head);
  }
  // vits.py's init: Xavier-uniform Linear weights with the qkv bound computed as if q, k
  // and v were separate dim x dim matrices, zero biases, class token N(0, 1e-6), the
  // patch projection Xavier over fan-in 3*P*P and fan-out dim.
  c10::AutoGradMode no_grad(false);
  for (const auto& item : named_modules("", /*include_self=*/false)) {
    if (auto* linear = item.value()->as<nn::Linear>()) {
      if (item.key().find("qkv") != std::string::npos) {
        const double bound =
            std::sqrt(6.0 / static_cast<double>(linear->weight.size(0) / 3 + linear->weight.size(1)));
        linear->weight.uniform_(-bound, bound);
      } else {
        nn::init::xavier_uniform_(linear->weight);
      }
      if (linear->bias.defined()) linear->bias.zero_();
    }
  }
  cls_token.normal_(0.0, 1e-6);
  const double bound = std::sqrt(6.0 / static_cast<double>(3 * patch * patch + dim));
  patch_embed->proj->weight.uniform_(-bound, bound);
  patch_embed->proj->bias.zero_();
  if (options.stop_grad_conv1()) {
    patch_embed->proj->weight.set_requires_grad(false);
    patch_embed->proj->bias.set_requires_grad(false);
  }
}

at::Tensor VisionTransformerImpl::Features(const at::Tensor& images) {
  at::Tensor x = patch_embed(images);
  TORCH_CHECK(x.size(1) + 1 == pos_embed.size(1), name(), " was built for ",
              options_.image_size(), " px images, got ", images.size(2), "x", images.size(3));
  x = at::cat({cls_token.expand({x.size(0), -1, -1}), x}, 1) + pos_embed;
  for (const auto& block : *blocks) x = block->as<TransformerBlock>()->forward(x);
  return norm(x).select(1, 0);
}

at::Tensor VisionTransformerImpl::forward(const at::Tensor& images) {
  at::Tensor features = Features(images);
  return head_.is_empty() ? features : head_.forward(features);
}

void VisionTransformerImpl::SetHead(torch::nn::AnyModule new_head) {
  if (named_children().contains("head")) {
    replace_module("head", new_head.ptr());
  } else {
    register_module("head", new_head.ptr());
  }
  head_ = std::move(new_head);
  head = nullptr;
}

}  // namespace ssl::backbones
