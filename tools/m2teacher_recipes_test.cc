#include "tools/m2teacher_recipes.h"

#include <gtest/gtest.h>

#include <cmath>

namespace ssl::tools {
namespace {

TEST(M2TeacherRecipesTest, ThePublishedDescriptionsByNameOrPath) {
  absl::StatusOr<M2TeacherRecipe> v100 =
      FindM2TeacherRecipe("momentum_teacher/exps/arxiv/exp_8_v100/momentum2_teacher_200e_exp.py");
  ASSERT_TRUE(v100.ok()) << v100.status();
  EXPECT_EQ(v100->epochs, 200);
  EXPECT_EQ(v100->optimizer, "sgd");
  EXPECT_DOUBLE_EQ(v100->basic_lr_per_img * 1024, 0.2);  // 0.05 x 1024 / 256
  EXPECT_DOUBLE_EQ(v100->weight_decay, 1e-4);
  absl::StatusOr<M2TeacherRecipe> lars =
      FindM2TeacherRecipe("exp_128_2080ti/momentum2_teacher_300e_4096batch_16mm_exp");
  ASSERT_TRUE(lars.ok());
  EXPECT_EQ(lars->optimizer, "m2t_lars");
  EXPECT_DOUBLE_EQ(lars->basic_lr_per_img * 4096, 4.8);  // 0.3 x 4096 / 256
  EXPECT_DOUBLE_EQ(lars->weight_decay, 1e-6);
  EXPECT_DOUBLE_EQ(FindM2TeacherRecipe("exp_128_2080ti/momentum2_teacher_100e_4096batch_16mm_exp")
                           ->basic_lr_per_img *
                       256,
                   0.45);
  EXPECT_EQ(FindM2TeacherRecipe("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST(M2TeacherRecipesTest, WarmcosIsTheOriginalsPerIterationSchedule) {
  const M2TeacherRecipe recipe = *FindM2TeacherRecipe("exp_8_v100/momentum2_teacher_100e_exp");
  // B 256: lr 0.05; 10 warmup epochs of 100 iterations, 100 epochs.
  auto lr = [&](int64_t step) {
    return M2TeacherLearningRate(recipe, "warmcos", 256, step, 100, 100);
  };
  EXPECT_DOUBLE_EQ(lr(0), 1e-6);  // the optimizer's initial warmup_lr
  EXPECT_NEAR(lr(500), (0.05 - 1e-6) * 0.5 + 1e-6, 1e-12);
  EXPECT_NEAR(lr(1000), 0.05, 1e-12);
  EXPECT_NEAR(lr(1000 + 4500), 0.025, 1e-12);
  EXPECT_NEAR(lr(10000), 0.0, 1e-12);
  EXPECT_NEAR(M2TeacherLearningRate(recipe, "cos", 256, 5000, 100, 100), 0.025, 1e-12);
}

TEST(M2TeacherRecipesTest, OverridesSetAttributesByTheOriginalsNames) {
  M2TeacherRecipe recipe = *FindM2TeacherRecipe("exp_8_v100/momentum2_teacher_100e_exp");
  ASSERT_TRUE(ApplyM2TeacherOverrides(
                  "basic_lr_per_img=0.001, param_momentum=0.996,warmup_epochs=0,max_epoch=7,"
                  "arch=resnet18w0.25,optimizer=m2t_lars,low_dim=64",
                  &recipe)
                  .ok());
  EXPECT_DOUBLE_EQ(recipe.basic_lr_per_img, 0.001);
  EXPECT_DOUBLE_EQ(recipe.param_momentum, 0.996);
  EXPECT_EQ(recipe.warmup_epochs, 0);
  EXPECT_EQ(recipe.epochs, 7);
  EXPECT_EQ(recipe.arch, "resnet18w0.25");
  EXPECT_EQ(recipe.optimizer, "m2t_lars");
  EXPECT_EQ(recipe.low_dim, 64);
  EXPECT_DOUBLE_EQ(recipe.weight_decay, 1e-4);  // untouched
  EXPECT_TRUE(ApplyM2TeacherOverrides("", &recipe).ok());

  const auto error = [&](const std::string& overrides) {
    M2TeacherRecipe copy = recipe;
    const absl::Status status = ApplyM2TeacherOverrides(overrides, &copy);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << overrides;
    return std::string(status.message());
  };
  EXPECT_EQ(error("param_momentum=1.5"),
            "description attribute param_momentum=\"1.5\": expected a number in [0, 1]");
  EXPECT_EQ(error("max_epoch=2.5"),
            "description attribute max_epoch=\"2.5\": expected a positive integer");
  EXPECT_EQ(error("basic_lr_per_img=fast"),
            "description attribute basic_lr_per_img=\"fast\": expected a positive number");
  EXPECT_EQ(error("optimizer=adam"),
            "description attribute optimizer=\"adam\": expected sgd or m2t_lars");
  EXPECT_NE(error("lr=0.1").find("unknown description attribute \"lr\"; known: "),
            std::string::npos);
  EXPECT_EQ(error("crop_min=0"),
            "description attribute crop_min=\"0\": expected a number in (0, 1]");
  EXPECT_EQ(error("blur_sigma_max=0.05"),
            "description attribute blur_sigma_max=\"0.05\": expected a number >= 0.1 (the "
            "blur's minimum sigma)");
}

TEST(M2TeacherRecipesTest, ViewStrengthsReachTheMethodsViews) {
  M2TeacherRecipe recipe = *FindM2TeacherRecipe("cpu/momentum2_teacher_resnet18w025_64px");
  // BYOL's views by default: crops from 8% of the area, blur up to 2 px, full colour.
  data::ViewRecipe views = methods::M2TeacherImpl::Create(M2TeacherMethodOptions(recipe))
                               .value()
                               ->Views();
  ASSERT_EQ(views.groups.size(), 2u);
  EXPECT_DOUBLE_EQ(views.groups[0].augmentation.scale_min, 0.08);
  EXPECT_DOUBLE_EQ(views.groups[1].augmentation.blur_sigma_max, 2.0);
  EXPECT_FLOAT_EQ(views.groups[0].augmentation.jitter.brightness, 0.4f);

  ASSERT_TRUE(
      ApplyM2TeacherOverrides("crop_min=0.2,blur_sigma_max=0.6,color_strength=0.5", &recipe).ok());
  const methods::M2TeacherOptions options = M2TeacherMethodOptions(recipe);
  EXPECT_EQ(options.arch, "resnet18w0.25");
  EXPECT_EQ(options.image_size, 64);
  views = methods::M2TeacherImpl::Create(options).value()->Views();
  for (const data::CropGroup& group : views.groups) {
    EXPECT_DOUBLE_EQ(group.augmentation.scale_min, 0.2);
    EXPECT_DOUBLE_EQ(group.augmentation.blur_sigma_max, 0.6);
    EXPECT_FLOAT_EQ(group.augmentation.jitter.brightness, 0.2f);
    EXPECT_FLOAT_EQ(group.augmentation.jitter.contrast, 0.2f);
    EXPECT_FLOAT_EQ(group.augmentation.jitter.saturation, 0.1f);
    EXPECT_FLOAT_EQ(group.augmentation.jitter.hue, 0.05f);
  }
  EXPECT_EQ(views.groups[0].augmentation.blur_probability, 1.0);  // BYOL's asymmetry kept
  EXPECT_EQ(views.groups[1].augmentation.solarize_probability, 0.2);
}

}  // namespace
}  // namespace ssl::tools
