#include "ssl/distributed/environment.h"

#include <map>

#include <gtest/gtest.h>

namespace ssl::distributed {
namespace {

Getenv From(std::map<std::string, std::string> vars) {
  auto shared = std::make_shared<std::map<std::string, std::string>>(std::move(vars));
  return [shared](const char* name) -> const char* {
    auto it = shared->find(name);
    return it == shared->end() ? nullptr : it->second.c_str();
  };
}

TEST(EnvironmentTest, NothingSetIsASingleProcess) {
  const auto config = ResolveDistributedConfig({}, From({}));
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->world_size, 1);
  EXPECT_EQ(config->rank, 0);
  EXPECT_EQ(config->source, "single");
}

TEST(EnvironmentTest, TorchrunVariables) {
  const auto config = ResolveDistributedConfig(
      {}, From({{"MASTER_ADDR", "10.1.2.3"}, {"MASTER_PORT", "23456"}, {"WORLD_SIZE", "8"},
                {"RANK", "5"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "4"}}));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->source, "torchrun");
  EXPECT_EQ(config->master_addr, "10.1.2.3");
  EXPECT_EQ(config->master_port, 23456);
  EXPECT_EQ(config->world_size, 8);
  EXPECT_EQ(config->rank, 5);
  EXPECT_EQ(config->local_rank, 1);
  EXPECT_EQ(config->local_world_size, 4);
}

TEST(EnvironmentTest, SlurmVariablesAndNodeList) {
  const auto config = ResolveDistributedConfig(
      {}, From({{"SLURM_PROCID", "6"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "2"},
                {"SLURM_NTASKS_PER_NODE", "4(x2)"}, {"SLURM_JOB_NODELIST", "gpu[007-008],cpu1"}}));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->source, "slurm");
  EXPECT_EQ(config->master_addr, "gpu007");
  EXPECT_EQ(config->rank, 6);
  EXPECT_EQ(config->world_size, 8);
  EXPECT_EQ(config->local_rank, 2);
  EXPECT_EQ(config->local_world_size, 4);
  EXPECT_EQ(FirstSlurmHost("node17"), "node17");
  EXPECT_EQ(FirstSlurmHost("a[3,5-9],b2"), "a3");
}

TEST(EnvironmentTest, MomentumTeacherMachineConvention) {
  DistributedFlags flags;
  flags.nproc_per_node = 8;
  const auto config = ResolveDistributedConfig(
      flags, From({{"MACHINE", "2"}, {"MACHINE_TOTAL", "4"}, {"LOCAL_RANK", "3"},
                   {"MASTER_ADDR", "host0"}}));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->source, "machine");
  EXPECT_EQ(config->world_size, 32);
  EXPECT_EQ(config->rank, 19);
  EXPECT_EQ(config->master_addr, "host0");
  EXPECT_EQ(ResolveDistributedConfig(flags, From({{"MACHINE", "4"}, {"MACHINE_TOTAL", "4"}}))
                .status()
                .message(),
            "MACHINE=4 is not below MACHINE_TOTAL=4");
}

TEST(EnvironmentTest, ExplicitFlagsWinOverTheEnvironment) {
  DistributedFlags flags;
  flags.dist_url = "tcp://192.168.0.9:10001";
  flags.world_size = 2;
  flags.rank = 1;
  const auto config = ResolveDistributedConfig(flags, From({{"RANK", "0"}, {"WORLD_SIZE", "4"}}));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->source, "flags");
  EXPECT_EQ(config->master_addr, "192.168.0.9");
  EXPECT_EQ(config->master_port, 10001);
  EXPECT_EQ(config->rank, 1);
}

// With --dist_url and no launcher, ranks spread over the visible GPUs (not all on GPU 0
// of an 8-GPU machine); a launcher's LOCAL_RANK wins; --nproc_per_node wins over the
// visible count.
TEST(EnvironmentTest, ExplicitFlagsPlaceRanksOnTheirMachinesGpus) {
  DistributedFlags flags;
  flags.dist_url = "tcp://127.0.0.1:10001";
  flags.world_size = 16;
  flags.rank = 11;
  flags.visible_gpus = 8;
  auto config = ResolveDistributedConfig(flags, From({}));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->local_rank, 3);
  EXPECT_EQ(config->local_world_size, 8);
  config = ResolveDistributedConfig(flags, From({{"LOCAL_RANK", "5"}}));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->local_rank, 5);
  EXPECT_EQ(config->local_world_size, 8);
  flags.nproc_per_node = 4;
  config = ResolveDistributedConfig(flags, From({}));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->local_rank, 3);
  EXPECT_EQ(config->local_world_size, 4);
  // The CPU (no GPU visible, nothing given): one process per machine as before.
  flags.nproc_per_node = 0;
  flags.visible_gpus = 0;
  config = ResolveDistributedConfig(flags, From({}));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->local_rank, 0);
  EXPECT_EQ(config->local_world_size, 1);
}

TEST(EnvironmentTest, BadValuesAreOneClearError) {
  DistributedFlags flags;
  flags.dist_url = "http://host";
  flags.world_size = 2;
  flags.rank = 0;
  EXPECT_EQ(ResolveDistributedConfig(flags, From({})).status().message(),
            "--dist_url must look like tcp://host:port, got \"http://host\"");
  flags.dist_url = "tcp://h:1";
  flags.rank = 2;
  EXPECT_EQ(ResolveDistributedConfig(flags, From({})).status().message(),
            "rank 2 is not in a world of size 2 (from flags)");
  EXPECT_EQ(ResolveDistributedConfig({}, From({{"RANK", "x"}, {"WORLD_SIZE", "2"}})).status().message(),
            "environment variable RANK=\"x\" is not a whole number");
  EXPECT_EQ(ResolveDistributedConfig({}, From({{"RANK", "0"}, {"WORLD_SIZE", "2"},
                                               {"MASTER_PORT", "99999"}}))
                .status()
                .message(),
            "master port 99999 is not a TCP port (from torchrun)");
}

}  // namespace
}  // namespace ssl::distributed
