// The c10d communicator: a TCPStore rendezvous (hosted by rank 0) and PyTorch's own
// ProcessGroupGloo (CPU) or ProcessGroupNCCL (only in builds against a CUDA LibTorch).
//
// Every process publishes a heartbeat counter in the store. When a collective fails (a
// peer closed its connection) or times out (a peer hangs), the survivor reads the
// counters to name the rank that stopped, and throws CollectiveError with that name,
// so a job never hangs forever and the log says which process to look at.
#ifndef SSL_DISTRIBUTED_PROCESS_GROUP_H_
#define SSL_DISTRIBUTED_PROCESS_GROUP_H_

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "ssl/distributed/communicator.h"
#include "ssl/distributed/environment.h"

namespace ssl::distributed {

struct ProcessGroupOptions {
  DistributedConfig config;
  std::string backend = "gloo";  ///< gloo | nccl
  /// How long a collective (and the rendezvous) may wait for a peer: PyTorch's default.
  std::chrono::milliseconds timeout = std::chrono::minutes(30);
  std::chrono::milliseconds heartbeat_interval = std::chrono::seconds(1);
};

/// The local communicator for a single process; otherwise joins (rank 0: hosts) the
/// rendezvous at config.master_addr:master_port and builds the process group. Errors
/// are one sentence: the port is taken, the store is unreachable, or which ranks did
/// not join within the timeout.
absl::StatusOr<std::shared_ptr<Communicator>> CreateCommunicator(
    const ProcessGroupOptions& options);

/// Whether this build can use `backend` ("gloo" always; "nccl" with a CUDA LibTorch).
bool BackendAvailable(const std::string& backend);

}  // namespace ssl::distributed

#endif  // SSL_DISTRIBUTED_PROCESS_GROUP_H_
