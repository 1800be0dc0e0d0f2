#include "ssl/backbones/backbone.h"

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ssl/backbones/regnet.h"
#include "ssl/backbones/resnet.h"
#include "ssl/backbones/vit.h"

namespace ssl::backbones {
namespace {

struct ParsedResNet {
  int depth = 0;
  double width = 1.0;
};

absl::Status UnknownName(const std::string& name) {
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown backbone \"", name, "\"; known: ", absl::StrJoin(KnownBackboneNames(), ", "),
      " (a ResNet also takes any w<multiplier> suffix, e.g. resnet18w0.25; a RegNetY any "
      "regnet_y_d<depth>_w<w_0>_wa<w_a>_wm<w_m>_gw<group width>; a ViT a _patch<P> suffix, "
      "e.g. vit_tiny_patch8)"));
}

bool IsRegNetName(const std::string& name) { return name.rfind("regnet", 0) == 0; }
bool IsVitName(const std::string& name) { return name.rfind("vit", 0) == 0; }

absl::StatusOr<ParsedResNet> ParseResNet(const std::string& name) {
  if (name.rfind("resnet", 0) != 0) return UnknownName(name);
  const std::string rest = name.substr(6);
  const size_t w = rest.find('w');
  ParsedResNet parsed;
  if (!absl::SimpleAtoi(rest.substr(0, w), &parsed.depth)) return UnknownName(name);
  if (parsed.depth != 18 && parsed.depth != 34 && parsed.depth != 50 && parsed.depth != 101 &&
      parsed.depth != 152) {
    return UnknownName(name);
  }
  if (w != std::string::npos) {
    if (!absl::SimpleAtod(rest.substr(w + 1), &parsed.width) || !(parsed.width > 0)) {
      return UnknownName(name);
    }
    const double base = 64 * parsed.width;
    if (base < 1 || std::abs(base - std::round(base)) > 1e-9) {
      return absl::InvalidArgumentError(absl::StrCat(
          "backbone \"", name, "\": 64 * width multiplier must be a whole number, got ", base));
    }
  }
  return parsed;
}

}  // namespace

std::vector<std::string> KnownBackboneNames() {
  std::vector<std::string> names = {"resnet18",  "resnet34",   "resnet50",   "resnet101",
                                    "resnet152", "resnet50w2", "resnet50w4", "resnet50w5"};
  for (const std::string& regnet : KnownRegNetNames()) names.push_back(regnet);
  for (const char* vit : {"vit_tiny", "vit_small", "vit_base", "vit_large"}) names.push_back(vit);
  return names;
}

std::string HeadName(const std::string& name) { return IsVitName(name) ? "head" : "fc"; }

absl::Status ValidateBackbone(const std::string& name, const BackboneOptions& options) {
  if (options.num_classes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_classes must be >= 0, got ", options.num_classes));
  }
  if (absl::StatusOr<int64_t> width = BackboneFeatureDim(name); !width.ok()) {
    return width.status();
  }
  const bool resnet = !IsVitName(name) && !IsRegNetName(name);
  if (!resnet && (options.cifar_stem || options.zero_init_residual)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "backbone \"", name, "\": the CIFAR stem and zero-init residual are ResNet options"));
  }
  if (!IsVitName(name)) {
    if (options.stop_grad_conv1 || options.drop_path_rate != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "backbone \"", name, "\": stop-grad conv1 and drop path are ViT options"));
    }
    return absl::OkStatus();
  }
  const int64_t patch = VisionTransformerOptionsByName(name)->patch_size();
  if (options.image_size < patch || options.image_size % patch != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("backbone \"", name, "\" needs an image size that is a multiple of its ",
                     patch, " px patches, got ", options.image_size));
  }
  if (!(options.drop_path_rate >= 0 && options.drop_path_rate < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("drop path rate must be in [0, 1), got ", options.drop_path_rate));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Backbone>> CreateBackbone(const std::string& name,
                                                         const BackboneOptions& options) {
  if (absl::Status s = ValidateBackbone(name, options); !s.ok()) return s;
  if (IsVitName(name)) {
    return std::shared_ptr<Backbone>(std::make_shared<VisionTransformerImpl>(
        VisionTransformerOptionsByName(name)
            ->image_size(options.image_size)
            .drop_path_rate(options.drop_path_rate)
            .stop_grad_conv1(options.stop_grad_conv1)
            .num_classes(options.num_classes)));
  }
  if (IsRegNetName(name)) return CreateRegNet(name, options.num_classes);
  const ParsedResNet parsed = *ParseResNet(name);
  return std::shared_ptr<Backbone>(
      std::make_shared<ResNetImpl>(ResNetOptions()
                                       .depth(parsed.depth)
                                       .width_multiplier(parsed.width)
                                       .cifar_stem(options.cifar_stem)
                                       .zero_init_residual(options.zero_init_residual)
                                       .num_classes(options.num_classes)));
}

absl::StatusOr<int64_t> BackboneFeatureDim(const std::string& name) {
  if (IsVitName(name)) {
    std::optional<VisionTransformerOptions> vit = VisionTransformerOptionsByName(name);
    if (!vit) return UnknownName(name);
    return vit->embed_dim();
  }
  if (IsRegNetName(name)) {
    const std::optional<RegNetParams> params = RegNetParamsByName(name);
    if (!params) return UnknownName(name);
    absl::StatusOr<RegNetStages> stages = ComputeRegNetStages(*params);
    if (!stages.ok()) return stages.status();
    return stages->widths.back();
  }
  absl::StatusOr<ParsedResNet> parsed = ParseResNet(name);
  if (!parsed.ok()) return parsed.status();
  const int64_t expansion = parsed->depth >= 50 ? 4 : 1;
  return std::llround(64 * parsed->width) * 8 * expansion;
}

}  // namespace ssl::backbones
