#include "tools/local_launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <thread>

namespace ssl::tools {
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

int FreeLocalPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 29500;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  int port = 29500;
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  close(fd);
  return port;
}

int LaunchLocalRanks(const LaunchOptions& options, const std::vector<std::string>& command) {
  if (command.empty()) {
    std::cerr << options.name << ": no program given\n";
    return 2;
  }
  if (options.nproc_per_node < 1 || options.nnodes < 1 || options.node_rank < 0 ||
      options.node_rank >= options.nnodes) {
    std::cerr << options.name << ": need nproc_per_node >= 1 and 0 <= node_rank < nnodes, got "
              << options.nproc_per_node << ", " << options.node_rank << ", " << options.nnodes
              << "\n";
    return 2;
  }
  const int world_size = options.nnodes * options.nproc_per_node;
  std::vector<char*> argv;
  for (const std::string& arg : command) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  children.clear();
  std::vector<int> ranks;
  for (int local = 0; local < options.nproc_per_node; ++local) {
    const int rank = options.node_rank * options.nproc_per_node + local;
    const pid_t pid = fork();
    if (pid < 0) {
      std::cerr << options.name << ": fork failed\n";
      Forward(SIGKILL);
      return 1;
    }
    if (pid == 0) {
      setenv("MASTER_ADDR", options.master_addr.c_str(), 1);
      setenv("MASTER_PORT", std::to_string(options.master_port).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(world_size).c_str(), 1);
      setenv("RANK", std::to_string(rank).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(local).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(options.nproc_per_node).c_str(), 1);
      execvp(argv[0], argv.data());
      std::cerr << options.name << ": cannot execute " << command[0] << "\n";
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
      std::cerr << options.name << ": rank " << ranks[index] << " failed with "
                << (WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                        : "exit code " + std::to_string(code))
                << "; stopping the other ranks\n";
      exit_code = code;
      stopping = true;
      for (pid_t child : children) {
        if (child > 0) kill(child, SIGTERM);
      }
      stop_deadline =
          std::chrono::steady_clock::now() + std::chrono::seconds(options.grace_seconds);
    } else if (code != 0 && exit_code == 0 && forwarded_signal != 0) {
      exit_code = code;
    }
  }
  return exit_code;
}

}  // namespace ssl::tools
