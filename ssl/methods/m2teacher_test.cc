#include "ssl/methods/m2teacher.h"

#include <ATen/ops/randn.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "ssl/nn/state_dict.h"

namespace ssl::methods {
namespace {

M2TeacherOptions Tiny() {
  M2TeacherOptions options;
  options.arch = "resnet18w0.125";
  options.cifar_stem = true;
  options.hidden_dim = 32;
  options.low_dim = 16;
  options.image_size = 32;
  return options;
}

std::shared_ptr<M2TeacherImpl> Make(const M2TeacherOptions& options) {
  absl::StatusOr<std::shared_ptr<M2TeacherImpl>> made = M2TeacherImpl::Create(options);
  EXPECT_TRUE(made.ok()) << made.status();
  return *made;
}

at::Tensor Normalized(const at::Tensor& x) { return x / x.norm(2, {1}, true); }

TEST(M2TeacherLossTest, KnownValuesAndRange) {
  const at::Tensor q = Normalized(at::randn({6, 8}));
  EXPECT_NEAR(M2TeacherImpl::PairLoss(q, q, q, q).item<double>(), 0.0, 1e-6);
  EXPECT_NEAR(M2TeacherImpl::PairLoss(q, -q, q, -q).item<double>(), 8.0, 1e-5);
  // Orthogonal pairs: 4 - 2 (0 + 0).
  const at::Tensor e1 = at::zeros({1, 4}).index_fill_(1, at::tensor({int64_t{0}}), 1.0);
  const at::Tensor e2 = at::zeros({1, 4}).index_fill_(1, at::tensor({int64_t{1}}), 1.0);
  EXPECT_NEAR(M2TeacherImpl::PairLoss(e1, e2, e2, e1).item<double>(), 4.0, 1e-6);
  // One agreeing pair and one orthogonal: 4 - 2 (1 + 0) = 2.
  EXPECT_NEAR(M2TeacherImpl::PairLoss(e1, e1, e2, e1).item<double>(), 2.0, 1e-6);
  for (int i = 0; i < 20; ++i) {
    const double loss =
        M2TeacherImpl::PairLoss(Normalized(at::randn({4, 8})), Normalized(at::randn({4, 8})),
                                Normalized(at::randn({4, 8})), Normalized(at::randn({4, 8})))
            .item<double>();
    EXPECT_GE(loss, 0);
    EXPECT_LE(loss, 8);
  }
}

TEST(M2TeacherTest, ScheduleValuesAtTheirEnds) {
  EXPECT_DOUBLE_EQ(M2TeacherImpl::TeacherMomentum(0.99, 0, 100), 0.99);
  EXPECT_NEAR(M2TeacherImpl::TeacherMomentum(0.99, 50, 100), 0.995, 1e-12);
  EXPECT_NEAR(M2TeacherImpl::TeacherMomentum(0.99, 100, 100), 1.0, 1e-12);
  EXPECT_DOUBLE_EQ(M2TeacherImpl::MomentumBnWeight(0, 100), 1.0);
  EXPECT_NEAR(M2TeacherImpl::MomentumBnWeight(50, 100), 0.5, 1e-12);
  EXPECT_NEAR(M2TeacherImpl::MomentumBnWeight(100, 100), 0.0, 1e-12);
}

TEST(M2TeacherTest, NamesFollowTheOriginal) {
  auto model = Make(Tiny());
  std::set<std::string> keys;
  for (const auto& [key, tensor] : nn::StateDict(*model)) keys.insert(key);
  for (const char* key : {"student_encoder.conv1.weight", "student_encoder.fc.0.bias",
                          "student_encoder.fc.1.running_mean", "student_encoder.fc.4.weight",
                          "student_encoder.fc.7.bias", "teacher_encoder.layer4.1.bn2.running_var",
                          "teacher_encoder.fc.1.running_var", "teacher_encoder.fc.3.weight"}) {
    EXPECT_TRUE(keys.count(key)) << key;
  }
  EXPECT_FALSE(keys.count("teacher_encoder.fc.4.weight"));  // no predictor on the teacher
}

TEST(M2TeacherTest, TheTeacherStartsAsTheStudentFollowsTheEmaAndGetsNoGradient) {
  auto model = Make(Tiny());
  const auto student = model->student_encoder->named_parameters();
  const auto teacher = model->teacher_encoder->named_parameters();
  for (const auto& item : teacher) {
    EXPECT_TRUE(item.value().equal(student[item.key()])) << item.key();
    EXPECT_FALSE(item.value().requires_grad());
  }
  {
    c10::AutoGradMode no_grad(false);
    student["conv1.weight"].add_(1.0);
  }
  const at::Tensor before = teacher["conv1.weight"].clone();
  StepContext step;
  step.global_step = 25;
  step.total_steps = 100;
  model->BeforeStep(step);
  const double m = M2TeacherImpl::TeacherMomentum(0.99, 25, 100);
  EXPECT_TRUE(teacher["conv1.weight"].allclose(
      before * m + student["conv1.weight"].detach() * (1 - m), 1e-6, 1e-7));
  EXPECT_NEAR(model->momentum_bn().m_bn, M2TeacherImpl::MomentumBnWeight(25, 100), 1e-12);
  const at::Tensor loss = model->Loss({at::randn({8, 3, 32, 32}), at::randn({8, 3, 32, 32})}, step);
  EXPECT_GE(loss.item<double>(), 0);
  EXPECT_LE(loss.item<double>(), 8);
  loss.backward();
  for (const auto& item : teacher) EXPECT_FALSE(item.value().grad().defined()) << item.key();
  EXPECT_GT(student["fc.7.weight"].grad().abs().sum().item<double>(), 0);  // the predictor learns
  EXPECT_GT(student["conv1.weight"].grad().abs().sum().item<double>(), 0);
}

TEST(M2TeacherTest, EmbeddingSpreadIndicatorFollowsTheLastStep) {
  auto model = Make(Tiny());
  EXPECT_TRUE(model->Indicators().empty());
  StepContext step;
  step.total_steps = 100;
  model->BeforeStep(step);
  model->Loss({at::randn({8, 3, 32, 32}), at::randn({8, 3, 32, 32})}, step);
  ASSERT_EQ(model->Indicators().size(), 1u);
  EXPECT_EQ(model->Indicators()[0].name, "embedding_spread");
  EXPECT_GT(model->Indicators()[0].value, 0.1);
  const at::Tensor same = at::randn({1, 3, 32, 32}).expand({8, 3, 32, 32}).contiguous();
  model->Loss({same, same}, step);
  EXPECT_NEAR(model->Indicators()[0].value, 0.0, 1e-4);
}

TEST(M2TeacherTest, TheTeachersMomentumBnsUpdateOncePerStep) {
  auto model = Make(Tiny());
  StepContext step;
  step.total_steps = 10;
  model->BeforeStep(step);
  const at::Tensor before = model->teacher_encoder->named_buffers()["bn1.running_mean"].clone();
  model->Loss({at::randn({8, 3, 32, 32}), at::randn({8, 3, 32, 32})}, step);
  const at::Tensor after = model->teacher_encoder->named_buffers()["bn1.running_mean"].clone();
  EXPECT_FALSE(after.equal(before));  // m_bn = 1 at step 0: the running stats became the batch's
  // The student's BN is plain BN (momentum 0.1).
  const at::Tensor student_mean = model->student_encoder->named_buffers()["bn1.running_mean"];
  EXPECT_FALSE(student_mean.equal(after));
}

TEST(M2TeacherTest, LarsGroupsExcludeBatchNormAndBiases) {
  M2TeacherOptions options = Tiny();
  options.lars_groups = true;
  auto model = Make(options);
  const std::vector<ParameterGroup> groups = model->ParameterGroups();
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_FALSE(groups[0].no_trust_ratio);
  EXPECT_TRUE(groups[1].no_trust_ratio);
  EXPECT_FALSE(groups[1].no_weight_decay);  // decayed, only not trust-scaled
  for (const at::Tensor& p : groups[0].parameters) EXPECT_GT(p.dim(), 1);
  for (const at::Tensor& p : groups[1].parameters) EXPECT_EQ(p.dim(), 1);
  EXPECT_EQ(groups[0].parameters.size() + groups[1].parameters.size(),
            model->student_encoder->parameters().size());
  EXPECT_EQ(Make(Tiny())->ParameterGroups().size(), 1u);
}

TEST(M2TeacherTest, ExtraStateRoundTripsAndRefusesTheOtherQuirk) {
  auto model = Make(Tiny());
  StepContext step;
  step.global_step = 7;
  step.total_steps = 20;
  model->BeforeStep(step);
  const c10::impl::GenericDict state = model->ExtraState();
  auto other = Make(Tiny());
  ASSERT_TRUE(other->LoadExtraState(state).ok());
  EXPECT_DOUBLE_EQ(other->momentum_bn().m_bn, model->momentum_bn().m_bn);
  M2TeacherOptions plain = Tiny();
  plain.double_unbias = false;
  EXPECT_FALSE(Make(plain)->LoadExtraState(state).ok());
}

}  // namespace
}  // namespace ssl::methods
