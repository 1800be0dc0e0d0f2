// The collectives the methods use, behind one interface with a world-size-1 path, so
// single-process runs need no process group (a pain point of the originals).
#ifndef SSL_DISTRIBUTED_COMMUNICATOR_H_
#define SSL_DISTRIBUTED_COMMUNICATOR_H_

#include <ATen/core/Tensor.h>

#include <memory>

namespace ssl::distributed {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  /// Every process's `tensor` (same shape everywhere) concatenated along dim 0 in rank
  /// order, without gradient: MoCo v3's concat_all_gather.
  virtual at::Tensor AllGather(const at::Tensor& tensor) = 0;
  /// In-place sum over processes (Sinkhorn, metrics).
  virtual void AllReduceSum(at::Tensor& tensor) = 0;
  /// In-place copy of `root`'s tensor to every process (initial weights).
  virtual void Broadcast(at::Tensor& tensor, int root) = 0;
  virtual void Barrier() = 0;
};

/// The world-size-1 communicator: gathers and reductions are identities.
std::shared_ptr<Communicator> MakeLocalCommunicator();

}  // namespace ssl::distributed

#endif  // SSL_DISTRIBUTED_COMMUNICATOR_H_
