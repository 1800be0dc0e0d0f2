// Starts N local processes of a program with torchrun's environment (MASTER_ADDR,
// MASTER_PORT, WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE), like torchrun's
// standalone mode; forwards SIGINT/SIGTERM to them; when one fails, stops the others
// and exits with the failing rank's status (its exit code, or 128 + signal).
//
//   bazel run //tools:launch -- --nproc_per_node=2 -- $PWD/bazel-bin/tools/main_moco ...
//   (multi-machine: --nnodes=2 --node_rank=0|1 --master_addr=<node 0> on each machine)
#include <gflags/gflags.h>

#include <iostream>

#include "tools/cli_util.h"
#include "tools/local_launcher.h"

DEFINE_int32(nproc_per_node, 1, "Processes to start on this machine.");
DEFINE_int32(nnodes, 1, "Machines in the job.");
DEFINE_int32(node_rank, 0, "This machine's index in [0, nnodes).");
DEFINE_string(master_addr, "127.0.0.1", "Address of node 0 (the TCPStore host).");
DEFINE_int32(master_port, 29500, "Port of the TCPStore on node 0.");
DEFINE_int32(grace_seconds, 5,
             "After a failure, time the others get after SIGTERM before SIGKILL.");

int main(int argc, char** argv) {
  ssl::tools::ParseProgramFlags(&argc, &argv,
                                "launch [flags] -- program [args...]: start local ranks of a job");
  if (argc < 2) {
    std::cerr << "launch: no program given; usage: launch --nproc_per_node=N -- program args\n";
    return 2;
  }
  ssl::tools::LaunchOptions options;
  options.nproc_per_node = FLAGS_nproc_per_node;
  options.nnodes = FLAGS_nnodes;
  options.node_rank = FLAGS_node_rank;
  options.master_addr = FLAGS_master_addr;
  options.master_port = FLAGS_master_port;
  options.grace_seconds = FLAGS_grace_seconds;
  return ssl::tools::LaunchLocalRanks(options, std::vector<std::string>(argv + 1, argv + argc));
}
