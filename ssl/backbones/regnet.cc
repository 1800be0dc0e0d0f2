#include "ssl/backbones/regnet.h"

#include <ATen/ops/relu.h>
#include <ATen/ops/sigmoid.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>

#include <cmath>
#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace ssl::backbones {
namespace {

namespace nn = torch::nn;

// Conv (no bias) + BN (+ ReLU), children "0", "1", "2" as torchvision's
// Conv2dNormActivation.
ssl::nn::Chain ConvNormActivation(int64_t in, int64_t out, int64_t kernel, int64_t stride,
                                  int64_t groups, bool activation) {
  ssl::nn::Chain block(nn::Conv2d(nn::Conv2dOptions(in, out, kernel)
                                      .stride(stride)
                                      .padding((kernel - 1) / 2)
                                      .groups(groups)
                                      .bias(false)),
                       ssl::nn::BatchNorm2d(out));
  if (activation) block->push_back(nn::ReLU(nn::ReLUOptions().inplace(true)));
  return block;
}

// torchvision.ops.SqueezeExcitation: x * sigmoid(fc2(relu(fc1(avgpool(x))))).
class SqueezeExcitationImpl : public nn::Module {
 public:
  SqueezeExcitationImpl(int64_t channels, int64_t squeeze_channels)
      : fc1(register_module("fc1", nn::Conv2d(nn::Conv2dOptions(channels, squeeze_channels, 1)))),
        fc2(register_module("fc2", nn::Conv2d(nn::Conv2dOptions(squeeze_channels, channels, 1)))) {}
  at::Tensor forward(const at::Tensor& x) {
    const at::Tensor scale = at::sigmoid(fc2(at::relu(fc1(x.mean({2, 3}, /*keepdim=*/true)))));
    return x * scale;
  }
  nn::Conv2d fc1, fc2;
};
TORCH_MODULE(SqueezeExcitation);

// torchvision's ResBottleneckBlock: x (or proj(x)) + f(x), then ReLU; f is the
// bottleneck transform a (1x1), b (3x3 grouped, strided), se, c (1x1, no activation).
class ResBottleneckBlockImpl : public nn::Module {
 public:
  ResBottleneckBlockImpl(int64_t width_in, int64_t width_out, int64_t stride, int64_t group_width,
                         double bottleneck_multiplier, double se_ratio) {
    if (width_in != width_out || stride != 1) {
      proj = register_module("proj", ConvNormActivation(width_in, width_out, 1, stride, 1, false));
    }
    const int64_t w_b = std::llround(width_out * bottleneck_multiplier);
    const int64_t groups = w_b / group_width;
    torch::OrderedDict<std::string, nn::AnyModule> layers;
    layers.insert("a", nn::AnyModule(ConvNormActivation(width_in, w_b, 1, 1, 1, true)));
    layers.insert("b", nn::AnyModule(ConvNormActivation(w_b, w_b, 3, stride, groups, true)));
    if (se_ratio > 0) {
      const int64_t squeeze = std::llround(se_ratio * width_in);
      layers.insert("se", nn::AnyModule(SqueezeExcitation(w_b, squeeze)));
    }
    layers.insert("c", nn::AnyModule(ConvNormActivation(w_b, width_out, 1, 1, 1, false)));
    f = register_module("f", ssl::nn::Chain(std::move(layers)));
  }
  at::Tensor forward(const at::Tensor& x) {
    at::Tensor out = f->forward(x);
    out += proj ? proj->forward(x) : x;
    return at::relu_(out);
  }
  ssl::nn::Chain proj{nullptr}, f{nullptr};
};
TORCH_MODULE(ResBottleneckBlock);

// torchvision's _make_divisible.
int64_t MakeDivisible(double value, int64_t divisor) {
  int64_t result =
      std::max<int64_t>(divisor, static_cast<int64_t>(value + divisor / 2.0) / divisor * divisor);
  if (result < 0.9 * value) result += divisor;
  return result;
}

struct NamedParams {
  const char* name;
  RegNetParams params;
};

// torchvision.models.regnet_y_* (all with SE ratio 0.25).
const NamedParams kNamedRegNets[] = {
    {"regnet_y_400mf", {16, 48, 27.89, 2.09, 8}},
    {"regnet_y_800mf", {14, 56, 38.84, 2.4, 16}},
    {"regnet_y_1_6gf", {27, 48, 20.71, 2.65, 24}},
    {"regnet_y_3_2gf", {21, 80, 42.63, 2.66, 24}},
    {"regnet_y_8gf", {17, 192, 76.82, 2.19, 56}},
    {"regnet_y_16gf", {18, 200, 106.23, 2.48, 112}},
    {"regnet_y_32gf", {20, 232, 115.89, 2.53, 232}},
    {"regnet_y_128gf", {27, 456, 160.83, 2.52, 264}},
};

}  // namespace

