// SwAV (Caron et al. 2020) as VISSL trains it: multi-crop views grouped by resolution,
// the trunk run once per group and the head on all crops together; codes of the
// assignment crops from distributed Sinkhorn-Knopp (optionally over a queue of past
// embeddings); the swapped prediction loss of every other crop against them;
// prototypes L2-normalized before each step and frozen for the first iterations.
// Module names are VISSL's: trunk._feature_blocks.<torchvision names>,
// heads.0.projection_head.*, heads.0.prototypes<i>.weight.
#ifndef SSL_METHODS_SWAV_H_
#define SSL_METHODS_SWAV_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ssl/backbones/backbone.h"
#include "ssl/data/views.h"
#include "ssl/distributed/communicator.h"
#include "ssl/methods/method.h"
#include "ssl/nn/swav_head.h"

namespace ssl::methods {

/// VISSL's LOSS.swav_loss options (names as there) and the model around them.
struct SwavOptions {
  // MODEL.TRUNK
  std::string arch = "resnet50";
  bool cifar_stem = false;
  bool zero_init_residual = false;  ///< RESNETS.ZERO_INIT_RESIDUAL
  // MODEL.HEAD.PARAMS swav_head; dims[0] must be the trunk's feature width.
  nn::SwavHeadOptions head;
  // LOSS.swav_loss
  double temperature = 0.1;
  bool use_double_precision = false;
  bool normalize_last_layer = true;
  int num_iters = 3;
  double epsilon = 0.05;
  int64_t temp_hard_assignment_iters = 0;
  std::vector<int> crops_for_assign = {0, 1};
  /// queue.queue_length over all processes, already rounded down to a multiple of the
  /// global batch (VISSL's rule); 0 disables the queue. Each process keeps
  /// queue_length / world_size embeddings per assignment crop.
  int64_t queue_length = 0;
  /// queue.start_iter: the queue is used and filled from this iteration on.
  int64_t queue_start_iter = 0;
  /// The two originals start the queue differently. kVissl (VISSL's SwAVCriterion, the
  /// default for VISSL configs): it holds random rows (uniform in +-sqrt(3 / dim), about
  /// unit norm) from the start and is used at once from start_iter. kSwavRepo (the SwAV
  /// repository's main_swav.py; queue.rule: swav_repo): it starts zero-filled and is used
  /// once every row holds a real embedding.
  enum class QueueRule { kVissl, kSwavRepo };
  QueueRule queue_rule = QueueRule::kVissl;
  // MODEL.TEMP_FROZEN_PARAMS_ITER_MAP for the prototypes.
  int64_t prototypes_frozen_iters = 0;
  // OPTIMIZER.regularize_bn / regularize_bias: false puts those in a decay-free group.
  bool regularize_bn = true;
  bool regularize_bias = true;
  /// OPTIMIZER.non_regularized_parameters: parameters whose name (VISSL's, e.g.
  /// "trunk._feature_blocks.bn1.weight", "heads.0.prototypes0.weight") contains one of
  /// these strings get no weight decay either.
  std::vector<std::string> non_regularized_parameters;
  // DATA.TRAIN.TRANSFORMS: the multi-crop recipe.
  data::MultiCropOptions crops;
};

class SwavImpl : public Method {
 public:
  /// InvalidArgument for inconsistent options (head width vs trunk, assignment crops
  /// out of range, a queue that does not split over the processes, ...).
  static absl::StatusOr<std::shared_ptr<SwavImpl>> Create(
      const SwavOptions& options, std::shared_ptr<distributed::Communicator> communicator);

  // Method.
  std::string name() const override { return "swav"; }
  data::ViewRecipe Views() const override;
  /// Normalizes the prototypes (normalize_last_layer) and decides whether this step
  /// uses the queue.
  void BeforeStep(const StepContext& step) override;
  at::Tensor Loss(const std::vector<at::Tensor>& crop_groups, const StepContext& step) override;
  std::vector<ParameterGroup> ParameterGroups() override;
  /// The queue of every process (gathered) and how full it is.
  c10::impl::GenericDict ExtraState() override;
  absl::Status LoadExtraState(const c10::impl::GenericDict& state) override;
  backbones::Backbone& EvalBackbone() override { return *backbone_; }
  std::vector<std::pair<std::string, BackboneLocation>> Backbones() const override;
  std::vector<std::pair<std::string, double>> ScheduledValues() const override;
  /// From the last step, first prototype layer and first assignment crop:
  /// codes_perplexity (how many prototypes a sample's code spreads over; K when the
  /// codes are uniform), codes_batch_perplexity (how many the batch's codes use),
  /// prediction_entropy (of softmax(scores / temperature), ln K when uniform),
  /// prototypes_used (distinct argmax prototypes over the batch's crops),
  /// embedding_spread (EmbeddingSpread of every crop's embedding; 0 at collapse) and
  /// loss_minus_ln_k (0 is the trivial loss of uniform predictions). The last two are on
  /// the progress line: near-zero spread is collapse, a healthy spread with the loss
  /// near ln K is slow learning.
  std::vector<Indicator> Indicators() const override;
  /// VISSL's rank<r>_scores<i>.pth and rank<r>_assignments<i>.pth of the last step.
  std::vector<std::string> DumpDiagnostics(const std::string& dir) override;
  nlohmann::json Config() const override;

  /// The loss of one prototype layer's scores [num_crops * b, K] (crop-major), with
  /// `queue_scores` (per assignment crop, [L, K], or empty) prepended to Sinkhorn's
  /// input. Exposed for tests.
  at::Tensor SwappedPredictionLoss(const at::Tensor& scores,
                                   const std::vector<at::Tensor>& queue_scores,
                                   bool hard_assignment);

  const SwavOptions& options() const { return options_; }
  int num_crops() const;
  int64_t local_queue_length() const { return local_queue_length_; }
  int64_t queue_filled() const { return queue_filled_; }
  bool using_queue() const { return use_queue_; }
  /// [crops_for_assign, local queue length, embedding dim], newest first.
  const at::Tensor& embedding_queue() const { return queue_; }

  nn::SwavHead head{nullptr};

 private:
  SwavImpl(const SwavOptions& options, std::shared_ptr<distributed::Communicator> communicator);
  void Enqueue(const at::Tensor& embedding, int64_t batch);

  SwavOptions options_;
  std::shared_ptr<distributed::Communicator> communicator_;
  std::shared_ptr<backbones::Backbone> backbone_;  ///< trunk._feature_blocks
  int64_t local_queue_length_ = 0;
  at::Tensor queue_;
  int64_t queue_filled_ = 0;
  bool queue_active_ = false;    ///< this step enqueues (step >= start_iter)
  bool use_queue_ = false;       ///< this step's codes use the queue (active and full)
  int64_t iterations_done_ = 0;  ///< VISSL's swav_criterion.num_iteration
  // The last step's head-0 scores and codes (DumpDiagnostics, Indicators), embeddings
  // and loss (Indicators).
  at::Tensor last_scores_;
  std::vector<at::Tensor> last_codes_;
  at::Tensor last_embedding_;
  at::Tensor last_loss_;
};

}  // namespace ssl::methods

#endif  // SSL_METHODS_SWAV_H_
