// The backbone interface and the registry that builds one by name.
#ifndef SSL_BACKBONES_BACKBONE_H_
#define SSL_BACKBONES_BACKBONE_H_

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ssl::backbones {

/// A trunk mapping images [N, 3, H, W] to features [N, feature_dim()] (or to logits
/// when built with a classifier). Parameter names follow the reference implementation
/// (torchvision for ResNets) so that state dicts map 1:1.
class Backbone : public torch::nn::Module {
 public:
  /// Features, passed through the head when one is set.
  virtual at::Tensor forward(const at::Tensor& images) = 0;
  /// Pooled features, never through the head.
  virtual at::Tensor Features(const at::Tensor& images) = 0;
  /// Replaces the classifier with `head` under the reference implementation's name
  /// ("fc" for ResNets), as MoCo v3 puts its projector there: keys read "fc.0.weight".
  virtual void SetHead(torch::nn::AnyModule head) = 0;
  /// Width of the pooled feature, before any classifier.
  virtual int64_t feature_dim() const = 0;
  /// The registry name it was built from, e.g. "resnet50w2".
  virtual std::string name() const = 0;
};

/// Options common to every backbone name.
struct BackboneOptions {
  bool cifar_stem = false;          ///< ResNet: 3x3 stride-1 first conv, no max-pool
  bool zero_init_residual = false;  ///< ResNet: last BN gamma of each block = 0
  int64_t num_classes = 0;          ///< > 0 adds the classifier (`fc` / `head`); 0 leaves it out
  int64_t image_size = 224;         ///< ViT: the input size its position table is built for
  double drop_path_rate = 0.0;      ///< ViT: stochastic depth of the last block
  bool stop_grad_conv1 = false;     ///< ViT: the patch projection stays at its random init
};

/// Builds a backbone by name: "resnet18", "resnet34", "resnet50", "resnet101",
/// "resnet152", each optionally widened with a "w<multiplier>" suffix (SwAV's
/// "resnet50w2", "resnet50w4", "resnet50w5"; also narrow ones for CPU experiments such
/// as "resnet18w0.25", as long as 64 * multiplier is a whole number); torchvision's
/// RegNetYs ("regnet_y_400mf" ... "regnet_y_128gf") and any RegNetY by its parameters
/// ("regnet_y_d27_w640_wa230.83_wm2.53_gw373", SwAV's RegNetY-256GF); Vision
/// Transformers "vit_tiny", "vit_small", "vit_base", "vit_large", optionally with a
/// "_patch<P>" suffix (see vit.h). InvalidArgument
/// lists the known names when `name` is not one of them.
absl::StatusOr<std::shared_ptr<Backbone>> CreateBackbone(const std::string& name,
                                                         const BackboneOptions& options = {});

/// The checks CreateBackbone makes, without building anything.
absl::Status ValidateBackbone(const std::string& name, const BackboneOptions& options);

/// The pooled feature width of `name` without building it (2048 for resnet50).
absl::StatusOr<int64_t> BackboneFeatureDim(const std::string& name);

/// The classifier's module name of an architecture: "head" for ViTs, "fc" otherwise
/// (torchvision's and timm's names).
std::string HeadName(const std::string& name);

/// Canonical names, for help texts.
std::vector<std::string> KnownBackboneNames();

}  // namespace ssl::backbones

#endif  // SSL_BACKBONES_BACKBONE_H_
