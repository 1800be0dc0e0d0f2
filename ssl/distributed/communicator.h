// The collectives the methods use, behind one interface with a world-size-1 path, so
// single-process runs need no process group (a pain point of the originals). The c10d
// implementation lives in process_group.h.
#ifndef SSL_DISTRIBUTED_COMMUNICATOR_H_
#define SSL_DISTRIBUTED_COMMUNICATOR_H_

#include <ATen/core/Tensor.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "absl/status/statusor.h"

namespace ssl::distributed {

/// Thrown by a collective that cannot complete: a peer died, hung past the timeout, or
/// the rendezvous store is gone. The message names the missing rank where it is known.
class CollectiveError : public std::runtime_error {
 public:
  explicit CollectiveError(const std::string& message) : std::runtime_error(message) {}
};

/// An asynchronous all-reduce in flight; Wait() leaves the sum in the tensor given.
class PendingReduction {
 public:
  virtual ~PendingReduction() = default;
  virtual void Wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  /// Processes on this machine (VISSL's group size -1 for SyncBN).
  virtual int local_world_size() const = 0;
  /// Every process's `tensor` (same shape everywhere) concatenated along dim 0 in rank
  /// order, without gradient: MoCo v3's concat_all_gather.
  virtual at::Tensor AllGather(const at::Tensor& tensor) = 0;
  /// In-place sum over processes (Sinkhorn, metrics).
  virtual void AllReduceSum(at::Tensor& tensor) = 0;
  /// Starts an in-place sum over processes; the caller keeps `tensor` alive until Wait.
  virtual std::unique_ptr<PendingReduction> AllReduceSumAsync(at::Tensor tensor) = 0;
  /// In-place copy of `root`'s tensor to every process (initial weights).
  virtual void Broadcast(at::Tensor& tensor, int root) = 0;
  virtual void Barrier() = 0;
  /// The communicator of this process's group when the processes are split into
  /// consecutive groups of `group_size` (which must divide the world size). Every
  /// process must call it with the same size.
  virtual absl::StatusOr<std::shared_ptr<Communicator>> Subgroup(int group_size) = 0;
};

/// The world-size-1 communicator: gathers and reductions are identities.
std::shared_ptr<Communicator> MakeLocalCommunicator();

/// VISSL's SyncBN group semantics: -1 = the processes of one machine, 0 = all
/// processes, N = consecutive groups of N processes.
absl::StatusOr<std::shared_ptr<Communicator>> SyncBatchNormGroup(
    const std::shared_ptr<Communicator>& communicator, int group_size);

}  // namespace ssl::distributed

#endif  // SSL_DISTRIBUTED_COMMUNICATOR_H_
