// SwAV pretraining from VISSL's configuration files, with VISSL's command line:
//
//   run_distributed_engines config=pretrain/swav/swav_8node_resnet
//       +config/pretrain/swav/transforms=multicrop_2x224_4x96
//       config.LOSS.swav_loss.temperature=0.2 config.DATA.TRAIN.DATA_PATHS=[/data/train]
//
// Config names are looked up under <configs>/config/ (a VISSL checkout's configs/
// directory, --config_dir), or given as a YAML path. DISTRIBUTED.NUM_PROC_PER_NODE
// processes are started on this machine (one per GPU in VISSL; here they share the
// CPU) and NUM_NODES machines join through DISTRIBUTED.RUN_ID=<node 0>:<port> with
// node_id=<i> on each; started by torchrun, SLURM or //tools:launch, the processes use
// the launcher's ranks instead. Checkpoints go to CHECKPOINT.DIR in VISSL's layout and
// AUTO_RESUME continues from the newest.
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <gflags/gflags.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "eval/knn_monitor.h"
#include "ssl/core/logging.h"
#include "ssl/data/image_io.h"
#include "ssl/distributed/environment.h"
#include "ssl/distributed/process_group.h"
#include "ssl/methods/swav.h"
#include "ssl/train/pretrain.h"
#include "tools/cli_util.h"
#include "tools/device_flags.h"
#include "tools/local_launcher.h"
#include "tools/swav_recipe.h"
#include "tools/vissl_config.h"

DEFINE_string(config_dir, "",
              "Comma-separated directories holding VISSL's configs/ tree (config/pretrain/"
              "swav/...); default: ./configs, then the project's configs/.");
DEFINE_string(data, "",
              "Training ImageFolder; overrides config.DATA.TRAIN.DATA_PATHS (VISSL reads it "
              "from its dataset catalog).");
DEFINE_int32(threads, 0,
             "Compute threads per process (0: the machine's cores over the local processes).");
DEFINE_double(dist_timeout, 1800,
              "Seconds a process waits for a missing or hung peer before it stops naming it.");
DEFINE_int32(knn_every, 0, "Run the kNN monitor every N epochs (0: off); needs --knn_val.");
DEFINE_string(knn_val, "", "kNN query images (an ImageFolder, e.g. the validation split).");
DEFINE_string(knn_train, "", "kNN memory bank images (default: the training data).");
DEFINE_int32(knn_size, 0, "kNN center crop (0: the largest training crop).");
DEFINE_string(profile_trace, "",
              "Write a Chrome trace of LibTorch's operators over ten iterations of the first "
              "epoch (from the 11th) to this file; tools/summarize_trace.py ranks the operators.");

