#include "tools/m2teacher_recipes.h"

#include <cmath>
#include <type_traits>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "ssl/core/constants.h"

namespace ssl::tools {
namespace {

M2TeacherRecipe Sgd(const std::string& name, const std::string& table, int epochs) {
  M2TeacherRecipe recipe;
  recipe.name = name;
  recipe.table = table;
  recipe.epochs = epochs;
  return recipe;
}

// exp_128_2080ti/momentum2_teacher_*_4096batch_16mm_exp.py: LARS_SGD with BN and biases
// excluded, lr 0.45 / 256 per image (0.3 / 256 for 300 epochs), weight decay 1e-6.
M2TeacherRecipe Lars(int epochs) {
  M2TeacherRecipe recipe =
      Sgd(absl::StrCat("exp_128_2080ti/momentum2_teacher_", epochs, "e_4096batch_16mm_exp"),
          "B 4096 (32 V100 / 128 2080Ti)", epochs);
  recipe.optimizer = "m2t_lars";
  recipe.basic_lr_per_img = (epochs == 300 ? 0.3 : 0.45) / 256;
  recipe.weight_decay = 1e-6;
  return recipe;
}

}  // namespace

std::vector<M2TeacherRecipe> M2TeacherRecipes() {
  std::vector<M2TeacherRecipe> recipes = {
      Sgd("momentum2_teacher_exp", "the original's default description (40 epochs)", 40)};
  for (int epochs : {100, 200, 300}) {
    recipes.push_back(Sgd(absl::StrCat("exp_8_v100/momentum2_teacher_", epochs, "e_exp"),
                          "8 V100, B 1024", epochs));
  }
  for (int epochs : {100, 200, 300}) {
    recipes.push_back(
        Sgd(absl::StrCat("exp_8_2080ti/momentum2_teacher_", epochs, "e_32batch_1mm_099_exp"),
            "8 2080Ti, B 256", epochs));
  }
  for (int epochs : {100, 200, 300}) recipes.push_back(Lars(epochs));
  // This project's: the same method on a narrow ResNet-18 (16 base channels) with
  // 64 px crops and 512-128 heads, one process, batch 64 (set with -b), the SGD recipe's
  // per-image lr scaled up 8x (0.4 / 256) for a few-epoch run, 1 warmup epoch.
  M2TeacherRecipe cpu =
      Sgd("cpu/momentum2_teacher_resnet18w025_64px", "CPU scale (this project's)", 4);
  cpu.arch = "resnet18w0.25";
  cpu.hidden_dim = 512;
  cpu.low_dim = 128;
  cpu.image_size = 64;
  cpu.basic_lr_per_img = 0.4 / 256;
  cpu.warmup_epochs = 1;
  cpu.print_interval = 50;
  cpu.data_num_workers = 2;
  recipes.push_back(cpu);
  // The parity recipe of tools/m2teacher_reference.py: the original's M2Teacher with its
  // own resnet18 (full width) and MLPs 512-4096-256, 64 px crops.
  M2TeacherRecipe parity = cpu;
  parity.name = "cpu/momentum2_teacher_resnet18_64px";
  parity.table = "CPU parity with the original's code (this project's)";
  parity.arch = "resnet18";
  parity.hidden_dim = 4096;
  parity.low_dim = 256;
  recipes.push_back(parity);
  return recipes;
}

methods::M2TeacherOptions M2TeacherMethodOptions(const M2TeacherRecipe& recipe) {
  methods::M2TeacherOptions options;
  options.arch = recipe.arch;
  options.cifar_stem = recipe.cifar_stem;
  options.hidden_dim = recipe.hidden_dim;
  options.low_dim = recipe.low_dim;
  options.momentum = recipe.param_momentum;
  options.lars_groups = recipe.optimizer == "m2t_lars";
  options.image_size = recipe.image_size;
  options.crop_min = recipe.crop_min;
  options.blur_sigma_max = recipe.blur_sigma_max;
  options.color_strength = recipe.color_strength;
  return options;
}

absl::StatusOr<M2TeacherRecipe> FindM2TeacherRecipe(const std::string& name_or_path) {
  std::string name = name_or_path;
  for (const char* prefix : {"momentum_teacher/exps/arxiv/", "exps/arxiv/"}) {
    const size_t at = name.find(prefix);
    if (at != std::string::npos) name = name.substr(at + std::string(prefix).size());
  }
  if (absl::EndsWith(name, ".py")) name = name.substr(0, name.size() - 3);
  std::vector<std::string> known;
  for (const M2TeacherRecipe& recipe : M2TeacherRecipes()) {
    if (recipe.name == name) return recipe;
    known.push_back(recipe.name);
  }
  return absl::NotFoundError(absl::StrCat("unknown experiment description \"", name_or_path,
                                          "\"; known: ", absl::StrJoin(known, ", ")));
}

absl::Status ApplyM2TeacherOverrides(const std::string& overrides, M2TeacherRecipe* recipe) {
  for (absl::string_view item : absl::StrSplit(overrides, ',', absl::SkipWhitespace())) {
    const std::pair<absl::string_view, absl::string_view> pair =
        absl::StrSplit(item, absl::MaxSplits('=', 1));
    const std::string name(absl::StripAsciiWhitespace(pair.first));
    const std::string value(absl::StripAsciiWhitespace(pair.second));
    double number = 0;
    const bool numeric = absl::SimpleAtod(value, &number) && std::isfinite(number);
    const auto bad = [&](const char* expected) {
      return absl::InvalidArgumentError(
          absl::StrCat("description attribute ", name, "=\"", value, "\": expected ", expected));
    };
    const auto set_positive = [&](double* field) {
      if (!numeric || number <= 0) return bad("a positive number");
      *field = number;
      return absl::OkStatus();
    };
    const auto set_count = [&](auto* field, int64_t minimum) {
      if (!numeric || number != std::floor(number) || number < minimum) {
        return bad(minimum > 0 ? "a positive integer" : "a non-negative integer");
      }
      *field = static_cast<std::remove_pointer_t<decltype(field)>>(number);
      return absl::OkStatus();
    };
    absl::Status status;
    if (name == "param_momentum") {
      if (!numeric || number < 0 || number > 1) return bad("a number in [0, 1]");
      recipe->param_momentum = number;
    } else if (name == "basic_lr_per_img") {
      status = set_positive(&recipe->basic_lr_per_img);
    } else if (name == "weight_decay") {
      if (!numeric || number < 0) return bad("a non-negative number");
      recipe->weight_decay = number;
    } else if (name == "warmup_lr") {
      status = set_positive(&recipe->warmup_lr);
    } else if (name == "warmup_epochs") {
      status = set_count(&recipe->warmup_epochs, 0);
    } else if (name == "max_epoch") {
      status = set_count(&recipe->epochs, 1);
    } else if (name == "print_interval") {
      status = set_count(&recipe->print_interval, 1);
    } else if (name == "data_num_workers") {
      status = set_count(&recipe->data_num_workers, 1);
    } else if (name == "hidden_dim") {
      status = set_count(&recipe->hidden_dim, 1);
    } else if (name == "low_dim") {
      status = set_count(&recipe->low_dim, 1);
    } else if (name == "image_size") {
      status = set_count(&recipe->image_size, 1);
    } else if (name == "crop_min") {
      if (!numeric || number <= 0 || number > 1) return bad("a number in (0, 1]");
      recipe->crop_min = number;
    } else if (name == "blur_sigma_max") {
      if (!numeric || number < 0.1) return bad("a number >= 0.1 (the blur's minimum sigma)");
      recipe->blur_sigma_max = number;
    } else if (name == "color_strength") {
      if (!numeric || number < 0 || number > 5) return bad("a number in [0, 5]");
      recipe->color_strength = number;
    } else if (name == "arch") {
      if (value.empty()) return bad("a backbone name");
      recipe->arch = value;
    } else if (name == "optimizer") {
      if (value != "sgd" && value != "m2t_lars") return bad("sgd or m2t_lars");
      recipe->optimizer = value;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown description attribute \"", name,
          "\"; known: param_momentum, basic_lr_per_img, weight_decay, warmup_epochs, warmup_lr, "
          "max_epoch, print_interval, data_num_workers, arch, hidden_dim, low_dim, image_size, "
          "optimizer, crop_min, blur_sigma_max, color_strength"));
    }
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

double M2TeacherLearningRate(const M2TeacherRecipe& recipe, const std::string& scheduler,
                             int64_t global_batch, int64_t step, int64_t steps_per_epoch,
                             int epochs) {
  const double lr = recipe.basic_lr_per_img * global_batch;
  const double total = static_cast<double>(steps_per_epoch) * epochs;
  if (scheduler == "cos") return lr * 0.5 * (1.0 + std::cos(kPi * step / total));
  const double warmup = static_cast<double>(steps_per_epoch) * recipe.warmup_epochs;
  if (step <= warmup && warmup > 0) {
    return (lr - recipe.warmup_lr) * step / warmup + recipe.warmup_lr;
  }
  return lr * 0.5 * (1.0 + std::cos(kPi * (step - warmup) / (total - warmup)));
}

}  // namespace ssl::tools
