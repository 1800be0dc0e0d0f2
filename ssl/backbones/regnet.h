// RegNetY (Radosavovic et al. 2020) with torchvision's parameter names (stem.0.weight,
// trunk_output.block1.block1-0.f.a.0.weight, ...se.fc1.weight, fc.weight) and
// torchvision's construction from the quantized linear width rule (depth, w_0, w_a,
// w_m, group width, bottleneck multiplier, squeeze-excitation ratio), so the named
// models (regnet_y_400mf ... regnet_y_128gf) and the SwAV/SEER custom RegNetY-256GF
// (depth 27, w_0 640, w_a 230.83, w_m 2.53, group width 373) come from one rule.
#ifndef SSL_BACKBONES_REGNET_H_
#define SSL_BACKBONES_REGNET_H_

#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ssl/backbones/backbone.h"
#include "ssl/nn/batch_norm.h"
#include "ssl/nn/chain.h"

namespace ssl::backbones {

struct RegNetParams {
  int depth = 16;
  double w_0 = 48;
  double w_a = 27.89;
  double w_m = 2.09;
  int group_width = 8;
  double bottleneck_multiplier = 1.0;
  double se_ratio = 0.25;  ///< 0: no squeeze-excitation (RegNetX)
  int stem_width = 32;
};

/// Per-stage widths, depths and group widths, as torchvision's
/// BlockParams.from_init_params computes them (float32 arithmetic, half-even rounding).
struct RegNetStages {
  std::vector<int64_t> widths;
  std::vector<int> depths;
  std::vector<int64_t> group_widths;
};
absl::StatusOr<RegNetStages> ComputeRegNetStages(const RegNetParams& params);

/// The torchvision / Classy Vision names ("regnet_y_400mf", "regnet_y_16gf", ...), or
/// the parametric "regnet_y_d<depth>_w<w_0>_wa<w_a>_wm<w_m>_gw<group width>"; nullopt
/// for other names.
std::optional<RegNetParams> RegNetParamsByName(const std::string& name);
/// The parametric name of `params`.
std::string RegNetName(const RegNetParams& params);
std::vector<std::string> KnownRegNetNames();

/// conv-BN-ReLU pieces named like torchvision's Conv2dNormActivation ("0", "1", "2").
class RegNetImpl : public Backbone {
 public:
  RegNetImpl(const RegNetParams& params, const RegNetStages& stages, int64_t num_classes,
             std::string name);
  at::Tensor forward(const at::Tensor& images) override;
  at::Tensor Features(const at::Tensor& images) override;
  void SetHead(torch::nn::AnyModule head) override;
  int64_t feature_dim() const override { return feature_dim_; }
  std::string name() const override { return name_; }

  ssl::nn::Chain stem{nullptr};
  ssl::nn::Chain trunk_output{nullptr};
  torch::nn::Linear fc{nullptr};

 private:
  torch::nn::AnyModule head_;
  int64_t feature_dim_ = 0;
  std::string name_;
};

/// Builds a RegNet by name; InvalidArgument for parameters torchvision rejects.
absl::StatusOr<std::shared_ptr<Backbone>> CreateRegNet(const std::string& name,
                                                       int64_t num_classes);

}  // namespace ssl::backbones

#endif  // SSL_BACKBONES_REGNET_H_
