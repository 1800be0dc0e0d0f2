// Momentum^2 Teacher's experiment descriptions (the original's exps/arxiv/*.py, chosen
// with -f) as data: the three published setups at 100/200/300 epochs, plus this
// project's CPU-scale recipe. The learning rate follows the original's warmcos
// schedule per iteration.
#ifndef TOOLS_M2TEACHER_RECIPES_H_
#define TOOLS_M2TEACHER_RECIPES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ssl/methods/m2teacher.h"

namespace ssl::tools {

struct M2TeacherRecipe {
  std::string name;   ///< e.g. "exp_8_v100/momentum2_teacher_100e_exp"
  std::string table;  ///< the published setup it belongs to
  int epochs = 40;
  double basic_lr_per_img = 0.05 / 256;  ///< lr = this x global batch
  double weight_decay = 1e-4;
  std::string optimizer = "sgd";  ///< sgd | m2t_lars (LARS_SGD, eta 0.001)
  double param_momentum = 0.99;   ///< the teacher's m0
  int warmup_epochs = 10;
  double warmup_lr = 1e-6;
  int print_interval = 10;
  int data_num_workers = 6;
  // The model (m2_teacher.py: ResNet-50, BYOL MLPs 2048-4096-256).
  std::string arch = "resnet50";
  bool cifar_stem = false;
  int64_t hidden_dim = 4096;
  int64_t low_dim = 256;
  int image_size = 224;
  // BYOL's views as the original's byol_transform at these defaults (this framework's
  // attributes, for small-scale recipes): crop area from crop_min, blur sigma up to
  // blur_sigma_max px, colour jitter (0.4, 0.4, 0.2, 0.1) x color_strength.
  double crop_min = 0.08;
  double blur_sigma_max = 2.0;
  double color_strength = 1.0;
};

std::vector<M2TeacherRecipe> M2TeacherRecipes();

/// The method's options from a description (the model, m0, the LARS recipe's parameter
/// groups and the views); the process-level choices (double unbiasing, synchronized
/// Momentum BN) keep their defaults for the caller to set.
methods::M2TeacherOptions M2TeacherMethodOptions(const M2TeacherRecipe& recipe);

/// By name, also given as the original's path ("momentum_teacher/exps/arxiv/
/// exp_8_v100/momentum2_teacher_100e_exp.py"); NotFound lists the known names.
absl::StatusOr<M2TeacherRecipe> FindM2TeacherRecipe(const std::string& name_or_path);

/// Sets description attributes by the original's Exp names from "name=value,...":
/// param_momentum, basic_lr_per_img, weight_decay, warmup_epochs, warmup_lr, max_epoch,
/// print_interval, data_num_workers, and this framework's arch, hidden_dim, low_dim,
/// image_size, optimizer (sgd | m2t_lars), crop_min, blur_sigma_max, color_strength. An
/// unknown name or a bad value is an error
/// naming it.
absl::Status ApplyM2TeacherOverrides(const std::string& overrides, M2TeacherRecipe* recipe);

/// utils.adjust_learning_rate_iter at global step `step` (0-based; the original sets the
/// lr after each step from the 1-based count, so step s trains with warmcos(s)):
/// "warmcos" rises linearly from 1e-6 to lr over the warmup, then a half cosine to 0;
/// "cos" is the half cosine alone.
double M2TeacherLearningRate(const M2TeacherRecipe& recipe, const std::string& scheduler,
                             int64_t global_batch, int64_t step, int64_t steps_per_epoch,
                             int epochs);

}  // namespace ssl::tools

#endif  // TOOLS_M2TEACHER_RECIPES_H_
