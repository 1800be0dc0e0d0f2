#include "ssl/data/views.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace ssl::data {
namespace {

absl::Status CheckProbability(double p, const char* name, int group) {
  if (p < 0 || p > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("crop group ", group, ": ", name, " must be in [0, 1], got ", p));
  }
  return absl::OkStatus();
}

CropAugmentation MocoBase(int size, double crop_min) {
  CropAugmentation a;
  a.size = size;
  a.scale_min = crop_min;
  a.jitter_probability = 0.8;
  a.jitter = ColorJitterStrength{0.4f, 0.4f, 0.2f, 0.1f};
  a.grayscale_probability = 0.2;
  a.flip_probability = 0.5;
  return a;
}

}  // namespace

int ViewRecipe::NumViews() const {
  int total = 0;
  for (const CropGroup& group : groups) total += group.count;
  return total;
}

absl::Status ViewRecipe::Validate() const {
  if (groups.empty())
    return absl::InvalidArgumentError("a view recipe needs at least one crop group");
  for (int g = 0; g < static_cast<int>(groups.size()); ++g) {
    const CropGroup& group = groups[g];
    const CropAugmentation& a = group.augmentation;
    if (group.count < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("crop group ", g, ": count must be >= 1, got ", group.count));
    }
    if (a.size < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("crop group ", g, ": size must be >= 1, got ", a.size));
    }
    if (a.crop == CropAugmentation::Crop::kResizeCenter && a.resize_short < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("crop group ", g, ": resize_short must be >= 1, got ", a.resize_short));
    }
    if (!(a.scale_min > 0 && a.scale_min <= a.scale_max && a.scale_max <= 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("crop group ", g, ": scale range must satisfy 0 < min <= max <= 1, got (",
                       a.scale_min, ", ", a.scale_max, ")"));
    }
    if (!(a.ratio_min > 0 && a.ratio_min <= a.ratio_max)) {
      return absl::InvalidArgumentError(
          absl::StrCat("crop group ", g, ": ratio range must satisfy 0 < min <= max, got (",
                       a.ratio_min, ", ", a.ratio_max, ")"));
    }
    if (!(a.blur_sigma_min > 0 && a.blur_sigma_min <= a.blur_sigma_max)) {
      return absl::InvalidArgumentError(
          absl::StrCat("crop group ", g, ": blur sigma range must satisfy 0 < min <= max, got (",
                       a.blur_sigma_min, ", ", a.blur_sigma_max, ")"));
    }
    if (a.jitter.hue < 0 || a.jitter.hue > 0.5) {
      return absl::InvalidArgumentError(
          absl::StrCat("crop group ", g, ": hue jitter must be in [0, 0.5], got ", a.jitter.hue));
    }
    for (const auto& [p, name] :
         {std::pair{a.jitter_probability, "jitter probability"},
          std::pair{a.grayscale_probability, "grayscale probability"},
          std::pair{a.blur_probability, "blur probability"},
          std::pair{a.solarize_probability, "solarize probability"},
          std::pair{a.flip_probability, "flip probability"},
          std::pair{a.erase_probability, "erase probability"},
          std::pair{a.rand_augment_options.op_probability, "RandAugment op probability"}}) {
      if (absl::Status s = CheckProbability(p, name, g); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

ViewRecipe MocoV3Views(int size, double crop_min) {
  CropAugmentation view1 = MocoBase(size, crop_min);
  view1.blur_probability = 1.0;
  CropAugmentation view2 = MocoBase(size, crop_min);
  view2.blur_probability = 0.1;
  view2.solarize_probability = 0.2;
  return ViewRecipe{{CropGroup{1, view1}, CropGroup{1, view2}}};
}

ViewRecipe ByolViews(int size, double crop_min) {
  ViewRecipe recipe = MocoV3Views(size, crop_min);
  for (CropGroup& group : recipe.groups) group.augmentation.blur_before_grayscale = true;
  recipe.groups[1].augmentation.solarize_after_flip = true;
  return recipe;
}

ViewRecipe MultiCropViews(const MultiCropOptions& options) {
  ViewRecipe recipe;
  const size_t n = options.counts.size();
  // Mismatched lengths yield an empty recipe, which Validate() reports.
  if (options.sizes.size() != n || options.scale_mins.size() != n ||
      options.scale_maxs.size() != n) {
    return recipe;
  }
  for (size_t g = 0; g < n; ++g) {
    CropAugmentation a;
    a.size = options.sizes[g];
    a.scale_min = options.scale_mins[g];
    a.scale_max = options.scale_maxs[g];
    a.jitter = options.jitter;
    a.jitter_probability = options.jitter_probability;
    a.grayscale_probability = options.grayscale_probability;
    a.blur_probability = options.blur_probability;
    a.blur_sigma_min = options.blur_sigma_min;
    a.blur_sigma_max = options.blur_sigma_max;
    a.flip_probability = options.flip_probability;
    a.mean = options.mean;
    a.std = options.std;
    recipe.groups.push_back(CropGroup{options.counts[g], a});
  }
  return recipe;
}

ViewRecipe EvalViews(int size, int resize_short, Interpolation interpolation) {
  CropAugmentation a;
  a.crop = CropAugmentation::Crop::kResizeCenter;
  a.size = size;
  a.resize_short = resize_short;
  a.interpolation = interpolation;
  return ViewRecipe{{CropGroup{1, a}}};
}

ViewRecipe ClassifierTrainViews(int size) {
  CropAugmentation a;
  a.size = size;
  a.flip_probability = 0.5;
  return ViewRecipe{{CropGroup{1, a}}};
}

ViewRecipe DeitTrainViews(int size, const RandAugmentOptions& rand_augment, bool use_rand_augment,
                          double erase, Interpolation interpolation, double scale_min) {
  ViewRecipe recipe = ClassifierTrainViews(size);
  CropAugmentation& a = recipe.groups[0].augmentation;
  a.interpolation = interpolation;
  a.scale_min = scale_min;
  a.rand_augment = use_rand_augment;
  a.rand_augment_options = rand_augment;
  a.rand_augment_options.interpolation = interpolation;
  a.erase_probability = erase;
  a.erasing.probability = erase;
  return recipe;
}

void AugmentView(const Image& image, const CropAugmentation& a, Rng& rng, FloatImage* scratch,
                 float* out) {
  if (a.crop == CropAugmentation::Crop::kResizeCenter) {
    ResizeShortSideCenterCrop(image, a.resize_short, a.size, scratch, a.interpolation);
  } else {
    const CropBox box = SampleResizedCropBox(image.height, image.width, a.scale_min, a.scale_max,
                                             a.ratio_min, a.ratio_max, rng);
    ResizedCrop(image, box, a.size, a.size, scratch, a.interpolation);
  }
  // Each RandomApply draws its coin first, then (if applied) its parameters, in
  // pipeline order, as torchvision does.
  if (a.jitter_probability > 0 && rng.Bernoulli(a.jitter_probability)) {
    ApplyColorJitter(*scratch, SampleColorJitter(a.jitter, rng));
  }
  auto maybe_grayscale = [&] {
    if (a.grayscale_probability > 0 && rng.Bernoulli(a.grayscale_probability)) {
      ToGrayscale(*scratch);
    }
  };
  auto maybe_blur = [&] {
    if (a.blur_probability > 0 && rng.Bernoulli(a.blur_probability)) {
      GaussianBlur(*scratch, static_cast<float>(rng.Uniform(a.blur_sigma_min, a.blur_sigma_max)));
    }
  };
  if (a.blur_before_grayscale) {
    maybe_blur();
    maybe_grayscale();
  } else {
    maybe_grayscale();
    maybe_blur();
  }
  auto maybe_solarize = [&] {
    if (a.solarize_probability > 0 && rng.Bernoulli(a.solarize_probability)) Solarize(*scratch);
  };
  if (!a.solarize_after_flip) maybe_solarize();
  if (a.flip_probability > 0 && rng.Bernoulli(a.flip_probability)) HorizontalFlip(*scratch);
  if (a.solarize_after_flip) maybe_solarize();
  if (a.rand_augment) {
    // RandAugment works on the 8-bit image, as timm's runs on PIL images.
    Image pixels(scratch->height, scratch->width);
    for (int c = 0; c < 3; ++c) {
      const float* plane = scratch->plane(c);
      for (size_t i = 0; i < scratch->plane_size(); ++i) {
        pixels.pixels[i * 3 + c] =
            static_cast<uint8_t>(std::clamp(std::lround(plane[i] * 255.0f), 0L, 255L));
      }
    }
    RandAugment(pixels, a.rand_augment_options, rng);
    for (int c = 0; c < 3; ++c) {
      float* plane = scratch->plane(c);
      for (size_t i = 0; i < scratch->plane_size(); ++i) {
        plane[i] = pixels.pixels[i * 3 + c] / 255.0f;
      }
    }
  }
  Normalize(*scratch, a.mean, a.std, out);
  if (a.erase_probability > 0) RandomErasing(out, a.size, a.size, a.erasing, rng);
}

}  // namespace ssl::data
