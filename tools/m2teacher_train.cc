// Momentum^2 Teacher pretraining with the original's command line (tools/train.py):
//
//   m2teacher_train -b 256 -d 0-7 --experiment-name my_exp
//       -f momentum_teacher/exps/arxiv/exp_8_v100/momentum2_teacher_100e_exp.py
//       --data data/imagenet_train
//
// -b is the global batch, -d the device ids (one process per id; on a CPU build they
// share the CPU), -f one of the published experiment descriptions (or this project's
// CPU recipe), output in outputs/<experiment name>/ (last_epoch_ckpt.pth.tar in the
// original's layout, train_log metrics as metrics.jsonl). Several machines: MACHINE=k
// MACHINE_TOTAL=n on each, with --dist-url=<machine 0> (port 23456, as the original).
// Unlike the original, a run resumes exactly from its last checkpoint (Momentum BN
// schedule included) unless --noresume.
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <gflags/gflags.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
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
#include "ssl/methods/m2teacher.h"
#include "ssl/train/pretrain.h"
#include "tools/cli_util.h"
#include "tools/device_flags.h"
#include "tools/local_launcher.h"
#include "tools/m2teacher_recipes.h"

DEFINE_int64(b, 256, "Global batch over all processes (-b / --batch-size).");
DEFINE_string(d, "0-7",
              "Device ids, one process each (-d / --devices): a range 0-7 or a list 0,1,2. "
              "On a CPU build the processes share this machine's cores.");
DEFINE_string(set, "",
              "Override attributes of the description by the original's Exp names, e.g. "
              "basic_lr_per_img=0.001,param_momentum=0.996,warmup_epochs=5 (the original edits "
              "its exp file instead); weight_decay, warmup_lr, max_epoch, print_interval, "
              "data_num_workers, arch, hidden_dim, low_dim, image_size and optimizer too, and "
              "this framework's view strengths crop_min, blur_sigma_max and color_strength.");
DEFINE_string(f, "",
              "Experiment description (-f / --exp_file): a name or the original's path, e.g. "
              "momentum_teacher/exps/arxiv/exp_8_v100/momentum2_teacher_100e_exp.py; empty "
              "takes momentum2_teacher_exp (40 epochs). --helpfull does not list them: run "
              "with -f=list.");
DEFINE_string(experiment_name, "",
              "Output folder under outputs/ (-expn / --experiment-name; default: the "
              "description's name).");
DEFINE_string(output_dir, "", "Write here instead of outputs/<experiment name>.");
DEFINE_string(data, "data/imagenet_train", "Training ImageFolder (the original's default).");
DEFINE_string(scheduler, "warmcos", "warmcos (linear warmup from 1e-6, then cosine) or cos.");
DEFINE_string(dist_url, "",
              "Host of machine 0 for several machines (--dist-url; port 23456), else "
              "MASTER_ADDR or this machine.");
DEFINE_string(dist_backend, "auto",
              "c10d backend (--dist-backend): auto (nccl on GPUs, gloo on the CPU), gloo or nccl.");
DEFINE_bool(resume, true, "Continue from outputs/<name>/last_epoch_ckpt.pth.tar when present.");
DEFINE_int32(epochs, 0, "Override the description's epochs (0: keep them).");
DEFINE_int32(max_epochs_this_run, 0,
             "Stop after this many epochs in this invocation, schedules unchanged (0: all); a "
             "later run resumes there.");
DEFINE_uint64(seed, 0, "Seeds initialization, data order and augmentations.");
DEFINE_int32(threads, 0, "Compute threads per process (0: the cores over the local processes).");
DEFINE_int32(workers, 0, "Loader threads per process (0: the description's data_num_workers).");
DEFINE_bool(double_unbias, true,
            "Momentum BN multiplies the unbiased batch variance by n/(n-1) again, as the "
            "original does (its published numbers come from it).");
