// Momentum^2 Teacher (Li et al. 2021) as zengarden/momentum2-teacher's m2_teacher.py
// builds it: a student (backbone with per-process BN, a projector and a predictor, both
// with biases, at the backbone's "fc" as the original's BYOL MLP) and a teacher
// (backbone + projector with every BN a Momentum BN) updated by EMA over parameters with
// a cosine schedule from m0 at the start of each step; the symmetric loss
// mean(4 - 2 (<q1, k1> + <q2, k2>)) on L2-normalized outputs, q = S(x), k = T(other x).
// Module names are the original's: student_encoder.*, teacher_encoder.* (fc.0 ... fc.7).
#ifndef SSL_METHODS_M2TEACHER_H_
#define SSL_METHODS_M2TEACHER_H_

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "ssl/backbones/backbone.h"
#include "ssl/distributed/communicator.h"
#include "ssl/methods/method.h"
#include "ssl/nn/batch_norm.h"

namespace ssl::methods {

struct M2TeacherOptions {
  std::string arch = "resnet50";
  bool cifar_stem = false;
  int64_t hidden_dim = 4096;  ///< MLP hidden width
  int64_t low_dim = 256;      ///< output width
  double momentum = 0.99;     ///< param_momentum m0
  /// Momentum BN's double unbiasing of the batch variance (the original's behaviour).
  bool double_unbias = true;
  /// false: one parameter group (SGD recipes); true: the LARS recipe's groups, conv and
  /// Linear weights trust-scaled, BN parameters and Linear biases excluded.
  bool lars_groups = false;
  /// Pool the teacher's Momentum BN statistics over all processes (with SyncBN for the
  /// student, multi-process runs then equal one process with the whole batch); the
  /// original's statistics are per process.
  bool sync_momentum_bn = false;
  int image_size = 224;
  // BYOL's views (the original's byol_transform) at these defaults. Small-scale recipes
  // soften them: crops of at least crop_min of the area, blur sigma up to
  // blur_sigma_max pixels, colour jitter (0.4, 0.4, 0.2, 0.1) x color_strength.
  double crop_min = 0.08;
  double blur_sigma_max = 2.0;
  double color_strength = 1.0;
};

class M2TeacherImpl : public Method {
 public:
  /// `communicator` is used only with sync_momentum_bn.
  static absl::StatusOr<std::shared_ptr<M2TeacherImpl>> Create(
      const M2TeacherOptions& options,
      std::shared_ptr<distributed::Communicator> communicator = nullptr);

  /// m = 1 - (1 - m0) (cos(pi t / T) + 1) / 2 at step t of T.
  static double TeacherMomentum(double m0, int64_t step, int64_t total_steps);
  /// m_bn = (cos(pi t / T) + 1) / 2.
  static double MomentumBnWeight(int64_t step, int64_t total_steps);
  /// mean(4 - 2 (<q1, k1> + <q2, k2>)) over the batch, for L2-normalized rows: 0 when
  /// the pairs agree, 8 when they are opposite.
  static at::Tensor PairLoss(const at::Tensor& q1, const at::Tensor& k1, const at::Tensor& q2,
                             const at::Tensor& k2);

  // Method.
  std::string name() const override { return "m2teacher"; }
  data::ViewRecipe Views() const override;
  /// The EMA of the teacher (before anything is computed) and the Momentum BN weight.
  void BeforeStep(const StepContext& step) override;
  at::Tensor Loss(const std::vector<at::Tensor>& crop_groups, const StepContext& step) override;
  /// The two views' loss; the teacher sees view 2 first (its Momentum BNs hold view 2's
  /// statistics and update with both on view 1), as the original.
  at::Tensor SymmetricLoss(const at::Tensor& view1, const at::Tensor& view2);
  std::vector<ParameterGroup> ParameterGroups() override;
  /// The Momentum BN schedule position.
  c10::impl::GenericDict ExtraState() override;
  absl::Status LoadExtraState(const c10::impl::GenericDict& state) override;
  backbones::Backbone& EvalBackbone() override { return *teacher_encoder; }
  std::vector<std::pair<std::string, BackboneLocation>> Backbones() const override;
  std::vector<std::pair<std::string, double>> ScheduledValues() const override {
    return {{"momentum", current_momentum_}, {"m_bn", schedule_->m_bn}};
  }
  /// embedding_spread of the student's first-view predictions.
  std::vector<Indicator> Indicators() const override;
  nlohmann::json Config() const override;

  /// EMA over the parameters the teacher shares with the student (backbone and
  /// projector); the teacher's BN statistics are its own.
  void UpdateTeacher(double momentum);

  const M2TeacherOptions& options() const { return options_; }
  const nn::MomentumBatchNormSchedule& momentum_bn() const { return *schedule_; }

  std::shared_ptr<backbones::Backbone> student_encoder;
  std::shared_ptr<backbones::Backbone> teacher_encoder;

 private:
  M2TeacherImpl(const M2TeacherOptions& options,
                std::shared_ptr<distributed::Communicator> communicator);

  M2TeacherOptions options_;
  std::shared_ptr<nn::MomentumBatchNormSchedule> schedule_;
  std::vector<std::pair<at::Tensor, at::Tensor>> shared_;  ///< (student, teacher) pairs
  double current_momentum_ = 0;
  at::Tensor last_predictions_;  ///< the last step's first-view predictions, for Indicators()
  int64_t next_step_ = 0;
  int64_t total_steps_ = 0;
};

}  // namespace ssl::methods

#endif  // SSL_METHODS_M2TEACHER_H_
