#include "tests/subprocess.h"

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "ssl/data/synthetic.h"
#include "ssl/data/test_util.h"

namespace ssl::testing {

std::string Runfile(const std::string& path) {
  return std::string(std::getenv("TEST_SRCDIR")) + "/" + std::getenv("TEST_WORKSPACE") + "/" + path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

pid_t StartProcess(std::vector<std::string> args, const std::string& log,
                   const std::vector<std::pair<std::string, std::string>>& env) {
  const pid_t pid = fork();
  if (pid == 0) {
    if (freopen(log.c_str(), "w", stderr) == nullptr) _exit(126);
    for (const auto& [name, value] : env) setenv(name.c_str(), value.c_str(), 1);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

int WaitStatus(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

namespace {
int CodeOf(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }
}  // namespace

int ExitCode(pid_t pid) { return CodeOf(WaitStatus(pid)); }

int ExitCodeWithin(pid_t pid, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return CodeOf(status);
}

bool KillWhenFileAppears(pid_t pid, const std::string& path, int settle_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!std::filesystem::exists(path) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(settle_ms));
  if (kill(pid, SIGKILL) != 0) return false;
  return WIFSIGNALED(WaitStatus(pid));
}

std::string MakeTinyImageFolder(const std::string& name) {
  const std::string root = data::testing::MakeTempDir(name);
  data::SyntheticDatasetOptions options;
  options.num_classes = 4;
  options.train_per_class = 40;
  options.val_per_class = 2;
  options.image_size = 32;
  const absl::Status written = data::WriteSyntheticImageFolder(options, root);
  if (!written.ok()) {
    std::fprintf(stderr, "cannot write the test dataset: %s\n",
                 std::string(written.message()).c_str());
    std::abort();
  }
  return root;
}

}  // namespace ssl::testing
