#include "ssl/distributed/communicator.h"

#include "absl/strings/str_cat.h"

namespace ssl::distributed {
namespace {

class NoPendingReduction : public PendingReduction {
 public:
  void Wait() override {}
};

class LocalCommunicator : public Communicator,
                          public std::enable_shared_from_this<LocalCommunicator> {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  int local_world_size() const override { return 1; }
  at::Tensor AllGather(const at::Tensor& tensor) override { return tensor.detach(); }
  void AllReduceSum(at::Tensor&) override {}
  std::unique_ptr<PendingReduction> AllReduceSumAsync(at::Tensor) override {
    return std::make_unique<NoPendingReduction>();
  }
  void Broadcast(at::Tensor&, int) override {}
  void Barrier() override {}
  absl::StatusOr<std::shared_ptr<Communicator>> Subgroup(int group_size) override {
    if (group_size != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("a group of ", group_size, " processes does not fit in a single process"));
    }
    return shared_from_this();
  }
};

}  // namespace

std::shared_ptr<Communicator> MakeLocalCommunicator() {
  return std::make_shared<LocalCommunicator>();
}

absl::StatusOr<std::shared_ptr<Communicator>> SyncBatchNormGroup(
    const std::shared_ptr<Communicator>& communicator, int group_size) {
  if (group_size < -1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SyncBN group size must be -1 (per machine), 0 (global) or N > 0, got ", group_size));
  }
  const int size = group_size == -1  ? communicator->local_world_size()
                   : group_size == 0 ? communicator->world_size()
                                     : group_size;
  if (size == communicator->world_size()) return communicator;
  if (communicator->world_size() % size != 0) {
    return absl::InvalidArgumentError(absl::StrCat("SyncBN group size ", size,
                                                   " does not divide the world size ",
                                                   communicator->world_size()));
  }
  return communicator->Subgroup(size);
}

}  // namespace ssl::distributed
