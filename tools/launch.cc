// Starts N local processes of a program with torchrun's environment (MASTER_ADDR,
// MASTER_PORT, WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE), like torchrun's
// standalone mode; forwards SIGINT/SIGTERM to them; when one fails, stops the others
// and exits with the failing rank's status (its exit code, or 128 + signal).
//
//   bazel run //tools:launch -- --nproc_per_node=2 -- $PWD/bazel-bin/tools/main_moco ...
//   (multi-machine: --nnodes=2 --node_rank=0|1 --master_addr=<node 0> on each machine)
#include <gflags/gflags.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

DEFINE_int32(nproc_per_node, 1, "Processes to start on this machine.");
DEFINE_int32(nnodes, 1, "Machines in the job.");
DEFINE_int32(node_rank, 0, "This machine's index in [0, nnodes).");
DEFINE_string(master_addr, "127.0.0.1", "Address of node 0 (the TCPStore host).");
DEFINE_int32(master_port, 29500, "Port of the TCPStore on node 0.");
DEFINE_int32(grace_seconds, 5, "After a failure, time the others get after SIGTERM before SIGKILL.");

namespace {

std::vector<pid_t> children;
volatile sig_atomic_t forwarded_signal = 0;

void Forward(int signal_number) {
  forwarded_signal = signal_number;
  for (pid_t pid : children) {
    if (pid > 0) kill(pid, signal_number);
  }
}

int StatusToExitCode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage("launch [flags] -- program [args...]: start local ranks of a job");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (argc < 2) {
    std::cerr << "launch: no program given; usage: launch --nproc_per_node=N -- program args\n";
    return 2;
  }
  if (FLAGS_nproc_per_node < 1 || FLAGS_nnodes < 1 || FLAGS_node_rank < 0 ||
      FLAGS_node_rank >= FLAGS_nnodes) {
    std::cerr << "launch: need nproc_per_node >= 1 and 0 <= node_rank < nnodes, got "
              << FLAGS_nproc_per_node << ", " << FLAGS_node_rank << ", " << FLAGS_nnodes << "\n";
    return 2;
  }
  const int world_size = FLAGS_nnodes * FLAGS_nproc_per_node;
  std::vector<int> ranks;
  for (int local = 0; local < FLAGS_nproc_per_node; ++local) {
    const int rank = FLAGS_node_rank * FLAGS_nproc_per_node + local;
    const pid_t pid = fork();
    if (pid < 0) {
      std::cerr << "launch: fork failed\n";
      Forward(SIGKILL);
      return 1;
    }
    if (pid == 0) {
      setenv("MASTER_ADDR", FLAGS_master_addr.c_str(), 1);
      setenv("MASTER_PORT", std::to_string(FLAGS_master_port).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(world_size).c_str(), 1);
      setenv("RANK", std::to_string(rank).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(local).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(FLAGS_nproc_per_node).c_str(), 1);
      execvp(argv[1], argv + 1);
      std::cerr << "launch: cannot execute " << argv[1] << "\n";
      _exit(127);
    }
    children.push_back(pid);
    ranks.push_back(rank);
  }
  signal(SIGINT, Forward);
  signal(SIGTERM, Forward);
  int exit_code = 0;
  size_t running = children.size();
  bool stopping = false;
  auto stop_deadline = std::chrono::steady_clock::time_point::max();
  while (running > 0) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, stopping ? WNOHANG : 0);
    if (pid == 0) {  // stopping, nobody exited yet
      if (std::chrono::steady_clock::now() > stop_deadline) {
        for (pid_t child : children) {
          if (child > 0) kill(child, SIGKILL);
        }
        stop_deadline = std::chrono::steady_clock::time_point::max();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    if (pid < 0) break;
    --running;
    size_t index = 0;
    while (index < children.size() && children[index] != pid) ++index;
    if (index == children.size()) continue;
    const int code = StatusToExitCode(status);
    children[index] = -1;  // reaped: never signalled again
    if (code != 0 && !stopping && forwarded_signal == 0) {
      std::cerr << "launch: rank " << ranks[index] << " failed with "
                << (WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                        : "exit code " + std::to_string(code))
                << "; stopping the other ranks\n";
      exit_code = code;
      stopping = true;
      for (pid_t child : children) {
        if (child > 0) kill(child, SIGTERM);
      }
      stop_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(FLAGS_grace_seconds);
    } else if (code != 0 && exit_code == 0 && forwarded_signal != 0) {
      exit_code = code;
    }
  }
  return exit_code;
}
