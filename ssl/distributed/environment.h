// Where this process sits in a multi-process job, resolved from explicit flags or from
// the conventions launchers use: torchrun (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK,
// LOCAL_RANK), SLURM (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, first host of
// SLURM_JOB_NODELIST) and Momentum^2 Teacher's MACHINE / MACHINE_TOTAL.
#ifndef SSL_DISTRIBUTED_ENVIRONMENT_H_
#define SSL_DISTRIBUTED_ENVIRONMENT_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"

namespace ssl::distributed {

struct DistributedConfig {
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  int world_size = 1;
  int rank = 0;
  int local_rank = 0;
  int local_world_size = 1;
  /// "single", "flags", "torchrun", "slurm" or "machine": what the values came from.
  std::string source = "single";
};

/// MoCo v3's explicit flags: --dist_url tcp://host:port --world_size N --rank R (here
/// counted in processes), and --nproc_per_node for the MACHINE convention.
struct DistributedFlags {
  std::string dist_url;
  int world_size = -1;
  int rank = -1;
  /// Processes per machine; 0 = not given (MACHINE convention: 1; with --dist_url: one
  /// per visible GPU).
  int nproc_per_node = 0;
  /// GPUs this process sees (0 on the CPU): with --dist_url and no launcher's
  /// LOCAL_RANK, rank r takes GPU r % visible_gpus of its machine.
  int visible_gpus = 0;
};

using Getenv = std::function<const char*(const char*)>;

/// Explicit flags win, then torchrun's variables, then SLURM's, then MACHINE /
/// MACHINE_TOTAL (rank = MACHINE * nproc_per_node + LOCAL_RANK); with none of them the
/// job is a single process. Inconsistent values are one InvalidArgument naming them.
absl::StatusOr<DistributedConfig> ResolveDistributedConfig(const DistributedFlags& flags,
                                                           const Getenv& getenv);

/// The first host of a SLURM node list: "node[003-005,009],gpu1" -> "node003".
std::string FirstSlurmHost(const std::string& node_list);

}  // namespace ssl::distributed

#endif  // SSL_DISTRIBUTED_ENVIRONMENT_H_
