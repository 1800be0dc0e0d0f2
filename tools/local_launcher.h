// Starting the local processes of a multi-process job, torchrun's standalone way: each
// child gets MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK, LOCAL_RANK and
// LOCAL_WORLD_SIZE; SIGINT/SIGTERM are forwarded; when one child fails the others are
// stopped (SIGTERM, then SIGKILL after a grace period) and its status is returned.
#ifndef TOOLS_LOCAL_LAUNCHER_H_
#define TOOLS_LOCAL_LAUNCHER_H_

#include <string>
#include <vector>

namespace ssl::tools {

struct LaunchOptions {
  int nproc_per_node = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  int grace_seconds = 5;
  std::string name = "launch";  ///< prefixes the launcher's own messages
};

/// Runs `command` (command[0] is the program, searched in PATH) once per local rank and
/// waits for all; returns 0, or the first failing rank's exit code (128 + signal when
/// killed). Invalid options print one line and return 2.
int LaunchLocalRanks(const LaunchOptions& options, const std::vector<std::string>& command);

/// A TCP port on 127.0.0.1 that was free a moment ago (for a single-machine job).
int FreeLocalPort();

}  // namespace ssl::tools

#endif  // TOOLS_LOCAL_LAUNCHER_H_
