#include "ssl/methods/m2teacher.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/full.h>
#include <c10/core/GradMode.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "ssl/core/constants.h"
#include "ssl/nn/chain.h"
#include "ssl/nn/state_dict.h"

namespace ssl::methods {
namespace {

torch::nn::Linear Linear(int64_t in, int64_t out) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(true));
}

// The original's MLP="byol" head: Linear-BN-ReLU-Linear (projector), then for the
// student Linear-BN-ReLU-Linear (predictor) in the same Sequential.
nn::Chain ByolHead(int64_t in, int64_t hidden, int64_t out, bool predictor) {
  nn::Chain head(Linear(in, hidden), nn::BatchNorm1d(hidden),
                 torch::nn::ReLU(torch::nn::ReLUOptions().inplace(true)), Linear(hidden, out));
  if (predictor) {
    head->push_back(Linear(out, hidden));
    head->push_back(nn::BatchNorm1d(hidden));
    head->push_back(torch::nn::ReLU(torch::nn::ReLUOptions().inplace(true)));
    head->push_back(Linear(hidden, out));
  }
  return head;
}

}  // namespace

absl::StatusOr<std::shared_ptr<M2TeacherImpl>> M2TeacherImpl::Create(
    const M2TeacherOptions& options, std::shared_ptr<distributed::Communicator> communicator) {
  if (options.sync_momentum_bn && !communicator) {
    return absl::InvalidArgumentError("synchronized Momentum BN needs the process group");
  }
  if (absl::StatusOr<int64_t> width = backbones::BackboneFeatureDim(options.arch); !width.ok()) {
    return width.status();
  }
  if (options.hidden_dim < 1 || options.low_dim < 1) {
    return absl::InvalidArgumentError(absl::StrCat("hidden and output widths must be >= 1, got ",
                                                   options.hidden_dim, " and ", options.low_dim));
  }
  if (!(options.momentum >= 0 && options.momentum <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the teacher momentum must be in [0, 1], got ", options.momentum));
  }
  if (options.image_size < 16 || !(options.crop_min > 0 && options.crop_min <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("image size must be >= 16 and crop-min in (0, 1], got ", options.image_size,
                     " and ", options.crop_min));
  }
  if (!(options.blur_sigma_max >= 0.1) || !(options.color_strength >= 0) ||
      options.color_strength * 0.1 > 0.5) {
    return absl::InvalidArgumentError(
        absl::StrCat("blur sigma max must be >= 0.1 (the minimum) and colour strength in [0, 5], got ",
                     options.blur_sigma_max, " and ", options.color_strength));
  }
  return std::shared_ptr<M2TeacherImpl>(new M2TeacherImpl(options, std::move(communicator)));
}

M2TeacherImpl::M2TeacherImpl(const M2TeacherOptions& options,
                             std::shared_ptr<distributed::Communicator> communicator)
    : options_(options), schedule_(std::make_shared<nn::MomentumBatchNormSchedule>()) {
  schedule_->double_unbias = options.double_unbias;
  backbones::BackboneOptions backbone_options;
  backbone_options.cifar_stem = options.cifar_stem;
  auto build = [&](bool predictor) {
    std::shared_ptr<backbones::Backbone> encoder =
        *backbones::CreateBackbone(options.arch, backbone_options);
    encoder->SetHead(torch::nn::AnyModule(
        ByolHead(encoder->feature_dim(), options.hidden_dim, options.low_dim, predictor)));
    return encoder;
  };
  student_encoder = register_module("student_encoder", build(true));
  teacher_encoder = register_module("teacher_encoder", build(false));
  // Every BN of the teacher is a Momentum BN sharing one schedule.
  nn::ConfigureBatchNorm(
      *teacher_encoder,
      nn::MomentumBatchNormSetting(schedule_, options.sync_momentum_bn ? communicator : nullptr));
  // The teacher starts as the student (the original's momentum_update(m=0)) and never
  // receives gradients.
  std::map<std::string, at::Tensor> student;
  for (const auto& item : student_encoder->named_parameters()) student[item.key()] = item.value();
  c10::AutoGradMode no_grad(false);
  for (const auto& item : teacher_encoder->named_parameters()) {
    at::Tensor teacher = item.value();
    const at::Tensor& source = student.at(item.key());
    teacher.copy_(source);
    teacher.set_requires_grad(false);
    shared_.emplace_back(source, teacher);
  }
}

double M2TeacherImpl::TeacherMomentum(double m0, int64_t step, int64_t total_steps) {
  return 1.0 - (1.0 - m0) * (std::cos(kPi * step / total_steps) + 1) * 0.5;
}

double M2TeacherImpl::MomentumBnWeight(int64_t step, int64_t total_steps) {
  return (std::cos(kPi * static_cast<double>(step) / total_steps) + 1) * 0.5;
}

void M2TeacherImpl::UpdateTeacher(double momentum) {
  c10::AutoGradMode no_grad(false);
  for (auto& [student, teacher] : shared_) {
    teacher.mul_(momentum).add_(student.detach(), 1.0 - momentum);
  }
}

data::ViewRecipe M2TeacherImpl::Views() const {
  data::ViewRecipe recipe = data::ByolViews(options_.image_size, options_.crop_min);
  for (data::CropGroup& group : recipe.groups) {
    data::CropAugmentation& a = group.augmentation;
    a.blur_sigma_max = options_.blur_sigma_max;
    const float s = static_cast<float>(options_.color_strength);
    a.jitter = data::ColorJitterStrength{0.4f * s, 0.4f * s, 0.2f * s, 0.1f * s};
  }
  return recipe;
}

void M2TeacherImpl::BeforeStep(const StepContext& step) {
  current_momentum_ = TeacherMomentum(options_.momentum, step.global_step, step.total_steps);
  UpdateTeacher(current_momentum_);
  schedule_->m_bn = MomentumBnWeight(step.global_step, step.total_steps);
  next_step_ = step.global_step + 1;
  total_steps_ = step.total_steps;
}

at::Tensor M2TeacherImpl::SymmetricLoss(const at::Tensor& view1, const at::Tensor& view2) {
  const at::Tensor q1 = L2Normalize(student_encoder->forward(view1));
  const at::Tensor q2 = L2Normalize(student_encoder->forward(view2));
  last_predictions_ = q1.detach();
  at::Tensor k1, k2;
  {
    c10::AutoGradMode no_grad(false);
    k1 = L2Normalize(teacher_encoder->forward(view2));
    k2 = L2Normalize(teacher_encoder->forward(view1));
  }
  return PairLoss(q1, k1, q2, k2);
}

at::Tensor M2TeacherImpl::PairLoss(const at::Tensor& q1, const at::Tensor& k1, const at::Tensor& q2,
                                   const at::Tensor& k2) {
  return ((q1 * k1).sum(1).add((q2 * k2).sum(1)).mul(-2.0).add(4.0)).mean();
}

at::Tensor M2TeacherImpl::Loss(const std::vector<at::Tensor>& crop_groups, const StepContext&) {
  TORCH_CHECK(crop_groups.size() == 2, "Momentum^2 Teacher trains on two views, got ",
              crop_groups.size(), " crop groups");
  return SymmetricLoss(crop_groups[0], crop_groups[1]);
}

std::vector<Indicator> M2TeacherImpl::Indicators() const {
  if (!last_predictions_.defined()) return {};
  return {{"embedding_spread", EmbeddingSpread(last_predictions_), true}};
}

std::vector<ParameterGroup> M2TeacherImpl::ParameterGroups() {
  if (!options_.lars_groups) {
    // The original's SGD over model.student_encoder.parameters().
    return {ParameterGroup{"student", nn::Parameters(*student_encoder)}};
  }
  // The B 4096 recipe: conv and Linear weights get LARS; BN parameters and Linear
  // biases are excluded from the trust ratio but keep their weight decay.
  ParameterGroup lars{"lars"};
  ParameterGroup excluded{"lars_exclude"};
  excluded.no_trust_ratio = true;
  for (const auto& module : student_encoder->modules(/*include_self=*/false)) {
    if (auto* conv = module->as<torch::nn::Conv2d>()) {
      lars.parameters.push_back(conv->weight);
      if (conv->bias.defined()) lars.parameters.push_back(conv->bias);
    } else if (auto* linear = module->as<torch::nn::Linear>()) {
      lars.parameters.push_back(linear->weight);
      excluded.parameters.push_back(linear->bias);
    } else if (auto* bn = module->as<nn::BatchNorm>()) {
      excluded.parameters.push_back(bn->weight);
      excluded.parameters.push_back(bn->bias);
    }
  }
  return {lars, excluded};
}

c10::impl::GenericDict M2TeacherImpl::ExtraState() {
  c10::impl::GenericDict state = NewStateDict();
  state.insert("momentum_bn.iteration", next_step_);
  state.insert("momentum_bn.total_iterations", total_steps_);
  state.insert("momentum_bn.m_bn", schedule_->m_bn);
  state.insert("momentum_bn.double_unbias", schedule_->double_unbias);
  return state;
}

absl::Status M2TeacherImpl::LoadExtraState(const c10::impl::GenericDict& state) {
  if (!state.contains("momentum_bn.iteration") || !state.contains("momentum_bn.m_bn")) {
    // The original's files hold no schedule state: m_bn is a function of the global
    // step, which BeforeStep recomputes before the first resumed step, as the original
    // recomputes it each iteration.
    return absl::OkStatus();
  }
  if (state.contains("momentum_bn.double_unbias") &&
      state.at("momentum_bn.double_unbias").toBool() != schedule_->double_unbias) {
    return absl::InvalidArgumentError(
        "the checkpoint was trained with the other Momentum BN variance rule "
        "(--double_unbias); resume with the same setting");
  }
  next_step_ = state.at("momentum_bn.iteration").toInt();
  total_steps_ = state.at("momentum_bn.total_iterations").toInt();
  schedule_->m_bn = state.at("momentum_bn.m_bn").toDouble();
  return absl::OkStatus();
}

std::vector<std::pair<std::string, BackboneLocation>> M2TeacherImpl::Backbones() const {
  return {{"teacher", {options_.arch, options_.cifar_stem, "teacher_encoder.", {"fc."}}},
          {"student", {options_.arch, options_.cifar_stem, "student_encoder.", {"fc."}}}};
}

nlohmann::json M2TeacherImpl::Config() const {
  return {{"arch", options_.arch},
          {"cifar_stem", options_.cifar_stem},
          {"hidden_dim", options_.hidden_dim},
          {"low_dim", options_.low_dim},
          {"param_momentum", options_.momentum},
          {"double_unbias", options_.double_unbias},
          {"lars_groups", options_.lars_groups},
          {"sync_momentum_bn", options_.sync_momentum_bn},
          {"image_size", options_.image_size},
          {"crop_min", options_.crop_min},
          {"blur_sigma_max", options_.blur_sigma_max},
          {"color_strength", options_.color_strength}};
}

}  // namespace ssl::methods
