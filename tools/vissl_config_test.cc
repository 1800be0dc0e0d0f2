// VISSL command lines and configs: composition (groups, overrides), strict reading, and
// the SwAV recipe derived from a config with VISSL's swav_8node_resnet structure.
#include "tools/vissl_config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "ssl/data/test_util.h"
#include "tools/swav_recipe.h"

namespace ssl::tools {
namespace {
namespace fs = std::filesystem;

// A config with the structure and values of VISSL's pretrain/swav/swav_8node_resnet
// (400 epochs, 8 nodes x 8 processes x 64 images, LARC, composite warmup + cosine).
constexpr char kSwavConfig[] = R"(# @package _global_
config:
  VERBOSE: False
  LOG_FREQUENCY: 10
  TEST_ONLY: False
  TEST_MODEL: False
  SEED_VALUE: 0
  MULTI_PROCESSING_METHOD: forkserver
  HOOKS:
    PERF_STATS:
      MONITOR_PERF_STATS: True
  DATA:
    NUM_DATALOADER_WORKERS: 8
    TRAIN:
      DATA_SOURCES: [disk_folder]
      DATASET_NAMES: [imagenet1k_folder]
      BATCHSIZE_PER_REPLICA: 64
      LABEL_TYPE: sample_index
      TRANSFORMS:
        - name: ImgPilToMultiCrop
          total_num_crops: 8
          size_crops: [224, 96]
          num_crops: [2, 6]
          crop_scales: [[0.14, 1], [0.05, 0.14]]
        - name: RandomHorizontalFlip
          p: 0.5
        - name: ImgPilColorDistortion
          strength: 1.0
        - name: ImgPilGaussianBlur
          p: 0.5
          radius_min: 0.1
          radius_max: 2.0
        - name: ToTensor
        - name: Normalize
          mean: [0.485, 0.456, 0.406]
          std: [0.229, 0.224, 0.225]
      COLLATE_FUNCTION: multicrop_collator
      MMAP_MODE: True
      DROP_LAST: True
  TRAINER:
    TRAIN_STEP_NAME: standard_train_step
  METERS:
    name: ""
  MODEL:
    TRUNK:
      NAME: resnet
      RESNETS:
        DEPTH: 50
    HEAD:
      PARAMS: [
        ["swav_head", {"dims": [2048, 2048, 128], "use_bn": True, "num_clusters": [3000]}],
      ]
    TEMP_FROZEN_PARAMS_ITER_MAP: [
      ['module.heads.0.prototypes0.weight', 313],
    ]
    SYNC_BN_CONFIG:
      CONVERT_BN_TO_SYNC_BN: True
      SYNC_BN_TYPE: apex
      GROUP_SIZE: 8
    AMP_PARAMS:
      USE_AMP: True
      AMP_ARGS: {"opt_level": "O1"}
  LOSS:
    name: swav_loss
    swav_loss:
      temperature: 0.1
      use_double_precision: False
      normalize_last_layer: True
      num_iters: 3
      epsilon: 0.05
      crops_for_assign: [0, 1]
      queue:
        queue_length: 0
        start_iter: 0
  OPTIMIZER:
      name: sgd
      use_larc: True
      larc_config:
        clip: False
        trust_coefficient: 0.001
        eps: 0.00000001
      weight_decay: 0.000001
      momentum: 0.9
      nesterov: False
      num_epochs: 400
      regularize_bn: True
      regularize_bias: True
      param_schedulers:
        lr:
          auto_lr_scaling:
            auto_scale: true
            base_value: 0.3
            base_lr_batch_size: 256
          name: composite
          schedulers:
            - name: linear
              start_value: 0.3
              end_value: 4.8
            - name: cosine
              start_value: 4.8
              end_value: 0.0048
          update_interval: step
          interval_scaling: [rescaled, fixed]
          lengths: [0.025, 0.975]
  DISTRIBUTED:
    BACKEND: nccl
    NUM_NODES: 8
    NUM_PROC_PER_NODE: 8
    RUN_ID: node0:29500
    INIT_METHOD: tcp
    NCCL_DEBUG: True
  MACHINE:
    DEVICE: gpu
  CHECKPOINT:
    DIR: "."
    AUTO_RESUME: True
    CHECKPOINT_FREQUENCY: 5
    CHECKPOINT_ITER_FREQUENCY: -1
)";

constexpr char kTransforms2x224[] = R"(# @package _global_
config:
  DATA:
    TRAIN:
      TRANSFORMS:
        - name: ImgPilToMultiCrop
          total_num_crops: 2
          size_crops: [224]
          num_crops: [2]
          crop_scales: [[0.08, 1]]
        - name: RandomHorizontalFlip
          p: 0.5
        - name: ToTensor
)";

class VisslConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = data::testing::MakeTempDir("vissl_configs");
    fs::create_directories(root_ + "/config/pretrain/swav/transforms");
    std::ofstream(root_ + "/config/pretrain/swav/swav_test.yaml") << kSwavConfig;
    std::ofstream(root_ + "/config/pretrain/swav/transforms/two_crops.yaml") << kTransforms2x224;
  }

  absl::StatusOr<SwavRecipe> Recipe(const std::vector<std::string>& arguments) {
    absl::StatusOr<VisslCommandLine> command_line = ParseVisslArguments(arguments);
    if (!command_line.ok()) return command_line.status();
    absl::StatusOr<YAML::Node> config = ComposeVisslConfig(*command_line, {root_});
    if (!config.ok()) return config.status();
    return SwavRecipeFromConfig(*config, "/data/train");
  }

  std::string root_;
};

TEST_F(VisslConfigTest, CommandLineParsesVisslsForms) {
  absl::StatusOr<VisslCommandLine> parsed = ParseVisslArguments(
      {"config=pretrain/swav/swav_test", "+config/pretrain/swav/transforms=two_crops",
       "config.LOSS.swav_loss.temperature=0.2", "node_id=3"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->config, "pretrain/swav/swav_test");
  ASSERT_EQ(parsed->groups.size(), 1u);
  EXPECT_EQ(parsed->groups[0].first, "config/pretrain/swav/transforms");
  EXPECT_EQ(parsed->groups[0].second, "two_crops");
  ASSERT_EQ(parsed->overrides.size(), 1u);
  EXPECT_EQ(parsed->overrides[0].first, "LOSS.swav_loss.temperature");
  EXPECT_EQ(parsed->node_id, 3);
  EXPECT_EQ(ParseVisslArguments({"config=x", "temperature=0.2"}).status().message(),
            "cannot use the argument \"temperature=0.2\"; expected config=<name>, "
            "+config/<group>=<name>, config.A.B=<value> or node_id=<n>");
  EXPECT_FALSE(ParseVisslArguments({"config.A=1"}).ok());  // no config=
}

TEST_F(VisslConfigTest, TheSwav8NodeRecipeComesOutAsVisslComputesIt) {
  absl::StatusOr<SwavRecipe> recipe = Recipe({"config=pretrain/swav/swav_test"});
  ASSERT_TRUE(recipe.ok()) << recipe.status();
  EXPECT_EQ(recipe->swav.arch, "resnet50");
  EXPECT_EQ(recipe->num_nodes, 8);
  EXPECT_EQ(recipe->num_proc_per_node, 8);
  EXPECT_EQ(recipe->train.batch_size, 4096);
  EXPECT_EQ(recipe->train.epochs, 400);
  EXPECT_EQ(recipe->train.optimizer, "larc");
  EXPECT_DOUBLE_EQ(recipe->train.optimizer_options.weight_decay, 1e-6);
  EXPECT_DOUBLE_EQ(recipe->train.optimizer_options.eps, 1e-8);
  EXPECT_EQ(recipe->train.bn, "sync");
  EXPECT_EQ(recipe->train.sync_bn_group_size, 8);
  EXPECT_EQ(recipe->train.checkpoint_every, 5);
  EXPECT_EQ(recipe->train.resume, "latest");
  EXPECT_EQ(recipe->train.workers, 8);
  EXPECT_TRUE(recipe->amp_requested);
  EXPECT_EQ(recipe->swav.prototypes_frozen_iters, 313);
  EXPECT_EQ(recipe->swav.head.dims(), (std::vector<int64_t>{2048, 2048, 128}));
  EXPECT_EQ(recipe->swav.head.num_clusters(), (std::vector<int64_t>{3000}));
  EXPECT_EQ(recipe->swav.crops.counts, (std::vector<int>{2, 6}));
  EXPECT_EQ(recipe->swav.crops.sizes, (std::vector<int>{224, 96}));
  EXPECT_DOUBLE_EQ(recipe->swav.crops.scale_mins[1], 0.05);
  EXPECT_FLOAT_EQ(recipe->swav.crops.jitter.hue, 0.2f);
  EXPECT_DOUBLE_EQ(recipe->swav.crops.blur_probability, 0.5);
  // Auto scaling: 0.3 x 4096 / 256 = 4.8 at the end of the warmup, which starts at
  // 0.3 x (64 x 8 per node) / 256 = 0.6 (VISSL's resolve_linear_schedule), and a cosine
  // to 4.8 x 0.0048 / 4.8 that sees the global where ("fixed").
  const optim::ScheduleSpec& lr = recipe->lr_schedule;
  ASSERT_EQ(lr.name, "composite");
  ASSERT_EQ(lr.schedulers.size(), 2u);
  EXPECT_DOUBLE_EQ(lr.schedulers[0].start_value, 0.6);
  EXPECT_DOUBLE_EQ(lr.schedulers[0].end_value, 4.8);
  EXPECT_DOUBLE_EQ(lr.schedulers[1].start_value, 4.8);
  EXPECT_NEAR(lr.schedulers[1].end_value, 0.0048, 1e-12);
  methods::StepContext step;
  step.iterations_per_epoch = 313;
  step.epochs = 400;
  EXPECT_DOUBLE_EQ(recipe->train.learning_rate(step), 0.6);
  step.global_step = 313 * 5;  // halfway through the 10-epoch warmup
  EXPECT_NEAR(recipe->train.learning_rate(step), 2.7, 1e-9);
  std::vector<std::string> ignored = recipe->ignored;
  EXPECT_NE(std::find(ignored.begin(), ignored.end(), "config.HOOKS"), ignored.end());
}

TEST_F(VisslConfigTest, GroupsMergeAndOverridesWinAndTheQueueRoundsToTheGlobalBatch) {
  absl::StatusOr<SwavRecipe> recipe = Recipe(
      {"config=pretrain/swav/swav_test", "+config/pretrain/swav/transforms=two_crops",
       "config.DISTRIBUTED.NUM_NODES=1", "config.DISTRIBUTED.NUM_PROC_PER_NODE=2",
       "config.MODEL.SYNC_BN_CONFIG.GROUP_SIZE=2", "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=32",
       "config.LOSS.swav_loss.queue.queue_length=3900", "config.LOSS.swav_loss.temperature=0.2",
       "config.OPTIMIZER.non_regularized_parameters=[prototypes,bn1]"});
  ASSERT_TRUE(recipe.ok()) << recipe.status();
  EXPECT_EQ(recipe->swav.non_regularized_parameters,
            (std::vector<std::string>{"prototypes", "bn1"}));
  EXPECT_EQ(recipe->swav.queue_rule, methods::SwavOptions::QueueRule::kVissl);
  EXPECT_EQ(recipe->swav.crops.counts, (std::vector<int>{2}));   // the group's transforms
  EXPECT_DOUBLE_EQ(recipe->swav.crops.jitter_probability, 0.0);  // no colour distortion there
  EXPECT_DOUBLE_EQ(recipe->swav.temperature, 0.2);
  EXPECT_EQ(recipe->train.batch_size, 64);
  EXPECT_EQ(recipe->swav.queue_length, 3840);  // 3900 rounded down to 60 x 64
  EXPECT_EQ(recipe->resolved["local_queue_length"], 1920);
  // One node: the warmup would start at its own end (0.3 x 64 / 256 both), so VISSL
  // drops it and the cosine alone remains.
  EXPECT_EQ(recipe->lr_schedule.name, "cosine");
  EXPECT_DOUBLE_EQ(recipe->lr_schedule.start_value, 0.075);
}

TEST_F(VisslConfigTest, UnimplementedKeysAndBadValuesAreOneSentenceNamingTheKey) {
  auto error = [this](const std::vector<std::string>& overrides) {
    std::vector<std::string> arguments = {
        "config=pretrain/swav/swav_test", "config.DISTRIBUTED.NUM_NODES=1",
        "config.DISTRIBUTED.NUM_PROC_PER_NODE=1", "config.MODEL.SYNC_BN_CONFIG.GROUP_SIZE=-1"};
    arguments.insert(arguments.end(), overrides.begin(), overrides.end());
    return std::string(Recipe(arguments).status().message());
  };
  EXPECT_EQ(error({}), "");
  EXPECT_EQ(error({"config.MODEL.TRUNK.RESNETS.DEPTHH=50"}),
            "config.MODEL.TRUNK.RESNETS.DEPTHH is not implemented by this program; remove it "
            "(--help lists the keys it reads and the VISSL-only keys it accepts)");
  EXPECT_EQ(error({"config.OPTIMIZER.num_epochs=many"}),
            "config.OPTIMIZER.num_epochs must be a whole number, got \"many\"");
  EXPECT_EQ(error({"config.DATA.TRAIN.DROP_LAST=False"}),
            "config.DATA.TRAIN.DROP_LAST is false; pretraining always drops the last partial "
            "batch (Sinkhorn and the queue need full batches)");
  EXPECT_EQ(error({"config.CHECKPOINT.CHECKPOINT_ITER_FREQUENCY=100"}),
            "config.CHECKPOINT.CHECKPOINT_ITER_FREQUENCY is not implemented: checkpoints are "
            "written per phase (CHECKPOINT_FREQUENCY)");
  EXPECT_EQ(error({"config.MODEL.TEMP_FROZEN_PARAMS_ITER_MAP=[[module.trunk.conv1.weight, 5]]"}),
            "config.MODEL.TEMP_FROZEN_PARAMS_ITER_MAP freezes \"module.trunk.conv1.weight\"; only "
            "the prototypes (module.heads.0.prototypes<i>.weight) can be frozen");
  EXPECT_EQ(error({"config.MODEL.SYNC_BN_CONFIG.GROUP_SIZE=8"}),
            "config.MODEL.SYNC_BN_CONFIG.GROUP_SIZE 8 does not divide the 1 processes "
            "(DISTRIBUTED.NUM_NODES x NUM_PROC_PER_NODE); use a divisor, -1 (per machine) or 0 "
            "(all)");
  EXPECT_EQ(error({"config.LOSS.name=simclr_info_nce_loss"}),
            "config.LOSS.name is \"simclr_info_nce_loss\"; this program supports only "
            "\"swav_loss\" (this program trains SwAV)");
  EXPECT_NE(error({"config.DATA.TRAIN.TRANSFORMS=[{name: RandomSolarize}]"})
                .find("transform \"RandomSolarize\" is not implemented"),
            std::string::npos);
  EXPECT_EQ(error({"config.LOSS.swav_loss.queue.queue_length=10"}),
            "config.LOSS.swav_loss.queue.queue_length 10 is shorter than one global batch of 64; "
            "the queue would be empty");
  EXPECT_EQ(error({"config.LOSS.swav_loss.queue.rule=fifo"}),
            "config.LOSS.swav_loss.queue.rule must be vissl (random rows, used from start_iter, as "
            "VISSL) or swav_repo (zeros, used once full, as main_swav.py), got \"fifo\"");
  EXPECT_EQ(error({"config.OPTIMIZER.non_regularized_parameters=prototypes"}),
            "config.OPTIMIZER.non_regularized_parameters must be a list of strings, got "
            "\"prototypes\"");
}

TEST_F(VisslConfigTest, MissingFilesNameWhereTheyWereLookedFor) {
  absl::StatusOr<VisslCommandLine> command_line =
      ParseVisslArguments({"config=pretrain/swav/nope"});
  ASSERT_TRUE(command_line.ok());
  const absl::Status missing = ComposeVisslConfig(*command_line, {root_}).status();
  EXPECT_EQ(missing.message(), "config \"pretrain/swav/nope\" not found (looked for " + root_ +
                                   "/config/pretrain/swav/nope.yaml); give the configs "
                                   "directory with --config_dir");
  std::ofstream(root_ + "/config/broken.yaml") << "config: [1, 2\n";
  command_line = ParseVisslArguments({"config=broken"});
  EXPECT_NE(std::string(ComposeVisslConfig(*command_line, {root_}).status().message())
                .find("cannot read the config file"),
            std::string::npos);
}

TEST_F(VisslConfigTest, RegNetTrunksByNameAndByParameters) {
  absl::StatusOr<SwavRecipe> named =
      Recipe({"config=pretrain/swav/swav_test", "config.MODEL.TRUNK.NAME=regnet",
              "config.MODEL.TRUNK.REGNET={name: regnet_y_400mf}",
              "config.MODEL.HEAD.PARAMS=[[swav_head, {dims: [440, 440, 128], use_bn: True, "
              "num_clusters: [3000]}]]"});
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_EQ(named->swav.arch, "regnet_y_400mf");
  absl::StatusOr<SwavRecipe> custom =
      Recipe({"config=pretrain/swav/swav_test", "config.MODEL.TRUNK.NAME=regnet",
              "config.MODEL.TRUNK.REGNET={depth: 27, w_0: 640, w_a: 230.83, w_m: 2.53, "
              "group_width: 373}"});
  ASSERT_TRUE(custom.ok()) << custom.status();
  EXPECT_EQ(custom->swav.arch, "regnet_y_d27_w640_wa230.83_wm2.53_gw373");
}

}  // namespace
}  // namespace ssl::tools