DEFINE_double(dist_timeout, 1800, "Seconds to wait for a missing or hung peer.");
DEFINE_bool(sync_bn, false,
            "Synchronize the student's BN and the teacher's Momentum BN over all processes "
            "(the original's statistics are per process).");
DEFINE_int32(knn_every, 0, "kNN monitor every N epochs on the teacher (0: off); needs --knn_val.");
DEFINE_string(knn_val, "", "kNN query ImageFolder.");
DEFINE_string(knn_train, "", "kNN memory bank ImageFolder (default: the training data).");
DEFINE_string(profile_trace, "",
              "Write a Chrome trace of LibTorch's operators over ten iterations of the first "
              "epoch (from the 11th) to this file; tools/summarize_trace.py ranks the operators.");

namespace {

int Fail(const absl::Status& status) {
  std::cerr << "m2teacher_train: " << status.message() << "\n";
  std::cout.flush();
  std::cerr.flush();
  std::_Exit(1);
}

// The original's spellings (argparse, with dashes and short aliases) to gflags names.
std::vector<std::string> Canonical(int argc, char** argv) {
  static const std::pair<const char*, const char*> kAliases[] = {
      {"--batch-size", "--b"},
      {"--devices", "--d"},
      {"--exp_file", "--f"},
      {"--exp-file", "--f"},
      {"--experiment-name", "--experiment_name"},
      {"-expn", "--experiment_name"},
      {"--expn", "--experiment_name"},
      {"--dist-url", "--dist_url"},
      {"--dist-backend", "--dist_backend"},
      {"--output-dir", "--output_dir"}};
  std::vector<std::string> args = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    for (const auto& [from, to] : kAliases) {
      const std::string f = from;
      if (arg == f || arg.rfind(f + "=", 0) == 0) arg = to + arg.substr(f.size());
    }
    args.push_back(arg);
  }
  return args;
}

