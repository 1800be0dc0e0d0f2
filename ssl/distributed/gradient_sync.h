// Data-parallel gradient averaging: parameters are packed into buckets (~25 MB, in
// reverse registration order, the order backward produces their gradients), and each
// bucket's all-reduce starts from an autograd hook the moment its last gradient is
// accumulated, so communication overlaps the rest of the backward pass as in DDP.
// Buckets are started strictly in order, so every process issues the same sequence
// of collectives.
#ifndef SSL_DISTRIBUTED_GRADIENT_SYNC_H_
#define SSL_DISTRIBUTED_GRADIENT_SYNC_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "ssl/distributed/communicator.h"

namespace torch::autograd {
struct Node;
}

namespace ssl::distributed {

class GradientAverager {
 public:
  /// `parameters`: those that receive gradients (frozen ones are skipped). With
  /// `overlap` false, nothing happens until Synchronize (for comparison).
  GradientAverager(std::vector<at::Tensor> parameters, std::shared_ptr<Communicator> communicator,
                   int64_t bucket_bytes = 25 << 20, bool overlap = true);
  ~GradientAverager();
  GradientAverager(const GradientAverager&) = delete;
  GradientAverager& operator=(const GradientAverager&) = delete;

  /// Call once after each backward: starts the buckets not yet started (a parameter
  /// without gradient counts as zero), waits for all, and leaves every .grad() equal to
  /// the mean over processes. Throws CollectiveError when a peer is gone.
  void Synchronize();

  int num_buckets() const { return static_cast<int>(buckets_.size()); }
  /// Buckets of the last Synchronize whose all-reduce had already started from a hook,
  /// i.e. overlapped with backward (the rest started in Synchronize).
  int overlapped_buckets() const { return overlapped_buckets_; }

 private:
  struct Bucket {
    std::vector<size_t> parameters;
    int64_t numel = 0;
    int remaining = 0;
    at::Tensor flat;
    std::unique_ptr<PendingReduction> reduction;
  };
  class ReadyHook;

  void OnGradientReady(size_t parameter);
  void StartReadyBuckets();
  void Start(Bucket& bucket);

  std::vector<at::Tensor> parameters_;
  std::shared_ptr<Communicator> communicator_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;
  std::vector<bool> ready_;
  size_t next_bucket_ = 0;  ///< buckets before this one have started this iteration
  int overlapped_buckets_ = 0;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;
  std::vector<uintptr_t> hook_keys_;
};

}  // namespace ssl::distributed

#endif  // SSL_DISTRIBUTED_GRADIENT_SYNC_H_