namespace {

int Fail(const absl::Status& status) {
  std::cerr << "run_distributed_engines: " << status.message() << "\n";
  std::cout.flush();
  std::cerr.flush();
  // A lost peer can leave collectives queued in c10d: exit without waiting for them.
  std::_Exit(1);
}

std::string Usage() {
  return absl::StrCat(
      "SwAV pretraining from VISSL's YAML configs.\n\n"
      "  run_distributed_engines config=<name|file.yaml> [+config/<group>=<name>]... "
      "[config.A.B=<value>]... [node_id=<i>] [--data=<ImageFolder>] [--config_dir=<dir>]\n\n"
      "Example (scaled down to one CPU process):\n"
      "  run_distributed_engines config=pretrain/swav/swav_8node_resnet "
      "--data=/data/imagenet/train config.DISTRIBUTED.NUM_NODES=1 "
      "config.DISTRIBUTED.NUM_PROC_PER_NODE=1 config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=32 "
      "config.CHECKPOINT.DIR=/tmp/swav\n\n"
      "Keys read: SEED_VALUE, LOG_FREQUENCY, DATA.NUM_DATALOADER_WORKERS, "
      "DATA.DDP_BUCKET_CAP_MB, DATA.TRAIN.{DATA_SOURCES, DATA_PATHS, BATCHSIZE_PER_REPLICA, "
      "TRANSFORMS, COLLATE_FUNCTION, DROP_LAST}, MODEL.TRUNK.{NAME, RESNETS.*, REGNET.*}, "
      "MODEL.HEAD.{PARAMS, BATCHNORM_EPS, BATCHNORM_MOMENTUM}, "
      "MODEL.TEMP_FROZEN_PARAMS_ITER_MAP, MODEL.SYNC_BN_CONFIG.{CONVERT_BN_TO_SYNC_BN, "
      "GROUP_SIZE}, MODEL.AMP_PARAMS.USE_AMP (CUDA only), LOSS.swav_loss.*, "
      "OPTIMIZER.{name, use_larc, larc_config, weight_decay, momentum, num_epochs, "
      "regularize_bn, regularize_bias, param_schedulers.lr}, DISTRIBUTED.{NUM_NODES, "
      "NUM_PROC_PER_NODE, INIT_METHOD, RUN_ID}, CHECKPOINT.{DIR, AUTO_RESUME, "
      "CHECKPOINT_FREQUENCY}. MODEL.TRUNK.RESNETS.CIFAR_STEM (this framework's) selects a "
      "3x3 stem for 32 px images.\n"
      "Accepted without effect (VISSL's Python machinery): ",
      absl::StrJoin(ssl::tools::VisslIgnoredKeys(), ", "),
      ".\nAny other key is an error naming it. Library flags: --helpfull.");
}

std::vector<std::string> ConfigRoots() {
  std::vector<std::string> roots;
  for (const std::string& dir :
       std::vector<std::string>(absl::StrSplit(FLAGS_config_dir, ',', absl::SkipEmpty()))) {
    roots.push_back(ssl::tools::UserPath(dir));
  }
  roots.push_back(ssl::tools::UserPath("configs"));
  if (const char* workspace = std::getenv("BUILD_WORKSPACE_DIRECTORY")) {
    roots.push_back(std::string(workspace) + "/configs");
  }
  return roots;
}

// VISSL's DISTRIBUTED.RUN_ID: "auto" (a free local port, one machine) or host:port.
absl::Status MasterFromRunId(const ssl::tools::SwavRecipe& recipe,
                             ssl::tools::LaunchOptions* launch) {
  if (recipe.run_id == "auto") {
    if (recipe.num_nodes > 1) {
      return absl::InvalidArgumentError(
          "config.DISTRIBUTED.RUN_ID is auto, but a job of several machines needs "
          "RUN_ID=<node 0 host>:<port> on every machine");
    }
    launch->master_addr = "127.0.0.1";
    launch->master_port = ssl::tools::FreeLocalPort();
    return absl::OkStatus();
  }
  const size_t colon = recipe.run_id.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(recipe.run_id.substr(colon + 1), &port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.DISTRIBUTED.RUN_ID must be auto or "
                     "<host>:<port>, got \"",
                     recipe.run_id, "\""));
  }
  launch->master_addr = recipe.run_id.substr(0, colon);
  launch->master_port = port;
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  ssl::tools::ParseProgramFlags(&argc, &argv, Usage());
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  absl::StatusOr<ssl::tools::VisslCommandLine> command_line =
      ssl::tools::ParseVisslArguments(std::vector<std::string>(argv + 1, argv + argc));
  if (!command_line.ok()) return Fail(command_line.status());
  absl::StatusOr<ssl::tools::SwavRecipe> recipe;
  try {
    absl::StatusOr<YAML::Node> config =
        ssl::tools::ComposeVisslConfig(*command_line, ConfigRoots());
    if (!config.ok()) return Fail(config.status());
    recipe = ssl::tools::SwavRecipeFromConfig(*config, ssl::tools::UserPath(FLAGS_data));
  } catch (const YAML::Exception& e) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("bad value in the config: ", e.what())));
  }
  if (!recipe.ok()) return Fail(recipe.status());
  const int world = recipe->num_nodes * recipe->num_proc_per_node;

  absl::StatusOr<ssl::distributed::DistributedConfig> dist =
      ssl::distributed::ResolveDistributedConfig({}, std::getenv);
  if (!dist.ok()) return Fail(dist.status());
  if (dist->source == "single" && world > 1) {
    // VISSL's launch_distributed: this process starts the machine's ranks (itself again,
    // with the launcher's variables) and waits for them.
    ssl::tools::LaunchOptions launch;
    launch.name = "run_distributed_engines";
    launch.nproc_per_node = recipe->num_proc_per_node;
    launch.nnodes = recipe->num_nodes;
    const char* slurm_node = std::getenv("SLURM_NODEID");
    launch.node_rank = slurm_node ? std::atoi(slurm_node) : command_line->node_id;
    if (absl::Status s = MasterFromRunId(*recipe, &launch); !s.ok()) return Fail(s);
    std::vector<std::string> self = {"/proc/self/exe"};
    for (int i = 0; i < argc; ++i) {
      if (i > 0) self.push_back(argv[i]);
    }
    // Flags were removed from argv by gflags: hand them back explicitly.
    for (const char* name :
         {"config_dir", "data", "threads", "dist_timeout", "knn_every", "knn_val", "knn_train",
          "knn_size", "device", "amp", "channels_last", "deterministic"}) {
      std::string value;
      if (gflags::GetCommandLineOption(name, &value)) {
        self.insert(self.begin() + 1, absl::StrCat("--", name, "=", value));
      }
    }
    return ssl::tools::LaunchLocalRanks(launch, self);
  }
  if (dist->world_size != world) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("the config asks for ", world,
                     " processes (DISTRIBUTED.NUM_NODES x NUM_PROC_PER_NODE) "
                     "but the launcher started ",
                     dist->world_size)));
  }
  const int threads = FLAGS_threads > 0
                          ? FLAGS_threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) /
                                            std::max(1, dist->local_world_size));
  at::set_num_threads(threads);
  // VISSL trains in mixed precision only when MODEL.AMP_PARAMS.USE_AMP asks for it.
  const ssl::MixedPrecision amp_on_gpu =
      recipe->amp_requested ? ssl::MixedPrecision::kFloat16 : ssl::MixedPrecision::kOff;
  absl::StatusOr<ssl::tools::DeviceChoice> device =
      ssl::tools::DeviceFromFlags(dist->local_rank, amp_on_gpu);
  if (!device.ok()) return Fail(device.status());
  ssl::distributed::ProcessGroupOptions group_options;
  group_options.config = *dist;
  group_options.backend = ssl::tools::ResolveBackend("auto", *device);
  group_options.timeout =
      std::chrono::milliseconds(static_cast<int64_t>(FLAGS_dist_timeout * 1000));
  absl::StatusOr<std::shared_ptr<ssl::distributed::Communicator>> communicator =
      ssl::distributed::CreateCommunicator(group_options);
  if (!communicator.ok()) return Fail(communicator.status());
  const bool is_main = (*communicator)->rank() == 0;

  ssl::train::PretrainOptions options = recipe->train;
  options.output_dir = ssl::tools::UserPath(options.output_dir);
  options.program_config = recipe->resolved;
  options.profile_trace = ssl::tools::UserPath(FLAGS_profile_trace);
  options.device = device->device;
  options.amp = device->amp;
  options.channels_last = device->channels_last;
  options.deterministic = device->deterministic;
  at::manual_seed(options.seed);
  absl::StatusOr<std::shared_ptr<ssl::methods::SwavImpl>> swav =
      ssl::methods::SwavImpl::Create(recipe->swav, *communicator);
  if (!swav.ok()) return Fail(swav.status());
  if (is_main) {
    LOG(INFO) << "SwAV " << recipe->swav.arch << ": " << recipe->resolved.dump();
    if (!recipe->ignored.empty()) {
      LOG(INFO) << "accepted without effect (VISSL-only keys): "
                << absl::StrJoin(recipe->ignored, ", ");
    }
    if (recipe->amp_requested && options.amp == ssl::MixedPrecision::kOff) {
      LOG(WARNING) << "config.MODEL.AMP_PARAMS.USE_AMP asks for mixed precision, which needs "
                      "a GPU for fp16 (or --amp=bf16); this run trains in float32";
    }
  }
  ssl::eval::KnnMonitorOptions knn;
  knn.every = FLAGS_knn_every;
  knn.last_epoch = options.epochs;
  knn.train_folder = FLAGS_knn_train.empty() ? options.data : ssl::tools::UserPath(FLAGS_knn_train);
  knn.val_folder = ssl::tools::UserPath(FLAGS_knn_val);
  const std::vector<int>& sizes = recipe->swav.crops.sizes;
  knn.image_size =
      FLAGS_knn_size > 0 ? FLAGS_knn_size : *std::max_element(sizes.begin(), sizes.end());
  knn.resize = knn.image_size * 8 / 7;
  knn.workers = options.workers;
  absl::StatusOr<ssl::train::EpochMonitor> monitor = ssl::eval::MakeKnnMonitor(knn);
  if (!monitor.ok()) return Fail(monitor.status());

  absl::StatusOr<ssl::train::PretrainResult> result =
      ssl::train::RunPretraining(**swav, options, *communicator, *monitor);
  if (!result.ok()) return Fail(result.status());
  if (is_main) {
    if (absl::Status s =
            ssl::train::WritePretrainResult(*result, options.epochs, options.output_dir);
        !s.ok()) {
      return Fail(s);
    }
    std::cout << "finished " << result->epochs_completed << "/" << options.epochs
              << " phases; last checkpoint " << result->last_checkpoint << "; "
              << result->images_per_second << " images/s\n";
  }
  return 0;
}
