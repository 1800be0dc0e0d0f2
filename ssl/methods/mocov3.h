// MoCo v3 (Chen, Xie, He 2021), as moco-v3's builder.py: a base encoder (backbone +
// projector), a momentum encoder (a copy of backbone + projector, not the predictor)
// updated by EMA before the keys are computed, a predictor on the base branch only, and
// the symmetrized InfoNCE loss over keys gathered from all processes, scaled by 2T.
// ResNets (MoCo_ResNet): projector 2 layers with last BN, predictor 2 layers without,
// zero-init residuals. ViTs (MoCo_ViT): projector 3 layers, predictor 2 layers, both
// with last BN, the head slot "head" instead of "fc".
#ifndef SSL_METHODS_MOCOV3_H_
#define SSL_METHODS_MOCOV3_H_

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "ssl/backbones/backbone.h"
#include "ssl/distributed/communicator.h"
#include "ssl/methods/method.h"
#include "ssl/nn/mlp.h"

namespace ssl::methods {

struct MocoV3Options {
  std::string arch = "resnet50";
  bool cifar_stem = false;
  int64_t dim = 256;             ///< output of projector and predictor (--moco-dim)
  int64_t mlp_dim = 4096;        ///< hidden width of both MLPs (--moco-mlp-dim)
  double temperature = 1.0;      ///< --moco-t: 1.0 for ResNets, 0.2 for ViTs
  double momentum = 0.99;        ///< --moco-m: the EMA momentum (its start value with cosine)
  bool momentum_cosine = true;   ///< --moco-m-cos: raise it to 1 along a half cosine
  int image_size = 224;          ///< crop size of both views
  double crop_min = 0.2;         ///< RandomResizedCrop minimum area (--crop-min)
  bool stop_grad_conv1 = false;  ///< ViT: keep the patch projection at its random init
  /// Both views through each encoder as one interleaved batch, each view normalized by
  /// its own BN statistics (nn::InterleavedViewsScope): the original's numbers, rounded
  /// differently, in larger matrix products. Needs per-process BN statistics.
  bool batch_views = false;
};

class MocoV3Impl : public Method {
 public:
  /// InvalidArgument for an unknown arch or non-positive sizes.
  static absl::StatusOr<std::shared_ptr<MocoV3Impl>> Create(
      const MocoV3Options& options, std::shared_ptr<distributed::Communicator> communicator);

  /// The training loss for two views: first f_k <- m f_k + (1 - m) f_q (no gradient),
  /// then ctr(q1, k2) + ctr(q2, k1).
  at::Tensor forward(const at::Tensor& view1, const at::Tensor& view2, double momentum);

  /// InfoNCE of this process's queries against all processes' keys, times 2T.
  at::Tensor ContrastiveLoss(const at::Tensor& queries, const at::Tensor& keys);

  /// EMA over parameters only; the momentum encoder keeps its own BN buffers.
  void UpdateMomentumEncoder(double momentum);

  const MocoV3Options& options() const { return options_; }

  // Method.
  std::string name() const override { return "mocov3"; }
  data::ViewRecipe Views() const override;
  /// Sets the momentum of this step (cosine schedule per iteration when enabled) and
  /// applies the EMA before anything is computed, as builder.py does before the keys.
  void BeforeStep(const StepContext& step) override;
  /// ctr(q1, k2) + ctr(q2, k1) of the two views (crop groups 0 and 1).
  at::Tensor Loss(const std::vector<at::Tensor>& crop_groups, const StepContext& step) override;
  /// One group with every parameter, as main_moco.py passes model.parameters().
  std::vector<ParameterGroup> ParameterGroups() override;
  backbones::Backbone& EvalBackbone() override { return *base_encoder; }
  std::vector<std::pair<std::string, BackboneLocation>> Backbones() const override;
  std::vector<std::pair<std::string, double>> ScheduledValues() const override {
    return {{"momentum", current_momentum_}};
  }
  /// embedding_spread of the first view's predictions.
  std::vector<Indicator> Indicators() const override;
  nlohmann::json Config() const override;

  std::shared_ptr<backbones::Backbone> base_encoder;
  std::shared_ptr<backbones::Backbone> momentum_encoder;
  nn::Mlp predictor{nullptr};

 private:
  MocoV3Impl(const MocoV3Options& options, std::shared_ptr<distributed::Communicator> communicator);
  /// The symmetrized loss with the momentum encoder as it is.
  at::Tensor SymmetricLoss(const at::Tensor& view1, const at::Tensor& view2);

  MocoV3Options options_;
  std::shared_ptr<distributed::Communicator> communicator_;
  double current_momentum_ = 0;
  at::Tensor last_queries_;  ///< the last step's first-view predictions, for Indicators()
};

}  // namespace ssl::methods

#endif  // SSL_METHODS_MOCOV3_H_
