// MoCo v3 pretraining, with the flags of moco-v3's main_moco.py (underscores for
// dashes). Defaults are the paper's ResNet-50 100-epoch recipe (CONFIG.md): batch 4096,
// LARS, lr 0.6, wd 1e-6, warmup 10, cosine momentum from 0.99, crop-min 0.2.
//
//   bazel run //tools:main_moco -- --data=/path/to/train --output_dir=/tmp/run
//
// Rerunning with --resume=latest continues from the newest checkpoint exactly.
//
// Several processes (one machine or many) train one model through c10d: start them with
// //tools:launch, torchrun, srun, or by hand with --dist_url/--world_size/--rank; see
// the README. --batch_size stays the global batch.
#include <ATen/Context.h>
#include <gflags/gflags.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>

#include "eval/knn_monitor.h"
#include "ssl/core/device.h"
#include "ssl/core/logging.h"
#include "ssl/distributed/communicator.h"
#include "ssl/distributed/environment.h"
#include "ssl/distributed/process_group.h"
#include "ssl/methods/mocov3.h"
#include "ssl/train/pretrain.h"
#include "tools/cli_util.h"
#include "tools/device_flags.h"
#include "tools/moco_flags.h"

DEFINE_string(data, "",
              "Training images as an ImageFolder (<root>/<class>/<image>). May also be "
              "given as the first positional argument, as in main_moco.py.");
DEFINE_string(output_dir, "", "Where checkpoint_%04d.pth.tar and metrics.jsonl go (required).");
DEFINE_string(resume, "",
              "Checkpoint to resume from, or \"latest\" for the newest in --output_dir.");
DEFINE_int32(max_epochs_this_run, 0, "Stop after this many epochs in this invocation (0: all).");
DEFINE_string(profile_trace, "",
              "Write a Chrome trace of LibTorch's operators over ten iterations of the first "
              "epoch (from the 11th) to this file; tools/summarize_trace.py ranks the operators.");
DEFINE_int32(knn_every, 0, "Run the kNN monitor every N epochs (0: off); needs --knn_val.");
DEFINE_string(knn_train, "", "kNN memory bank images (default: --data).");
DEFINE_string(knn_val, "", "kNN query images, e.g. the validation split.");
DEFINE_string(knn_k, "20,200", "Comma-separated neighbour counts.");
DEFINE_double(knn_t, 0.07, "kNN vote temperature.");
DEFINE_string(dist_url, "",
              "tcp://host:port of rank 0's rendezvous (MoCo v3's flag); with --world_size "
              "and --rank. Without it the process reads torchrun's, SLURM's or "
              "MACHINE/MACHINE_TOTAL variables, or runs alone.");
DEFINE_int32(world_size, -1, "Processes in the job (with --dist_url).");
DEFINE_int32(rank, -1, "This process's rank in [0, world_size) (with --dist_url).");
DEFINE_int32(nproc_per_node, 0,
             "Processes per machine: for the MACHINE / MACHINE_TOTAL convention (0: 1), and "
             "with --dist_url and no launcher's LOCAL_RANK, to pick this process's GPU as "
             "rank % nproc_per_node (0: one process per visible GPU).");
DEFINE_string(dist_backend, "auto",
              "c10d backend: auto (nccl on GPUs, gloo on the CPU), gloo, or nccl (CUDA builds).");
DEFINE_double(dist_timeout, 1800,
              "Seconds a process waits for a missing or hung peer before it stops with an "
              "error naming that rank.");
DEFINE_int32(knn_resize, 0, "Short side before the kNN center crop (0: image_size * 8 / 7).");

