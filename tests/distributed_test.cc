// Multi-process tests in real processes over loopback (Gloo): collectives and SyncBN
// groups, a MoCo v3 step on 2 processes equal to 1 process with the whole batch, lost
// ranks named within the timeout, and an exact resume after a killed 2-process run.
#include <ATen/ops/abs.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/allclose.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/tensor.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "ssl/data/test_util.h"
#include "ssl/train/checkpoint.h"
#include "tests/subprocess.h"

namespace ssl {
namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

using testing::ExitCode;
using testing::ReadFile;
using testing::Runfile;
using testing::StartProcess;

// A port that was free a moment ago (the kernel's choice for port 0).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

// Starts `args` with torchrun's variables for `rank` of `world` (`local_world` per
// machine); stderr goes to `log`.
pid_t StartRank(std::vector<std::string> args, int rank, int world, int local_world, int port,
                const std::string& log) {
  return StartProcess(std::move(args), log,
                      {{"MASTER_ADDR", "127.0.0.1"},
                       {"MASTER_PORT", std::to_string(port)},
                       {"WORLD_SIZE", std::to_string(world)},
                       {"RANK", std::to_string(rank)},
                       {"LOCAL_RANK", std::to_string(rank % local_world)},
                       {"LOCAL_WORLD_SIZE", std::to_string(local_world)}});
}

struct Job {
  std::vector<pid_t> pids;
  std::vector<std::string> logs;
};

Job StartWorkers(const std::string& dir, int world, int local_world,
                 const std::vector<std::string>& flags, int ranks_to_start = -1) {
  Job job;
  const int port = FreePort();
  if (ranks_to_start < 0) ranks_to_start = world;
  for (int rank = 0; rank < ranks_to_start; ++rank) {
    std::vector<std::string> args = {Runfile("tests/distributed_worker")};
    args.insert(args.end(), flags.begin(), flags.end());
    job.logs.push_back(dir + "/rank" + std::to_string(rank) + ".log");
    job.pids.push_back(StartRank(args, rank, world, local_world, port, job.logs.back()));
  }
  return job;
}

c10::impl::GenericDict Load(const std::string& path) {
  absl::StatusOr<c10::IValue> loaded = train::LoadIValue(path);
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  return loaded->toGenericDict();
}

TEST(DistributedTest, CollectivesAndSyncBatchNormGroupsOnFourProcesses) {
  const std::string dir = data::testing::MakeTempDir("collectives");
  // Two "machines" of two processes each.
  Job job = StartWorkers(dir, 4, 2, {"--scenario=collectives", "--output=" + dir + "/out"});
  for (size_t r = 0; r < job.pids.size(); ++r) {
    ASSERT_EQ(testing::ExitCodeWithin(job.pids[r], 120), 0) << ReadFile(job.logs[r]);
  }
  for (int r = 0; r < 4; ++r) {
    const c10::impl::GenericDict out = Load(dir + "/out." + std::to_string(r));
    EXPECT_TRUE(at::equal(out.at("gathered").toTensor(),
                          at::tensor({0.f, 0.f, 1.f, 10.f, 2.f, 20.f, 3.f, 30.f}).view({4, 2})));
    EXPECT_TRUE(at::equal(out.at("sum").toTensor(), at::tensor({10.f, 4.f})));  // 1+2+3+4, 4
    EXPECT_TRUE(at::equal(out.at("async_sum").toTensor(), at::tensor({6.f, 6.f, 6.f})));
    EXPECT_TRUE(at::equal(out.at("broadcast").toTensor(), at::tensor({2.f, 2.f})));  // root 2
    // -1: the two processes of this machine; 0: all four; 1: this process alone.
    EXPECT_EQ(out.at("group-1_size").toInt(), 2);
    EXPECT_EQ(out.at("group-1_rank").toInt(), r % 2);
    EXPECT_EQ(out.at("group-1_sum").toTensor().item<float>(), r < 2 ? 0 + 1 : 2 + 3);
    EXPECT_EQ(out.at("group0_size").toInt(), 4);
    EXPECT_EQ(out.at("group0_sum").toTensor().item<float>(), 6);
    EXPECT_EQ(out.at("group1_size").toInt(), 1);
    EXPECT_EQ(out.at("group1_sum").toTensor().item<float>(), r);
  }
}

// Runs the worker's `scenario` on `world` processes of one machine; rank 0's results.
c10::impl::GenericDict RunScenario(const std::string& name, int world,
                                   std::vector<std::string> flags) {
  const std::string dir = data::testing::MakeTempDir(name);
  flags.push_back("--output=" + dir + "/out");
  Job job = StartWorkers(dir, world, world, flags);
  for (size_t r = 0; r < job.pids.size(); ++r) {
    EXPECT_EQ(testing::ExitCodeWithin(job.pids[r], 120), 0) << ReadFile(job.logs[r]);
  }
  return Load(dir + "/out");
}

double MaxDifference(const c10::impl::GenericDict& a, const c10::impl::GenericDict& b,
                     const std::string& key) {
  const at::Tensor x = a.at(key).toTensor();
  const at::Tensor y = b.at(key).toTensor();
  EXPECT_EQ(x.sizes(), y.sizes()) << key;
  return (x - y).abs().max().item<double>();
}

TEST(DistributedTest, SyncBatchNormLayerOnTwoProcessesEqualsOneProcess) {
  const auto one = RunScenario("sync_bn_one", 1, {"--scenario=sync_bn"});
  const auto two = RunScenario("sync_bn_two", 2, {"--scenario=sync_bn"});
  // Two processes gather their samples rank by rank: 0, 2, 4, 6, then 1, 3, 5, 7.
  const at::Tensor order = at::tensor({0, 2, 4, 6, 1, 3, 5, 7}, at::kLong);
  for (const std::string key : {"outputs", "input_grads"}) {
    const at::Tensor reordered = one.at(key).toTensor().index_select(0, order);
    EXPECT_TRUE(at::allclose(two.at(key).toTensor(), reordered, 1e-5, 1e-6)) << key;
  }
  for (const std::string key : {"weight_grad", "running_mean", "running_var"}) {
    EXPECT_LT(MaxDifference(one, two, key), 1e-5) << key;
  }
  EXPECT_GT(one.at("running_var").toTensor().min().item<float>(), 1.5);  // not the init 1
}

// Reduced-precision inputs, as fp16/bf16 autocast gives BatchNorm on GPUs, with 65,536
// elements per channel and process (above half's largest finite value, 65,504) and an
// upstream gradient scaled by 1024 (a loss scale): outputs, input gradients, weight
// gradients and running statistics on two processes match one float32 process to the
// input dtype's precision, for SyncBN and for synchronized Momentum BN.
TEST(DistributedTest, ReducedPrecisionBatchNormOnTwoProcessesMatchesFloat32) {
  const at::Tensor order = at::tensor({0, 2, 4, 6, 1, 3, 5, 7}, at::kLong);
  for (const std::string mode : {"sync", "momentum"}) {
    const std::vector<std::string> flags = {"--scenario=sync_bn", "--bn_spatial=128",
                                            "--bn_grad_scale=1024", "--bn_mode=" + mode};
    std::vector<std::string> reference_flags = flags;
    reference_flags.push_back("--bn_dtype=float");
    const auto reference = RunScenario("bn_" + mode + "_float", 1, reference_flags);
    for (const std::string dtype : {"half", "bfloat16"}) {
      std::vector<std::string> reduced_flags = flags;
      reduced_flags.push_back("--bn_dtype=" + dtype);
      const auto reduced = RunScenario("bn_" + mode + "_" + dtype, 2, reduced_flags);
      // Relative to each quantity's largest magnitude: half keeps 11 bits, bfloat16 8.
      const double tolerance = dtype == "half" ? 4e-3 : 3e-2;
      for (const std::string key :
           {"outputs", "input_grads", "weight_grad", "running_mean", "running_var"}) {
        at::Tensor expected = reference.at(key).toTensor();
        if (expected.dim() == 4) expected = expected.index_select(0, order);
        const at::Tensor actual = reduced.at(key).toTensor();
        ASSERT_EQ(actual.sizes(), expected.sizes()) << key;
        ASSERT_TRUE(at::isfinite(actual).all().item<bool>()) << mode << " " << dtype << " " << key;
        const double scale = expected.abs().max().item<double>();
        EXPECT_LT((actual - expected).abs().max().item<double>(), tolerance * scale)
            << mode << " " << dtype << " " << key;
      }
    }
  }
}

// Channels-last parameters (the GPU default), one without a gradient this step: the
// averaged gradient is the mean in the logical layout, the missing one zeros in the
// parameter's own layout.
TEST(DistributedTest, ChannelsLastGradientsAverageAndAMissingOneIsZero) {
  const auto results = RunScenario("channels_last_grads", 2, {"--scenario=channels_last_grads"});
  const at::Tensor expected = at::arange(108, at::kFloat).view({4, 3, 3, 3}).mul(1.5);
  EXPECT_TRUE(at::allclose(results.at("used_grad").toTensor(), expected));
  EXPECT_EQ(results.at("unused_grad").toTensor().abs().max().item<float>(), 0.0f);
  EXPECT_EQ(results.at("unused_grad_channels_last").toInt(), 1);
}

// Three MoCo v3 steps (LARS) on a batch of 8 in float64, where agreement to 1e-10 is
// meaningful; in float32 a borderline ReLU can flip after a few steps and the runs
// drift apart legitimately.
TEST(DistributedTest, MocoV3StepsOnTwoProcessesWithSyncBnEqualOneProcessWithTheWholeBatch) {
  const std::vector<std::string> flags = {"--scenario=moco_step", "--steps=3"};
  auto with = [&](const std::string& bn) {
    std::vector<std::string> f = flags;
    f.push_back("--bn=" + bn);
    return f;
  };
  const auto one = RunScenario("moco_one", 1, with("sync"));
  const auto two = RunScenario("moco_two", 2, with("sync"));
  // Several buckets, and every one started from its autograd hook during backward.
  EXPECT_GT(two.at("num_buckets").toInt(), 1);
  EXPECT_EQ(two.at("overlapped_buckets").toInt(), two.at("num_buckets").toInt());
  std::vector<std::string> serial_flags = with("sync");
  serial_flags.push_back("--nooverlap");
  const auto serial = RunScenario("moco_serial", 2, serial_flags);
  EXPECT_EQ(serial.at("overlapped_buckets").toInt(), 0);
  EXPECT_LT(MaxDifference(serial, two, "params"), 1e-10);
  EXPECT_GT(one.at("grads").toTensor().abs().max().item<double>(), 1e-2);
  for (const std::string key :
       {"losses", "grads", "last_grads", "params", "base_buffers", "momentum_buffers"}) {
    EXPECT_LT(MaxDifference(one, two, key), 1e-10) << key;
  }
  // Per-process BN over 2 processes is split BN with 2 splits in one process, and
  // differs from SyncBN: the control that shows the comparison can fail.
  const auto local = RunScenario("moco_local", 2, with("local"));
  const auto split = RunScenario("moco_split", 1, with("split"));
  for (const std::string key : {"losses", "grads", "last_grads", "params"}) {
    EXPECT_LT(MaxDifference(local, split, key), 1e-10) << key;
  }
  EXPECT_GT(MaxDifference(local, one, "losses"), 1e-3);
}

// Four SwAV steps in float64: the 2 processes' Sinkhorn sums are all-reduced, their
// queues hold their own samples, and the result is the 1-process run with the whole
// batch, queue in use from the third step.
TEST(DistributedTest, SwavStepsOnTwoProcessesEqualOneProcessWithTheWholeBatch) {
  const std::vector<std::string> flags = {"--scenario=swav_step", "--steps=4", "--bn=sync"};
  const auto one = RunScenario("swav_one", 1, flags);
  const auto two = RunScenario("swav_two", 2, flags);
  EXPECT_TRUE(
      at::equal(one.at("queue_used").toTensor(), at::tensor({0., 0., 1., 1.}, at::kDouble)));
  EXPECT_TRUE(at::equal(two.at("queue_used").toTensor(), one.at("queue_used").toTensor()));
  for (const std::string key : {"losses", "params"}) {
    EXPECT_LT(MaxDifference(one, two, key), 1e-10) << key;
  }
  // Queues: 1 process [1, crops, 16, D] holds batches of samples 0..7, newest first; rank
  // r of 2 holds samples r, r + 2, ... of the same batches.
  const at::Tensor whole = one.at("queues").toTensor()[0];
  const at::Tensor split = two.at("queues").toTensor();
  ASSERT_EQ(split.size(0), 2);
  for (int64_t batch = 0; batch < 2; ++batch) {
    for (int64_t sample = 0; sample < 8; ++sample) {
      const at::Tensor a = whole.select(1, batch * 8 + sample);
      const at::Tensor b = split[sample % 2].select(1, batch * 4 + sample / 2);
      EXPECT_LT((a - b).abs().max().item<double>(), 1e-10) << batch << " " << sample;
    }
  }
  // The loss moved: the comparison is not of constants.
  EXPECT_GT(std::abs(one.at("losses").toTensor()[3].item<double>() -
                     one.at("losses").toTensor()[0].item<double>()),
            1e-4);
}

// Three Momentum^2 Teacher steps in float64 (LARS groups, EMA, Momentum BN), student
// BN and teacher Momentum BN synchronized: 2 processes equal 1 with the whole batch,
// teacher weights and Momentum BN statistics included.
TEST(DistributedTest, MomentumTeacherStepsOnTwoProcessesEqualOneProcess) {
  const std::vector<std::string> flags = {"--scenario=m2t_step", "--steps=3"};
  const auto one = RunScenario("m2t_one", 1, flags);
  const auto two = RunScenario("m2t_two", 2, flags);
  for (const std::string key : {"losses", "params", "teacher_params", "teacher_buffers"}) {
    EXPECT_LT(MaxDifference(one, two, key), 1e-10) << key;
  }
  EXPECT_GT(std::abs(one.at("losses").toTensor()[2].item<double>() -
                     one.at("losses").toTensor()[0].item<double>()),
            1e-6);
}

// The survivors of a job that loses rank 1 exit with the collective error naming it.
class LostRankTest : public ::testing::TestWithParam<std::string> {};

TEST_P(LostRankTest, SurvivorsNameTheMissingRankWithinTheTimeout) {
  const std::string dir = data::testing::MakeTempDir("lost_" + GetParam());
  const auto start = Clock::now();
  Job job = StartWorkers(dir, 3, 3,
                         {"--scenario=lose_rank", "--victim_action=" + GetParam(),
                          "--timeout_ms=3000", "--heartbeat_ms=200"});
  const std::string named = "rank 1 has stopped responding";
  const std::string frozen_store =
      "does not answer: rank 0 died or hangs, or a rank stopped in the middle of a request";
  for (int r : {0, 2}) {
    EXPECT_EQ(testing::ExitCodeWithin(job.pids[r], 60), 3) << ReadFile(job.logs[r]);
    const std::string log = ReadFile(job.logs[r]);
    if (GetParam() == "kill") {
      EXPECT_NE(log.find(named), std::string::npos) << log;
    } else if (GetParam() == "stop") {
      // Almost always named; a stop that lands inside a heartbeat's request freezes
      // LibTorch 1.13's store, and then the survivors can only say so.
      EXPECT_TRUE(log.find(named) != std::string::npos ||
                  log.find(frozen_store) != std::string::npos)
          << log;
    } else {
      EXPECT_NE(log.find(frozen_store), std::string::npos) << log;
    }
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  // Gloo's timeout + the diagnosis (3 heartbeats, 5 more on rank 0) + start-up slack.
  EXPECT_LT(seconds, 3.0 + 8 * 0.2 + 8.0);
  kill(job.pids[1], SIGKILL);
  ExitCode(job.pids[1]);
}

// stop_mid_request: the victim stops with half a request sent to rank 0's store, which
// LibTorch 1.13's store then waits on for ever; the survivors must still stop in time.
INSTANTIATE_TEST_SUITE_P(KilledOrHung, LostRankTest,
                         ::testing::Values("kill", "stop", "stop_mid_request"));

TEST(DistributedTest, ARankThatNeverStartsIsNamedAtTheRendezvous) {
  const std::string dir = data::testing::MakeTempDir("never_started");
  Job job = StartWorkers(dir, 2, 2, {"--timeout_ms=1500"}, /*ranks_to_start=*/1);
  EXPECT_EQ(testing::ExitCodeWithin(job.pids[0], 120), 2);
  const std::string log = ReadFile(job.logs[0]);
  EXPECT_NE(log.find("rank 1 of 2 did not join the rendezvous at 127.0.0.1:"), std::string::npos)
      << log;
  EXPECT_NE(log.find("within 1.5 s"), std::string::npos) << log;
}

// The pid of the child of `parent` whose environment has RANK=`rank` (0 if none yet).
pid_t ChildWithRank(pid_t parent, int rank) {
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::istringstream stat(ReadFile(entry.path() / "stat"));
    std::string pid, comm, state;
    pid_t ppid = 0;
    stat >> pid >> comm >> state >> ppid;
    if (ppid != parent) continue;
    std::string environ = ReadFile(entry.path() / "environ");
    std::replace(environ.begin(), environ.end(), '\0', '\n');
    if (("\n" + environ).find("\nRANK=" + std::to_string(rank) + "\n") != std::string::npos) {
      return static_cast<pid_t>(std::stoi(name));
    }
  }
  return 0;
}

// main_moco on 2 processes through //tools:launch: one rank SIGKILLed mid-run, the
// launcher stops the job, and --resume=latest ends bitwise equal to an uninterrupted run.
TEST(DistributedTest, KilledTwoProcessRunResumesExactly) {
  const std::string data = testing::MakeTinyImageFolder("resume_data");
  auto start = [&](const std::string& output_dir, const std::string& log,
                   const std::vector<std::string>& extra) {
    std::vector<std::string> args = {Runfile("tools/launch"),
                                     "--nproc_per_node=2",
                                     "--master_port=" + std::to_string(FreePort()),
                                     "--",
                                     Runfile("tools/main_moco"),
                                     "--data=" + data + "/train",
                                     "--output_dir=" + output_dir,
                                     "--arch=resnet18w0.125",
                                     "--cifar_stem",
                                     "--image_size=32",
                                     "--batch_size=16",
                                     "--epochs=3",
                                     "--warmup_epochs=1",
                                     "--moco_dim=16",
                                     "--moco_mlp_dim=32",
                                     "--workers=1",
                                     "--threads=1",
                                     "--print_freq=5",
                                     "--dist_timeout=60",
                                     "--seed=5"};
    args.insert(args.end(), extra.begin(), extra.end());
    return StartProcess(args, log);
  };

  const std::string straight = data::testing::MakeTempDir("straight2");
  ASSERT_EQ(ExitCode(start(straight, straight + "/log.txt", {})), 0)
      << ReadFile(straight + "/log.txt");

  const std::string killed = data::testing::MakeTempDir("killed2");
  const pid_t launcher = start(killed, killed + "/log.txt", {});
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  while (!fs::exists(killed + "/checkpoint_0000.pth.tar") && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const pid_t rank1 = ChildWithRank(launcher, 1);
  ASSERT_GT(rank1, 0) << "rank 1 not found; " << ReadFile(killed + "/log.txt");
  ASSERT_EQ(kill(rank1, SIGKILL), 0);
  EXPECT_NE(ExitCode(launcher), 0);
  ASSERT_FALSE(fs::exists(killed + "/checkpoint_0002.pth.tar")) << "finished before the kill";
  EXPECT_NE(ReadFile(killed + "/log.txt").find("rank 1"), std::string::npos);

  ASSERT_EQ(ExitCode(start(killed, killed + "/resume_log.txt", {"--resume=latest"})), 0)
      << ReadFile(killed + "/resume_log.txt");
  const c10::impl::GenericDict a = Load(straight + "/checkpoint_0002.pth.tar");
  const c10::impl::GenericDict b = Load(killed + "/checkpoint_0002.pth.tar");
  const c10::impl::GenericDict state_a = a.at("state_dict").toGenericDict();
  const c10::impl::GenericDict state_b = b.at("state_dict").toGenericDict();
  ASSERT_EQ(state_a.size(), state_b.size());
  int compared = 0;
  for (const auto& entry : state_a) {
    const at::Tensor x = entry.value().toTensor();
    if (!x.defined()) continue;
    EXPECT_TRUE(at::equal(x, state_b.at(entry.key()).toTensor())) << entry.key().toStringRef();
    ++compared;
  }
  EXPECT_GT(compared, 100);
  const auto optimizer_a = a.at("optimizer").toGenericDict().at("state").toGenericDict();
  const auto optimizer_b = b.at("optimizer").toGenericDict().at("state").toGenericDict();
  ASSERT_EQ(optimizer_a.size(), optimizer_b.size());
  for (const auto& entry : optimizer_a) {
    EXPECT_TRUE(at::equal(entry.value().toGenericDict().at("mu").toTensor(),
                          optimizer_b.at(entry.key()).toGenericDict().at("mu").toTensor()));
  }
}

}  // namespace
}  // namespace ssl
