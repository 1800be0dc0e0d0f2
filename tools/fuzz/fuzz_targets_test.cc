// Replays the fuzz targets over seeds of every input kind and deterministic mutations of
// them (truncations, byte flips, header fields set to extremes), so that CI runs what
// the fuzzers check; tools/fuzz/run_fuzzers.sh explores further with libFuzzer.
//
// The targets return 0 for every input that does not crash them, so the inputs run in a
// child process (this binary again, with --replay_child) under an address-space limit
// and a deadline per input: a crash, a hang or an allocation past the limit is a failed
// assertion naming the input, not a dead, stuck or swapping test binary.
#include "tools/fuzz/fuzz_targets.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <new>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "ssl/data/image_io.h"

extern char** environ;

namespace ssl::fuzz {
namespace {

using Target = int (*)(const uint8_t*, size_t);

// Address space a child may take beyond what it holds when it starts.
constexpr uint64_t kMemoryBudgetBytes = uint64_t{2} << 30;
// Exit codes of the child besides 0 (every input ran and returned 0).
constexpr int kExitAllocationRefused = 86;
constexpr int kExitNonzeroReturn = 87;
constexpr int kExitBadInvocation = 88;
// The pipe on which the child announces the index of each input before running it.
constexpr int kProgressFd = 3;

// Targets that misbehave on purpose: the harness must report each of them.
int AbortTarget(const uint8_t*, size_t size) {
  if (size == 1) std::abort();
  return 0;
}
int SpinTarget(const uint8_t*, size_t size) {
  volatile bool forever = size == 1;
  while (forever) {
  }
  return 0;
}
int AllocateTarget(const uint8_t*, size_t size) {
  if (size == 1) {
    std::vector<char> huge(size_t{16} << 30);  // 16 GiB: past any child's limit
    return huge[12345];
  }
  return 0;
}

Target TargetByName(std::string_view name) {
  if (name == "image") return DecodeImageTarget;
  if (name == "torch_file") return TorchFileTarget;
  if (name == "vissl_config") return VisslConfigTarget;
  if (name == "transfer_files") return TransferFilesTarget;
  if (name == "abort_on_one_byte") return AbortTarget;
  if (name == "spin_on_one_byte") return SpinTarget;
  if (name == "allocate_on_one_byte") return AllocateTarget;
  return nullptr;
}

void WriteInputs(const std::string& path, const std::vector<std::string>& inputs) {
  std::ofstream out(path, std::ios::binary);
  for (const std::string& input : inputs) {
    const uint64_t size = input.size();
    out.write(reinterpret_cast<const char*>(&size), sizeof(size));
    out.write(input.data(), static_cast<std::streamsize>(size));
  }
}

// The child: runs every input of `inputs_path` through the target, announcing each
// index on kProgressFd first, under an address-space limit.
int ReplayChild(const std::string& target_name, const std::string& inputs_path) {
  const Target target = TargetByName(target_name);
  std::ifstream in(inputs_path, std::ios::binary);
  if (target == nullptr || !in.good()) return kExitBadInvocation;
  std::vector<std::string> inputs;
  for (uint64_t size; in.read(reinterpret_cast<char*>(&size), sizeof(size));) {
    std::string input(size, '\0');
    if (!in.read(input.data(), static_cast<std::streamsize>(size))) return kExitBadInvocation;
    inputs.push_back(std::move(input));
  }
  long pages = 0;
  if (FILE* statm = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(statm, "%ld", &pages) != 1) pages = 0;
    std::fclose(statm);
  }
  const rlimit limit{static_cast<rlim_t>(pages) * sysconf(_SC_PAGESIZE) + kMemoryBudgetBytes,
                     RLIM_INFINITY};
  if (pages == 0 || setrlimit(RLIMIT_AS, &limit) != 0) return kExitBadInvocation;
  // operator new calls this when the limit refuses an allocation: report it rather than
  // let a reader turn std::bad_alloc into an ordinary error status.
  std::set_new_handler([] { _exit(kExitAllocationRefused); });
  for (uint64_t i = 0; i < inputs.size(); ++i) {
    if (write(kProgressFd, &i, sizeof(i)) != sizeof(i)) return kExitBadInvocation;
    const std::string& input = inputs[i];
    if (target(reinterpret_cast<const uint8_t*>(input.data()), input.size()) != 0) {
      return kExitNonzeroReturn;
    }
  }
  return 0;
}

// Runs the inputs through the named target in a child process; returns "" when every
// input returned normally, else one sentence naming the input and what happened.
std::string ReplayInChild(const std::string& target_name, const std::vector<std::string>& inputs,
                          std::chrono::seconds deadline_per_input = std::chrono::seconds(20)) {
  static int batch = 0;
  const std::string path =
      ::testing::TempDir() + "/replay_" + std::to_string(getpid()) + "_" + std::to_string(batch++);
  WriteInputs(path, inputs);
  int progress[2];
  if (pipe2(progress, O_CLOEXEC) != 0) return "cannot make a pipe";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, progress[1], kProgressFd);
  std::vector<std::string> args = {"/proc/self/exe", "--replay_child", target_name, path};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  // Few malloc arenas: each reserves address space, and the limit counts it.
  std::vector<std::string> env_strings = {"MALLOC_ARENA_MAX=2", "OMP_NUM_THREADS=1"};
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  std::vector<char*> env;
  for (std::string& e : env_strings) env.push_back(e.data());
  env.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  close(progress[1]);
  if (spawned != 0) {
    close(progress[0]);
    return "cannot start the child: " + std::string(std::strerror(spawned));
  }
  int64_t current = -1;
  std::string outcome;
  for (;;) {
    // Starting the child (loading LibTorch, reading the inputs) is no input's time: it
    // gets a minute, as a loaded machine may need.
    const auto deadline = current < 0 ? std::chrono::seconds(60) : deadline_per_input;
    pollfd ready{progress[0], POLLIN, 0};
    const int polled =
        poll(&ready, 1, static_cast<int>(std::chrono::milliseconds(deadline).count()));
    if (polled < 0 && errno == EINTR) continue;  // a signal is not the child's exit
    if (polled == 0) {
      kill(pid, SIGKILL);
      outcome = current < 0 ? "the child for " + target_name + " did not start within 60 s"
                            : "input " + std::to_string(current) + " of " + target_name +
                                  " ran past " + std::to_string(deadline.count()) + " s";
      break;
    }
    uint64_t index = 0;
    const ssize_t got = polled > 0 ? read(progress[0], &index, sizeof(index)) : -1;
    if (got == static_cast<ssize_t>(sizeof(index))) {
      current = static_cast<int64_t>(index);
      continue;
    }
    break;  // end of file: the child has exited
  }
  close(progress[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  std::filesystem::remove(path);
  if (!outcome.empty()) return outcome;
  const std::string which = "input " + std::to_string(current) + " of " + target_name;
  if (WIFSIGNALED(status)) {
    return which + " killed the reader with signal " + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  }
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == kExitAllocationRefused) {
    return which + " made the reader allocate past the " +
           std::to_string(kMemoryBudgetBytes >> 30) + " GiB limit";
  }
  if (code == kExitNonzeroReturn) return which + " returned nonzero";
  if (code != 0) return "the child for " + target_name + " exited with code " + std::to_string(code);
  if (current + 1 != static_cast<int64_t>(inputs.size())) {
    return "the child for " + target_name + " ran " + std::to_string(current + 1) + " of " +
           std::to_string(inputs.size()) + " inputs";
  }
  return "";
}

std::vector<std::string> ImageSeeds() {
  data::Image image(24, 32);
  for (size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = static_cast<uint8_t>(i * 7);
  std::vector<std::string> seeds = {data::EncodeJpeg(image), data::EncodeGrayscaleJpeg(image),
                                    data::EncodeCmykJpeg(image), data::EncodePng(image)};
  cv::Mat sixteen(20, 20, CV_16UC3, cv::Scalar(1000, 30000, 65535));
  std::vector<uchar> encoded;
  cv::imencode(".png", sixteen, encoded);
  seeds.emplace_back(encoded.begin(), encoded.end());
  cv::imencode(".bmp", cv::Mat(9, 13, CV_8UC3, cv::Scalar(1, 2, 3)), encoded);
  seeds.emplace_back(encoded.begin(), encoded.end());
  return seeds;
}

// Every prefix at a stride, every byte xor-ed at a stride, and each 4-byte window set to
// 0xff (dimension fields claiming billions of pixels among them).
std::vector<std::string> Mutations(const std::string& seed) {
  std::vector<std::string> inputs;
  const size_t stride = std::max<size_t>(1, seed.size() / 200);
  for (size_t n = 0; n < seed.size(); n += stride) inputs.push_back(seed.substr(0, n));
  for (size_t i = 0; i < seed.size(); i += stride) {
    std::string flipped = seed;
    flipped[i] = static_cast<char>(flipped[i] ^ 0xa5);
    inputs.push_back(std::move(flipped));
  }
  for (size_t i = 0; i + 4 <= std::min<size_t>(seed.size(), 400); ++i) {
    std::string extreme = seed;
    extreme.replace(i, 4, "\xff\xff\xff\x7f");
    inputs.push_back(std::move(extreme));
  }
  return inputs;
}

std::string ReadFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream bytes;
  bytes << file.rdbuf();
  return bytes.str();
}

// The harness itself: a crash, a hang and a runaway allocation are each reported with
// the input that caused them, and the inputs before it ran.
TEST(FuzzReplayTest, ReportsACrashAHangAndARunawayAllocationWithTheInput) {
  const std::vector<std::string> inputs = {"ab", "", "x", "cd"};  // input 2 misbehaves
  EXPECT_EQ(ReplayInChild("abort_on_one_byte", {"ab", "cd"}), "");
  EXPECT_EQ(ReplayInChild("abort_on_one_byte", inputs),
            "input 2 of abort_on_one_byte killed the reader with signal 6 (Aborted)");
  EXPECT_EQ(ReplayInChild("spin_on_one_byte", inputs, std::chrono::seconds(1)),
            "input 2 of spin_on_one_byte ran past 1 s");
  EXPECT_EQ(ReplayInChild("allocate_on_one_byte", inputs),
            "input 2 of allocate_on_one_byte made the reader allocate past the 2 GiB limit");
  EXPECT_EQ(ReplayInChild("no_such_target", inputs),
            "the child for no_such_target exited with code 88");
}

TEST(FuzzTargetsTest, ImageDecoderSurvivesMutationsOfEveryFormat) {
  size_t runs = 0;
  for (const std::string& seed : ImageSeeds()) {
    ASSERT_TRUE(data::DecodeImage(seed).ok());  // the seeds themselves are valid
    const std::vector<std::string> inputs = Mutations(seed);
    EXPECT_EQ(ReplayInChild("image", inputs), "");
    runs += inputs.size();
  }
  EXPECT_GT(runs, 2000);
}

TEST(FuzzTargetsTest, TorchFileReaderSurvivesMutations) {
  // A protocol-2 legacy file header and a zip signature with garbage after it.
  const std::string seeds[] = {
      std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.\x80\x02M\xe9\x03.") +
          "\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x05u.\x80\x02]q\x00.",
      std::string("PK\x03\x04", 4) + std::string(200, '\0')};
  for (const std::string& seed : seeds) EXPECT_EQ(ReplayInChild("torch_file", Mutations(seed)), "");
}

TEST(FuzzTargetsTest, VisslConfigReaderSurvivesMutations) {
  const std::string text = ReadFile("configs/config/ssl_cpu/swav_resnet18w025_64px.yaml");
  ASSERT_FALSE(text.empty());
  const std::string seeds[] = {text, "config: [1, {a: *b}]", "config:\n  DATA: !!binary x"};
  for (const std::string& seed : seeds) {
    EXPECT_EQ(ReplayInChild("vissl_config", Mutations(seed)), "");
  }
}

TEST(FuzzTargetsTest, TransferFileReadersSurviveMutations) {
  const std::string dir = ::testing::TempDir() + "/transfer_fixtures";
  if (system(("/usr/bin/python3 transfer/make_transfer_fixtures.py " + dir + " 2>/dev/null")
                 .c_str()) != 0) {
    GTEST_SKIP() << "Debian's python3-numpy / python3-scipy write the seeds";
  }
  size_t runs = 0;
  for (const char* file : {"cifar-10-batches-py/batches.meta", "cifar-10-batches-py/data_batch_1",
                           "cifar-100-python/meta", "flowers/imagelabels.mat", "flowers/setid.mat"}) {
    const std::string bytes = ReadFile(dir + "/" + file);
    ASSERT_FALSE(bytes.empty()) << file;
    const std::vector<std::string> inputs = Mutations(bytes);
    EXPECT_EQ(ReplayInChild("transfer_files", inputs), "") << file;
    runs += inputs.size();
  }
  EXPECT_GT(runs, 1000);
}

// Inputs the fuzzers found (tools/fuzz/testdata/<target>_<what>), replayed as they are.
TEST(FuzzTargetsTest, FoundInputsStayHarmless) {
  int replayed = 0;
  for (const auto& entry : std::filesystem::directory_iterator("tools/fuzz/testdata")) {
    const std::string name = entry.path().filename().string();
    std::string target;
    for (const char* prefix : {"torch_file", "transfer_files", "image"}) {
      if (name.rfind(std::string(prefix) + "_", 0) == 0) target = prefix;
    }
    if (target.empty()) {
      ADD_FAILURE() << name << " names no target";
      continue;
    }
    EXPECT_EQ(ReplayInChild(target, {ReadFile(entry.path().string())}), "") << name;
    ++replayed;
  }
  EXPECT_GE(replayed, 1);
}

}  // namespace
}  // namespace ssl::fuzz

int main(int argc, char** argv) {
  if (argc == 4 && std::string_view(argv[1]) == "--replay_child") {
    return ssl::fuzz::ReplayChild(argv[2], argv[3]);
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