absl::StatusOr<RegNetStages> ComputeRegNetStages(const RegNetParams& p) {
  if (p.depth < 1 || p.w_a < 0 || p.w_0 <= 0 || p.w_m <= 1 || std::fmod(p.w_0, 8.0) != 0 ||
      p.group_width < 1 || !(p.bottleneck_multiplier > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid RegNet settings: need depth >= 1, w_a >= 0, w_0 > 0 and a multiple of 8, "
        "w_m > 1, group width >= 1; got depth ",
        p.depth, ", w_0 ", p.w_0, ", w_a ", p.w_a, ", w_m ", p.w_m, ", group width ",
        p.group_width));
  }
  // Per-block widths in float32, as torch computes them; nearbyint rounds half to even
  // like torch.round.
  const float w_0 = static_cast<float>(p.w_0), w_a = static_cast<float>(p.w_a),
              w_m = static_cast<float>(p.w_m);
  const float log_w_m = static_cast<float>(std::log(p.w_m));
  std::vector<int64_t> block_widths;
  for (int i = 0; i < p.depth; ++i) {
    const float continuous = static_cast<float>(i) * w_a + w_0;
    const float capacity = std::nearbyint(std::log(continuous / w_0) / log_w_m);
    const float width = std::nearbyint(w_0 * std::pow(w_m, capacity) / 8.0f) * 8.0f;
    block_widths.push_back(static_cast<int64_t>(width));
  }
  RegNetStages stages;
  for (int i = 0; i < p.depth; ++i) {
    if (i == 0 || block_widths[i] != block_widths[i - 1]) {
      stages.widths.push_back(block_widths[i]);
      stages.depths.push_back(0);
    }
    ++stages.depths.back();
  }
  // torchvision's _adjust_widths_groups_compatibilty.
  for (int64_t& width : stages.widths) {
    const int64_t bottleneck = static_cast<int64_t>(width * p.bottleneck_multiplier);
    const int64_t group = std::min<int64_t>(p.group_width, bottleneck);
    const int64_t divisible = MakeDivisible(static_cast<double>(bottleneck), group);
    width = static_cast<int64_t>(divisible / p.bottleneck_multiplier);
    stages.group_widths.push_back(group);
  }
  return stages;
}

std::optional<RegNetParams> RegNetParamsByName(const std::string& name) {
  for (const NamedParams& named : kNamedRegNets) {
    if (name == named.name) return named.params;
  }
  static const std::regex kParametric(
      R"(regnet_y_d(\d+)_w([0-9.]+)_wa([0-9.]+)_wm([0-9.]+)_gw(\d+))");
  std::smatch match;
  if (!std::regex_match(name, match, kParametric)) return std::nullopt;
  RegNetParams params;
  params.depth = std::stoi(match[1]);
  params.w_0 = std::stod(match[2]);
  params.w_a = std::stod(match[3]);
  params.w_m = std::stod(match[4]);
  params.group_width = std::stoi(match[5]);
  return params;
}

std::string RegNetName(const RegNetParams& p) {
  for (const NamedParams& named : kNamedRegNets) {
    const RegNetParams& q = named.params;
    if (q.depth == p.depth && q.w_0 == p.w_0 && q.w_a == p.w_a && q.w_m == p.w_m &&
        q.group_width == p.group_width && p.bottleneck_multiplier == 1.0 && p.se_ratio == 0.25 &&
        p.stem_width == 32) {
      return named.name;
    }
  }
  return absl::StrFormat("regnet_y_d%d_w%g_wa%g_wm%g_gw%d", p.depth, p.w_0, p.w_a, p.w_m,
                         p.group_width);
}