namespace {

int Fail(const absl::Status& status) {
  std::cerr << "main_moco: " << status.message() << "\n";
  // A lost peer can leave collectives queued in c10d; skip the destructors that would
  // wait for them, so the process exits now.
  std::cout.flush();
  std::cerr.flush();
  std::_Exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  // main_moco.py's spellings work too: -a vit_small -b 1024 -j 8 --moco-m-cos ...
  ssl::tools::AcceptPythonSpellings(argc, argv,
                                    {{"a", "arch"},
                                     {"b", "batch_size"},
                                     {"j", "workers"},
                                     {"p", "print_freq"},
                                     {"wd", "weight_decay"}});
  ssl::tools::ParseProgramFlags(
      &argc, &argv, "MoCo v3 self-supervised pretraining (see --helpfull for all flags)");
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  if (FLAGS_data.empty() && argc > 1) FLAGS_data = argv[1];
  for (std::string* path : {&FLAGS_data, &FLAGS_output_dir, &FLAGS_knn_train, &FLAGS_knn_val}) {
    *path = ssl::tools::UserPath(*path);
  }
  if (FLAGS_resume != "latest") FLAGS_resume = ssl::tools::UserPath(FLAGS_resume);
  if (absl::Status s = ssl::tools::ValidateMocoFlags(); !s.ok()) return Fail(s);
  ssl::distributed::DistributedFlags dist_flags;
  dist_flags.dist_url = FLAGS_dist_url;
  dist_flags.world_size = FLAGS_world_size;
  dist_flags.rank = FLAGS_rank;
  dist_flags.nproc_per_node = FLAGS_nproc_per_node;
  dist_flags.visible_gpus = ssl::VisibleCudaDevices();
  absl::StatusOr<ssl::distributed::DistributedConfig> dist_config =
      ssl::distributed::ResolveDistributedConfig(dist_flags, std::getenv);
  if (!dist_config.ok()) return Fail(dist_config.status());
  if (!(FLAGS_dist_timeout > 0)) {
    return Fail(absl::InvalidArgumentError("--dist_timeout must be > 0 seconds"));
  }
  // Processes sharing a machine share its cores, as torchrun's OMP_NUM_THREADS=1 intends.
  if (FLAGS_threads == 0 && dist_config->local_world_size > 1) {
    FLAGS_threads = std::max(
        1, static_cast<int>(std::thread::hardware_concurrency()) / dist_config->local_world_size);
  }
  ssl::tools::ApplyThreadsFlag();
  // The device first: NCCL and cuDNN start on the GPU made current here.
  absl::StatusOr<ssl::tools::DeviceChoice> device =
      ssl::tools::DeviceFromFlags(dist_config->local_rank, ssl::MixedPrecision::kFloat16);
  if (!device.ok()) return Fail(device.status());
  FLAGS_dist_backend = ssl::tools::ResolveBackend(FLAGS_dist_backend, *device);
  ssl::distributed::ProcessGroupOptions group_options;
  group_options.config = *dist_config;
  group_options.backend = FLAGS_dist_backend;
  group_options.timeout =
      std::chrono::milliseconds(static_cast<int64_t>(FLAGS_dist_timeout * 1000));
  absl::StatusOr<std::shared_ptr<ssl::distributed::Communicator>> communicator =
      ssl::distributed::CreateCommunicator(group_options);
  if (!communicator.ok()) return Fail(communicator.status());
  if (dist_config->world_size > 1) {
    LOG(INFO) << "rank " << dist_config->rank << " of " << dist_config->world_size << " ("
              << dist_config->source << ", " << FLAGS_dist_backend << ", local rank "
              << dist_config->local_rank << "), " << FLAGS_threads << " compute thread(s)";
  }

  ssl::train::PretrainOptions options = ssl::tools::PretrainOptionsFromFlags();
  options.data = FLAGS_data;
  options.output_dir = FLAGS_output_dir;
  options.resume = FLAGS_resume;
  options.max_epochs_this_run = FLAGS_max_epochs_this_run;
  options.profile_trace = ssl::tools::UserPath(FLAGS_profile_trace);
  options.layout = ssl::train::MocoV3Layout();
  options.device = device->device;
  options.amp = device->amp;
  options.channels_last = device->channels_last;
  options.deterministic = device->deterministic;

  ssl::eval::KnnMonitorOptions knn;
  knn.every = FLAGS_knn_every;
  knn.last_epoch = FLAGS_epochs;
  knn.train_folder = FLAGS_knn_train.empty() ? FLAGS_data : FLAGS_knn_train;
  knn.val_folder = FLAGS_knn_val;
  knn.image_size = FLAGS_image_size;
  knn.resize = FLAGS_knn_resize > 0 ? FLAGS_knn_resize : FLAGS_image_size * 8 / 7;
  knn.ks = ssl::tools::ParseIntList(FLAGS_knn_k);
  knn.temperature = FLAGS_knn_t;
  knn.workers = FLAGS_workers;
  absl::StatusOr<ssl::train::EpochMonitor> monitor = ssl::eval::MakeKnnMonitor(knn);
  if (!monitor.ok()) return Fail(monitor.status());

  at::manual_seed(FLAGS_seed);
  absl::StatusOr<std::shared_ptr<ssl::methods::MocoV3Impl>> method =
      ssl::methods::MocoV3Impl::Create(ssl::tools::MocoV3OptionsFromFlags(), *communicator);
  if (!method.ok()) return Fail(method.status());
  absl::StatusOr<ssl::train::PretrainResult> result =
      ssl::train::RunPretraining(**method, options, *communicator, *monitor);
  if (!result.ok()) return Fail(result.status());
  if ((*communicator)->rank() != 0) return 0;
  std::cout << "finished " << result->epochs_completed << "/" << FLAGS_epochs
            << " epochs; last checkpoint " << result->last_checkpoint << "; "
            << result->images_per_second << " images/s\n";
  return 0;
}
