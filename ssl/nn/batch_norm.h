// BatchNorm layers whose training-mode statistics can come from more than this
// process's batch: per process (plain BN), synchronized over a process group (SyncBN,
// with VISSL's group sizes), split into sub-batches in one process (split BN, which
// emulates the per-GPU statistics of an N-GPU run on one device), or Momentum BN
// (Momentum^2 Teacher's teacher: batch and running statistics mixed by a scheduled
// m_bn). State-dict keys and eval mode are exactly torch.nn.BatchNorm{1,2}d's, so
// checkpoints do not depend on the mode (a teacher's Momentum BN statistics load into a
// plain BN), and world size 1 in sync mode is bit-identical to plain BN.
#ifndef SSL_NN_BATCH_NORM_H_
#define SSL_NN_BATCH_NORM_H_

#include <torch/nn/cloneable.h>
#include <torch/nn/options/batchnorm.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "ssl/distributed/communicator.h"

namespace ssl::nn {

enum class BatchNormMode { kLocal, kSync, kSplit, kMomentum };

/// The schedule every Momentum BN of one network shares: m_bn goes from 1 (batch
/// statistics) to 0 (running statistics) along (cos(pi t / T) + 1) / 2; its owner sets
/// it before each step.
struct MomentumBatchNormSchedule {
  double m_bn = 1.0;
  /// Momentum^2 Teacher's quirk: its (already unbiased) batch variance is multiplied by
  /// n / (n - 1) again. On by default, as the published numbers come from it; off, the
  /// normalization mixes the biased batch variance and the running update uses the
  /// unbiased one, as plain BN does.
  bool double_unbias = true;
};

struct BatchNormSetting {
  BatchNormMode mode = BatchNormMode::kLocal;
  /// kSync: the processes whose statistics are pooled. kMomentum: when set, Momentum
  /// BN pools them too (an option; the original's Momentum BN is per process).
  std::shared_ptr<distributed::Communicator> group;
  /// kSplit: sub-batches; sample n goes to split n % splits, as a DistributedSampler
  /// would have sent it to process n % world_size.
  int splits = 1;
  /// kMomentum: the shared schedule.
  std::shared_ptr<MomentumBatchNormSchedule> momentum;
};

/// "local", "sync" (group size as in VISSL: -1 per machine, 0 global, N) or "split"
/// (with `splits` sub-batches). One clear error for a bad name or size.
absl::StatusOr<BatchNormSetting> MakeBatchNormSetting(
    const std::string& mode, int sync_group_size, int splits,
    const std::shared_ptr<distributed::Communicator>& communicator);

/// While alive on this thread, training-mode BatchNorm layers take each batch as
/// `views` interleaved batches (sample i belongs to view i % views) and normalize every
/// view with its own statistics, updating the running statistics (and
/// num_batches_tracked) once per view in view order: what one call per view computes,
/// in one call, so that the layers between them run on one larger batch. Needs the
/// process's own statistics (local BN, or sync BN in a single process); layers in other
/// modes throw std::invalid_argument.
class InterleavedViewsScope {
 public:
  explicit InterleavedViewsScope(int views);
  ~InterleavedViewsScope();
  InterleavedViewsScope(const InterleavedViewsScope&) = delete;
  InterleavedViewsScope& operator=(const InterleavedViewsScope&) = delete;
  /// 1 outside any scope.
  static int Current();

 private:
  int previous_;
};

/// BatchNorm over (N, C) or (N, C, L) inputs (1d) or (N, C, H, W) inputs (2d), with the
/// parameters and buffers of torch.nn.BatchNorm{1,2}d in the same order.
class BatchNormImpl : public torch::nn::Cloneable<BatchNormImpl> {
 public:
  BatchNormImpl(const torch::nn::BatchNormOptions& options, int spatial_dims);
  void reset() override;
  at::Tensor forward(const at::Tensor& input);
  void pretty_print(std::ostream& stream) const override;

  torch::nn::BatchNormOptions options;
  int spatial_dims;
  at::Tensor weight, bias, running_mean, running_var, num_batches_tracked;
  BatchNormSetting setting;
  /// kMomentum: the first view's batch mean and (unbiased) variance of this step, held
  /// until the second view's call updates the running statistics with their mean.
  at::Tensor pending_mean, pending_var;

 private:
  at::Tensor MomentumForward(const at::Tensor& input);
  at::Tensor InterleavedViewsForward(const at::Tensor& input, int views);
};
TORCH_MODULE(BatchNorm);

BatchNorm BatchNorm1d(const torch::nn::BatchNormOptions& options);
BatchNorm BatchNorm2d(const torch::nn::BatchNormOptions& options);

/// Gives every BatchNorm of ours inside `module` the setting; returns how many. A
/// Momentum BN keeps its mode unless `setting` is itself a Momentum BN setting (a
/// teacher's statistics are the method's, not the engine's BN choice).
int ConfigureBatchNorm(torch::nn::Module& module, const BatchNormSetting& setting);

/// A Momentum BN setting sharing `schedule`, per process or pooled over `group`.
BatchNormSetting MomentumBatchNormSetting(
    std::shared_ptr<MomentumBatchNormSchedule> schedule,
    std::shared_ptr<distributed::Communicator> group = nullptr);

}  // namespace ssl::nn

#endif  // SSL_NN_BATCH_NORM_H_