std::vector<std::string> KnownRegNetNames() {
  std::vector<std::string> names;
  for (const NamedParams& named : kNamedRegNets) names.push_back(named.name);
  return names;
}

RegNetImpl::RegNetImpl(const RegNetParams& params, const RegNetStages& stages, int64_t num_classes,
                       std::string name)
    : name_(std::move(name)) {
  stem = register_module("stem", ConvNormActivation(3, params.stem_width, 3, 2, 1, true));
  torch::OrderedDict<std::string, nn::AnyModule> trunk;
  int64_t width_in = params.stem_width;
  for (size_t s = 0; s < stages.widths.size(); ++s) {
    torch::OrderedDict<std::string, nn::AnyModule> blocks;
    for (int i = 0; i < stages.depths[s]; ++i) {
      blocks.insert(absl::StrCat("block", s + 1, "-", i),
                    nn::AnyModule(ResBottleneckBlock(
                        i == 0 ? width_in : stages.widths[s], stages.widths[s], i == 0 ? 2 : 1,
                        stages.group_widths[s], params.bottleneck_multiplier, params.se_ratio)));
    }
    trunk.insert(absl::StrCat("block", s + 1), nn::AnyModule(ssl::nn::Chain(std::move(blocks))));
    width_in = stages.widths[s];
  }
  trunk_output = register_module("trunk_output", ssl::nn::Chain(std::move(trunk)));
  feature_dim_ = width_in;
  if (num_classes > 0) {
    fc = register_module("fc", nn::Linear(feature_dim_, num_classes));
    head_ = nn::AnyModule(fc);
  }
  // torchvision's init: convs N(0, sqrt(2 / fan_out)) with fan_out = k * k * out
  // channels, BN gamma 1 / beta 0, the classifier N(0, 0.01) with zero bias.
  torch::NoGradGuard no_grad;
  for (const auto& module : modules(/*include_self=*/false)) {
    if (auto* conv = module->as<nn::Conv2d>()) {
      const auto& kernel = conv->options.kernel_size();
      const double fan_out =
          static_cast<double>((*kernel)[0] * (*kernel)[1] * conv->options.out_channels());
      conv->weight.normal_(0.0, std::sqrt(2.0 / fan_out));
    } else if (auto* bn = module->as<ssl::nn::BatchNorm>()) {
      nn::init::ones_(bn->weight);
      nn::init::zeros_(bn->bias);
    } else if (auto* linear = module->as<nn::Linear>()) {
      linear->weight.normal_(0.0, 0.01);
      nn::init::zeros_(linear->bias);
    }
  }
}

at::Tensor RegNetImpl::Features(const at::Tensor& images) {
  return trunk_output->forward(stem->forward(images)).mean({2, 3});
}

at::Tensor RegNetImpl::forward(const at::Tensor& images) {
  at::Tensor features = Features(images);
  return head_.is_empty() ? features : head_.forward(features);
}

void RegNetImpl::SetHead(torch::nn::AnyModule head) {
  if (named_children().contains("fc")) {
    replace_module("fc", head.ptr());
  } else {
    register_module("fc", head.ptr());
  }
  head_ = std::move(head);
  fc = nullptr;
}

absl::StatusOr<std::shared_ptr<Backbone>> CreateRegNet(const std::string& name,
                                                       int64_t num_classes) {
  const std::optional<RegNetParams> params = RegNetParamsByName(name);
  if (!params) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown RegNet \"", name, "\"; known: ", absl::StrJoin(KnownRegNetNames(), ", "),
        ", or regnet_y_d<depth>_w<w_0>_wa<w_a>_wm<w_m>_gw<group width>"));
  }
  absl::StatusOr<RegNetStages> stages = ComputeRegNetStages(*params);
  if (!stages.ok()) return stages.status();
  return std::shared_ptr<Backbone>(
      std::make_shared<RegNetImpl>(*params, *stages, num_classes, RegNetName(*params)));
}

}  // namespace ssl::backbones