// The original's parse_devices: "0-7" -> 8 ids, "0,2" -> 2.
absl::StatusOr<int> CountDevices(const std::string& ids) {
  const size_t dash = ids.find('-');
  if (dash != std::string::npos) {
    int first = 0, last = 0;
    if (!absl::SimpleAtoi(ids.substr(0, dash), &first) ||
        !absl::SimpleAtoi(ids.substr(dash + 1), &last) || last < first || first < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("-d must be a range like 0-7, got \"", ids, "\""));
    }
    return last - first + 1;
  }
  int count = 0;
  for (const std::string& id :
       std::vector<std::string>(absl::StrSplit(ids, ',', absl::SkipEmpty()))) {
    int value = 0;
    if (!absl::SimpleAtoi(id, &value) || value < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("-d must list device ids like 0,1,2, got \"", ids, "\""));
    }
    ++count;
  }
  if (count == 0) return absl::InvalidArgumentError("-d names no device");
  return count;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string usage =
      "Momentum^2 Teacher pretraining, tools/train.py's command line:\n"
      "  m2teacher_train -b 256 -d 0-7 --experiment-name my_exp -f <description> "
      "--data data/imagenet_train\n"
      "Descriptions: -f=list. Own flags below; library flags: --helpfull.";
  std::vector<std::string> canonical = Canonical(argc, argv);
  std::vector<char*> canonical_argv;
  for (std::string& arg : canonical) canonical_argv.push_back(arg.data());
  int canonical_argc = static_cast<int>(canonical_argv.size());
  char** parsed = canonical_argv.data();
  ssl::tools::ParseProgramFlags(&canonical_argc, &parsed, usage);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  if (FLAGS_f == "list") {
    for (const ssl::tools::M2TeacherRecipe& recipe : ssl::tools::M2TeacherRecipes()) {
      std::cout << recipe.name << "  (" << recipe.table << ", " << recipe.epochs << " epochs)\n";
    }
    return 0;
  }
  absl::StatusOr<ssl::tools::M2TeacherRecipe> recipe =
      ssl::tools::FindM2TeacherRecipe(FLAGS_f.empty() ? "momentum2_teacher_exp" : FLAGS_f);
  if (!recipe.ok()) return Fail(recipe.status());
  if (absl::Status s = ssl::tools::ApplyM2TeacherOverrides(FLAGS_set, &*recipe); !s.ok()) {
    return Fail(s);
  }
  if (FLAGS_epochs > 0) recipe->epochs = FLAGS_epochs;
  if (FLAGS_scheduler != "warmcos" && FLAGS_scheduler != "cos") {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--scheduler must be warmcos or cos, got \"", FLAGS_scheduler, "\"")));
  }
  absl::StatusOr<int> devices = CountDevices(FLAGS_d);
  if (!devices.ok()) return Fail(devices.status());

  // One process per device id on each of MACHINE_TOTAL machines.
  ssl::distributed::DistributedFlags dist_flags;
  dist_flags.nproc_per_node = *devices;
  absl::StatusOr<ssl::distributed::DistributedConfig> dist =
      ssl::distributed::ResolveDistributedConfig(dist_flags, std::getenv);
  if (!dist.ok()) return Fail(dist.status());
  const char* machines_env = std::getenv("MACHINE_TOTAL");
  const int machines = machines_env ? std::max(1, std::atoi(machines_env)) : 1;
  if ((dist->source == "single" || dist->source == "machine") && *devices * machines > 1 &&
      std::getenv("RANK") == nullptr) {
    ssl::tools::LaunchOptions launch;
    launch.name = "m2teacher_train";
    launch.nproc_per_node = *devices;
    launch.nnodes = machines;
    const char* machine = std::getenv("MACHINE");
    launch.node_rank = machine ? std::atoi(machine) : 0;
    const char* master = std::getenv("MASTER_ADDR");
    launch.master_addr = !FLAGS_dist_url.empty() ? FLAGS_dist_url : master ? master : "127.0.0.1";
    launch.master_port = machines > 1 ? 23456 : ssl::tools::FreeLocalPort();
    std::vector<std::string> self = {"/proc/self/exe"};
    for (int i = 1; i < argc; ++i) self.push_back(argv[i]);
    return ssl::tools::LaunchLocalRanks(launch, self);
  }
  const int threads = FLAGS_threads > 0
                          ? FLAGS_threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) /
                                            std::max(1, dist->local_world_size));
  at::set_num_threads(threads);
  absl::StatusOr<ssl::tools::DeviceChoice> device = ssl::tools::DeviceFromFlags(
      dist->local_rank, ssl::MixedPrecision::kOff);
  if (!device.ok()) return Fail(device.status());
  ssl::distributed::ProcessGroupOptions group_options;
  group_options.config = *dist;
  group_options.backend = ssl::tools::ResolveBackend(FLAGS_dist_backend, *device);
  group_options.timeout =
      std::chrono::milliseconds(static_cast<int64_t>(FLAGS_dist_timeout * 1000));
  absl::StatusOr<std::shared_ptr<ssl::distributed::Communicator>> communicator =
      ssl::distributed::CreateCommunicator(group_options);
  if (!communicator.ok()) return Fail(communicator.status());

  const std::string name = FLAGS_experiment_name.empty()
                               ? recipe->name.substr(recipe->name.rfind('/') + 1)
                               : FLAGS_experiment_name;
  ssl::train::PretrainOptions options;
  options.data = ssl::tools::UserPath(FLAGS_data);
  options.output_dir =
      ssl::tools::UserPath(FLAGS_output_dir.empty() ? "outputs/" + name : FLAGS_output_dir);
  options.batch_size = FLAGS_b;
  options.epochs = recipe->epochs;
  const ssl::tools::M2TeacherRecipe schedule_recipe = *recipe;
  const std::string scheduler = FLAGS_scheduler;
  const int64_t batch = FLAGS_b;
  options.learning_rate = [schedule_recipe, scheduler,
                           batch](const ssl::methods::StepContext& step) {
    return ssl::tools::M2TeacherLearningRate(schedule_recipe, scheduler, batch, step.global_step,
                                             step.iterations_per_epoch,
                                             static_cast<int>(step.epochs));
  };
  options.optimizer = recipe->optimizer;
  options.optimizer_options.weight_decay = recipe->weight_decay;
  options.optimizer_options.momentum = 0.9;
  options.optimizer_options.trust_coefficient = 0.001;
  options.print_freq = recipe->print_interval;
  options.seed = FLAGS_seed;
  options.resume = FLAGS_resume ? "latest" : "";
  options.max_epochs_this_run = FLAGS_max_epochs_this_run;
  options.profile_trace = ssl::tools::UserPath(FLAGS_profile_trace);
  options.workers = FLAGS_workers > 0 ? FLAGS_workers : recipe->data_num_workers;
  options.bn = FLAGS_sync_bn ? "sync" : "local";  // per process, as the original's
  options.layout = ssl::train::M2TeacherLayout();
  options.device = device->device;
  options.amp = device->amp;
  options.channels_last = device->channels_last;
  options.deterministic = device->deterministic;
  options.program_config = {{"recipe", recipe->name},
                            {"table", recipe->table},
                            {"scheduler", FLAGS_scheduler},
                            {"basic_lr_per_img", recipe->basic_lr_per_img},
                            {"devices", *devices},
                            {"machines", machines},
                            {"overrides", FLAGS_set},
                            {"warmup_epochs", recipe->warmup_epochs},
                            {"weight_decay", recipe->weight_decay}};

  ssl::methods::M2TeacherOptions method_options = ssl::tools::M2TeacherMethodOptions(*recipe);
  method_options.double_unbias = FLAGS_double_unbias;
  method_options.sync_momentum_bn = FLAGS_sync_bn;
  at::manual_seed(options.seed);
  absl::StatusOr<std::shared_ptr<ssl::methods::M2TeacherImpl>> method =
      ssl::methods::M2TeacherImpl::Create(method_options, *communicator);
  if (!method.ok()) return Fail(method.status());

  ssl::eval::KnnMonitorOptions knn;
  knn.every = FLAGS_knn_every;
  knn.last_epoch = options.epochs;
  knn.train_folder = FLAGS_knn_train.empty() ? options.data : ssl::tools::UserPath(FLAGS_knn_train);
  knn.val_folder = ssl::tools::UserPath(FLAGS_knn_val);
  knn.image_size = recipe->image_size;
  knn.resize = recipe->image_size * 8 / 7;
  knn.workers = options.workers;
  absl::StatusOr<ssl::train::EpochMonitor> monitor = ssl::eval::MakeKnnMonitor(knn);
  if (!monitor.ok()) return Fail(monitor.status());
  if ((*communicator)->rank() == 0) {
    LOG(INFO) << "Momentum^2 Teacher " << recipe->name << " (" << recipe->table
              << "): " << recipe->arch << ", batch " << FLAGS_b << ", " << options.epochs
              << " epochs, " << recipe->optimizer << ", lr " << recipe->basic_lr_per_img * FLAGS_b
              << ", output " << options.output_dir;
  }
  absl::StatusOr<ssl::train::PretrainResult> result =
      ssl::train::RunPretraining(**method, options, *communicator, *monitor);
  if (!result.ok()) return Fail(result.status());
  if ((*communicator)->rank() == 0) {
    if (absl::Status s =
            ssl::train::WritePretrainResult(*result, options.epochs, options.output_dir);
        !s.ok()) {
      return Fail(s);
    }
    std::cout << "Pre-training of experiment: " << recipe->name
              << " is done: " << result->epochs_completed << "/" << options.epochs
              << " epochs; last checkpoint " << result->last_checkpoint << "; "
              << result->images_per_second << " images/s\n";
  }
  return 0;
}
