#include "ssl/train/pretrain.h"

#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "ssl/core/file.h"
#include "ssl/core/logging.h"
#include "ssl/core/status_macros.h"
#include "ssl/data/image_folder.h"
#include "ssl/data/loader.h"
#include "ssl/distributed/gradient_sync.h"
#include "ssl/nn/batch_norm.h"
#include "ssl/nn/state_dict.h"
#include "ssl/optim/grad_scaler.h"
#include "ssl/train/checkpoint.h"
#include "ssl/train/training_log.h"

namespace ssl::train {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using methods::Method;
using methods::StepContext;

namespace {

absl::Status Validate(const PretrainOptions& o, int world_size) {
  if (o.data.empty()) return absl::InvalidArgumentError("no training data given (--data)");
  if (o.output_dir.empty())
    return absl::InvalidArgumentError("no output directory given (--output_dir)");
  if (o.batch_size < 1 || o.batch_size % world_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat("batch size ", o.batch_size,
                                                   " must be a positive multiple of the ",
                                                   world_size, " processes"));
  }
  if (o.bn == "split" && o.split_bn_splits > 0 && (o.batch_size / world_size) % o.split_bn_splits) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the batch of ", o.batch_size / world_size, " per process does not divide into ",
        o.split_bn_splits, " split-BN sub-batches (--split_bn_splits)"));
  }
  if (o.epochs < 1)
    return absl::InvalidArgumentError(absl::StrCat("epochs must be >= 1, got ", o.epochs));
  if (!o.learning_rate) return absl::InvalidArgumentError("no learning-rate schedule given");
  if (o.optimizer_options.weight_decay < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight decay must be >= 0, got ", o.optimizer_options.weight_decay));
  }
  if (o.print_freq < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("print frequency must be >= 1, got ", o.print_freq));
  }
  if (o.checkpoint_every < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint frequency must be >= 1 epoch, got ", o.checkpoint_every));
  }
  if (!o.layout) return absl::InvalidArgumentError("no checkpoint layout given");
  return absl::OkStatus();
}

// The optimizer over the method's parameter groups, and the parameters whose gradients
// are dropped for their first iterations.
struct OptimizedParameters {
  std::unique_ptr<optim::Optimizer> optimizer;
  std::vector<at::Tensor> trainable;  ///< what gradient averaging covers
  std::vector<std::pair<at::Tensor, int64_t>> frozen_until;

  /// VISSL's TEMP_FROZEN_PARAMS_ITER_MAP: no gradient, so no momentum or decay either.
  void DropFrozenGradients(int64_t global_step) {
    for (auto& [param, until] : frozen_until) {
      if (global_step < until && param.grad().defined()) param.mutable_grad().reset();
    }
  }
};

absl::StatusOr<OptimizedParameters> BuildOptimizer(Method& method, const PretrainOptions& o) {
  OptimizedParameters result;
  std::vector<optim::ParamGroup> groups;
  for (methods::ParameterGroup& group : method.ParameterGroups()) {
    for (const at::Tensor& p : group.parameters) {
      if (p.requires_grad()) result.trainable.push_back(p);
      if (group.frozen_iterations > 0) result.frozen_until.emplace_back(p, group.frozen_iterations);
    }
    groups.push_back(optim::ParamGroup{
        std::move(group.parameters), group.no_weight_decay ? 0.0 : o.optimizer_options.weight_decay,
        group.no_trust_ratio});
  }
  SSL_ASSIGN_OR_RETURN(result.optimizer,
                       optim::MakeOptimizer(o.optimizer, std::move(groups), o.optimizer_options));
  return result;
}

nlohmann::json RunConfig(const Method& method, const PretrainOptions& o) {
  nlohmann::json config = method.Config();
  config["method"] = method.name();
  nlohmann::json backbones = nlohmann::json::object();
  const auto locations = method.Backbones();
  for (const auto& [name, where] : locations) {
    backbones[name] = {{"arch", where.arch},
                       {"cifar_stem", where.cifar_stem},
                       {"prefix", where.prefix},
                       {"head_prefixes", where.head_prefixes}};
  }
  config["backbones"] = backbones;
  config["eval_backbone"] = locations.empty() ? "" : locations.front().first;
  config["batch_size"] = o.batch_size;
  config["epochs"] = o.epochs;
  config["optimizer"] = o.optimizer;
  config["weight_decay"] = o.optimizer_options.weight_decay;
  config["seed"] = o.seed;
  config["bn"] = o.bn;
  config["sync_bn_group_size"] = o.sync_bn_group_size;
  config["split_bn_splits"] = o.split_bn_splits;
  config["data"] = o.data;
  config["device"] = o.device.str();
  config["amp"] = AmpName(o.amp);
  config["channels_last"] = o.channels_last;
  if (!o.program_config.is_null()) config["program"] = o.program_config;
  return config;
}

// Collectives take tensors on the training device (NCCL has no host tensors).
double MeanOverProcesses(distributed::Communicator& communicator, double value,
                         c10::Device device) {
  if (communicator.world_size() == 1) return value;
  at::Tensor sum = at::full({1}, value, at::TensorOptions(at::kDouble).device(device));
  communicator.AllReduceSum(sum);
  return sum.item<double>() / communicator.world_size();
}

// Every process continues from the same epoch with rank 0's weights.
absl::Status AgreeAcrossProcesses(distributed::Communicator& communicator, Method& method,
                                  int start_epoch, c10::Device device) {
  at::Tensor epoch_of_rank0 =
      at::full({1}, start_epoch, at::TensorOptions(at::kLong).device(device));
  communicator.Broadcast(epoch_of_rank0, 0);
  if (epoch_of_rank0.item<int64_t>() != start_epoch) {
    // Resuming needs checkpoints on a filesystem every process sees (as in MoCo v3).
    return absl::FailedPreconditionError(absl::StrCat(
        "rank ", communicator.rank(), " would start at epoch ", start_epoch, " but rank 0 at ",
        epoch_of_rank0.item<int64_t>(), "; --output_dir must be shared by all machines"));
  }
  c10::AutoGradMode no_grad(false);
  for (at::Tensor tensor : method.parameters()) communicator.Broadcast(tensor, 0);
  for (at::Tensor tensor : method.buffers()) communicator.Broadcast(tensor, 0);
  return absl::OkStatus();
}

// Loads the snapshot `resume` names into the method and optimizer; returns the epochs
// already done (0 for a fresh start).
absl::StatusOr<int> Restore(const Checkpointer& checkpointer, const std::string& resume,
                            Method& method, optim::Optimizer& optimizer, optim::GradScaler& scaler,
                            bool is_main) {
  std::string path;
  SSL_ASSIGN_OR_RETURN(std::optional<TrainingSnapshot> snapshot,
                       checkpointer.Load(resume, method.name(), &path));
  if (!snapshot) return 0;
  auto failed = [&path](const absl::Status& s) {
    return absl::InvalidArgumentError(absl::StrCat("cannot resume from ", path, ": ", s.message()));
  };
  if (absl::Status s = LoadStateDictFromIValue(method, snapshot->model, ""); !s.ok())
    return failed(s);
  if (absl::Status s = optimizer.LoadStateDict(snapshot->optimizer); !s.ok()) return failed(s);
  if (absl::Status s = method.LoadExtraState(snapshot->extra); !s.ok()) return failed(s);
  if (absl::Status s = scaler.LoadStateDict(snapshot->scaler); !s.ok()) return failed(s);
  if (is_main) LOG(INFO) << "resumed from " << path << " at epoch " << snapshot->epochs_done;
  return static_cast<int>(snapshot->epochs_done);
}

absl::StatusOr<PretrainResult> Train(Method& method, const PretrainOptions& o,
                                     std::shared_ptr<distributed::Communicator> communicator,
                                     const EpochMonitor& monitor) {
  const int world = communicator->world_size();
  const bool is_main = communicator->rank() == 0;
  SSL_RETURN_IF_ERROR(Validate(o, world));
  std::error_code error;
  fs::create_directories(o.output_dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create output directory ", o.output_dir, ": ", error.message()));
  }
  if (!o.profile_trace.empty() && is_main && !std::ofstream(o.profile_trace)) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot write the profile trace ", o.profile_trace));
  }
  SSL_ASSIGN_OR_RETURN(data::ImageFolder folder, data::ImageFolder::Open(o.data));
  SSL_ASSIGN_OR_RETURN(
      nn::BatchNormSetting bn_setting,
      nn::MakeBatchNormSetting(o.bn, o.sync_bn_group_size, o.split_bn_splits, communicator));
  nn::ConfigureBatchNorm(method, bn_setting);
  PrepareDevice(o.device, o.deterministic);
  method.to(o.device);
  if (o.channels_last) ToChannelsLast(method);
  SSL_ASSIGN_OR_RETURN(OptimizedParameters optimized, BuildOptimizer(method, o));
  optim::Optimizer& optimizer = *optimized.optimizer;
  optim::GradScalerOptions scaler_options;
  scaler_options.enabled = o.amp == MixedPrecision::kFloat16;
  optim::GradScaler scaler(scaler_options);

  // Resume: weights, optimizer state, the method's extra state and the epoch. The data
  // order and augmentations are functions of (seed, epoch), so nothing else is needed.
  const Checkpointer checkpointer(o.output_dir, o.layout);
  SSL_ASSIGN_OR_RETURN(const int start_epoch,
                       Restore(checkpointer, o.resume, method, optimizer, scaler, is_main));
  if (world > 1) {
    SSL_RETURN_IF_ERROR(AgreeAcrossProcesses(*communicator, method, start_epoch, o.device));
  }
  distributed::GradientAverager gradient_averager(optimized.trainable, communicator,
                                                  o.bucket_bytes);

  data::LoaderOptions loader_options;
  loader_options.batch_size = o.batch_size / world;
  loader_options.num_workers = o.workers;
  // Workers fill one batch together, so two open batches keep any number of them busy
  // and hold (2 + 2) batches of memory whatever --workers is.
  loader_options.prefetch_batches = 2;
  loader_options.seed = o.seed;
  loader_options.world_size = world;
  loader_options.rank = communicator->rank();
  loader_options.pin_memory = o.device.is_cuda();
  SSL_ASSIGN_OR_RETURN(std::unique_ptr<data::Loader> loader,
                       data::Loader::Create(folder, method.Views(), loader_options));
  const int64_t iters = loader->BatchesPerEpoch();

  const int end_epoch = o.max_epochs_this_run > 0
                            ? std::min(o.epochs, start_epoch + o.max_epochs_this_run)
                            : o.epochs;
  const std::string config_json = RunConfig(method, o).dump();
  TrainingLog log((fs::path(o.output_dir) / "metrics.jsonl").string(), is_main,
                  (end_epoch - start_epoch) * iters, o.print_freq);
  PretrainResult result;
  result.epochs_completed = start_epoch;
  int64_t iterations_done = 0;
  const auto run_start = Clock::now();
  if (is_main) {
    LOG(INFO) << method.name() << " " << method.EvalBackbone().name() << ": " << folder.size()
              << " images in " << folder.num_classes() << " classes, " << iters
              << " iterations/epoch of " << o.batch_size << " (" << world
              << " process(es)), optimizer " << o.optimizer << ", device " << o.device << ", amp "
              << AmpName(o.amp) << ", epochs " << start_epoch << " -> " << end_epoch << " of "
              << o.epochs << "; loader batches reuse at most "
              << loader->BatchPoolBytes() / (1 << 20) << " MiB";
  }

  for (int epoch = start_epoch; epoch < end_epoch; ++epoch) {
    method.train();
    loader->StartEpoch(epoch);
    log.StartEpoch(loader->stats().wait_seconds);
    // Losses stay on the device and are read back at print intervals, at the epoch's
    // end, and every step on the CPU (where reading is free and a non-finite loss stops
    // the run before its update).
    at::Tensor loss_sum = at::zeros({}, at::TensorOptions(at::kDouble).device(o.device));
    int64_t steps_in_loss_sum = 0;
    const bool read_every_step = !o.device.is_cuda();
    data::Batch batch;
    // Where the epoch's time goes, for metrics.jsonl (seconds per phase, this process).
    std::map<std::string, double> phase_seconds;
    auto phase_mark = Clock::now();
    const auto end_phase = [&](const char* phase) {
      const auto now = Clock::now();
      phase_seconds[phase] += std::chrono::duration<double>(now - phase_mark).count();
      phase_mark = now;
    };
    // Profiles LibTorch's operators over ten iterations, past the first ones' warm-up.
    std::unique_ptr<torch::autograd::profiler::RecordProfile> profile;
    const int64_t profile_begin = iters >= 20 ? 10 : 0;
    const bool profiling = !o.profile_trace.empty() && epoch == start_epoch && is_main;
    const auto finish_profile = [&](int64_t last_iteration) {
      profile.reset();  // writes the trace
      LOG(INFO) << "wrote a trace of iterations " << profile_begin + 1 << "-" << last_iteration
                << " to " << o.profile_trace;
    };
    for (int64_t it = 0; it < iters; ++it) {
      if (profiling && it == profile_begin) {
        profile = std::make_unique<torch::autograd::profiler::RecordProfile>(o.profile_trace);
      }
      if (profile != nullptr && it == profile_begin + 10) finish_profile(it);
      phase_mark = Clock::now();
      SSL_ASSIGN_OR_RETURN(const bool more, loader->Next(&batch));
      if (!more) break;
      for (at::Tensor& group : batch.groups) {
        group = group.to(o.device, /*non_blocking=*/true);
        if (o.channels_last) group = group.contiguous(at::MemoryFormat::ChannelsLast);
      }
      end_phase("data");
      StepContext step;
      step.epoch = epoch;
      step.iteration = it;
      step.iterations_per_epoch = iters;
      step.epochs = o.epochs;
      step.global_step = epoch * iters + it;
      step.total_steps = o.epochs * iters;
      step.lr = o.learning_rate(step);
      optimizer.set_lr(step.lr);
      method.BeforeStep(step);
      at::Tensor loss;
      {
        AutocastScope autocast(o.device, o.amp);
        loss = method.Loss(batch.groups, step);
      }
      const bool read_back = read_every_step || log.Due(step);  // Due: also the last step
      const double loss_value = read_back ? loss.item<double>() : 0.0;
      // The mean over processes is non-finite when any process's loss is: one all-reduce
      // both logs the loss and lets every process stop at the same step (a process that
      // stopped alone would leave the others waiting in their next collective).
      const double mean_loss =
          read_back ? MeanOverProcesses(*communicator, loss_value, o.device) : 0.0;
      end_phase("forward");
      // A non-finite loss stops the run, on every process at once; under fp16 loss
      // scaling it is an overflow instead, and the scaler skips the step.
      if (read_back && !scaler.enabled() && !std::isfinite(mean_loss)) {
        if (std::isfinite(loss_value)) {
          return absl::InternalError(absl::StrCat(
              "another process's loss became non-finite at epoch ", epoch, " iteration ", it,
              "; this process (rank ", communicator->rank(), ") stops with it"));
        }
        return StopOnNonFiniteLoss({loss_value, step, batch.indices}, method, o.output_dir);
      }
      optimizer.ZeroGrad();
      scaler.Scale(loss).backward();
      end_phase("backward");
      gradient_averager.Synchronize();
      end_phase("gradient_sync");
      scaler.Unscale(optimized.trainable);
      optimized.DropFrozenGradients(step.global_step);
      // fp16: a step whose gradients overflowed is skipped, as GradScaler.step does, and
      // left out of the epoch's loss (the gradients are averaged first, so every
      // process skips the same steps).
      if (!scaler.FoundInf()) {
        optimizer.Step();
        loss_sum.add_(loss.detach());
        ++steps_in_loss_sum;
      }
      scaler.Update();
      end_phase("optimizer");
      ++iterations_done;
      const double logged_loss = log.Due(step) ? mean_loss : loss_value;
      log.Iteration(step, logged_loss, method.ScheduledValues(),
                    log.Due(step) ? method.Indicators() : std::vector<methods::Indicator>(),
                    batch.labels.size(0) * world, loader->stats().wait_seconds);
    }
    if (profile != nullptr) finish_profile(iters);  // an epoch shorter than the span
    const double epoch_loss_sum = loss_sum.item<double>();
    if (!std::isfinite(epoch_loss_sum)) {
      return absl::InternalError(absl::StrCat(
          "the loss became non-finite during epoch ", epoch + 1,
          " between two print intervals (losses are read back every --print_freq steps on a "
          "GPU; rerun from the last checkpoint with a smaller --print_freq to find the step)"));
    }
    if (steps_in_loss_sum == 0) {
      return absl::InternalError(absl::StrCat(
          "every step of epoch ", epoch + 1,
          " overflowed in fp16 and was skipped; try --amp=bf16 or fp32, or a lower learning rate"));
    }
    result.final_loss =
        MeanOverProcesses(*communicator, epoch_loss_sum / steps_in_loss_sum, o.device);
    result.epochs_completed = epoch + 1;
    nlohmann::json record = {{"type", "epoch"},
                             {"epoch", epoch + 1},
                             {"loss", result.final_loss},
                             {"decode_failures", loader->stats().decode_failures},
                             // Constant after the first epoch: batches reuse the pool.
                             {"loader_batch_allocations", loader->stats().batch_allocations},
                             {"seconds_by_phase", phase_seconds}};
    const bool final = epoch + 1 == o.epochs;
    if ((epoch + 1) % o.checkpoint_every == 0 || final || epoch + 1 == end_epoch) {
      // Every process contributes its extra state (SwAV's per-process queues).
      TrainingSnapshot snapshot;
      snapshot.extra = ToCpu(method.ExtraState()).toGenericDict();
      if (is_main) {
        snapshot.epochs_done = epoch + 1;
        snapshot.global_step = (epoch + 1) * iters;
        snapshot.arch = method.EvalBackbone().name();
        snapshot.model = ToCpu(StateDictToIValue(method)).toGenericDict();
        snapshot.optimizer = ToCpu(optimizer.StateDict());
        snapshot.scaler = scaler.StateDict().toGenericDict();
        snapshot.config_json = config_json;
        SSL_ASSIGN_OR_RETURN(result.last_checkpoint, checkpointer.Save(snapshot, final));
      }
    }
    if (monitor && is_main) {
      absl::StatusOr<nlohmann::json> extra = monitor(epoch + 1, method.EvalBackbone());
      method.train();
      if (!extra.ok()) return extra.status();
      record.update(*extra);
    }
    // The others wait here while rank 0 checkpoints and evaluates.
    if (world > 1) communicator->Barrier();
    log.Epoch(record);
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - run_start).count();
  result.images_per_second = seconds > 0 ? iterations_done * o.batch_size / seconds : 0;
  if (result.last_checkpoint.empty() && start_epoch > 0) {
    absl::StatusOr<std::string> latest = checkpointer.Latest();
    if (latest.ok()) result.last_checkpoint = *latest;
  }
  if (iterations_done == 0 && start_epoch > 0) {
    // Resumed a finished run: its last epoch's loss is in the log it wrote then.
    std::ifstream metrics((fs::path(o.output_dir) / "metrics.jsonl").string());
    std::string line;
    while (std::getline(metrics, line)) {
      const nlohmann::json record = nlohmann::json::parse(line, nullptr, false);
      if (record.is_object() && record.value("type", "") == "epoch" &&
          record.value("epoch", 0) == start_epoch && record.contains("loss") &&
          record["loss"].is_number()) {
        result.final_loss = record["loss"].get<double>();
      }
    }
  }
  return result;
}

}  // namespace

absl::Status WritePretrainResult(const PretrainResult& result, int epochs,
                                 const std::string& output_dir) {
  const nlohmann::json summary = {{"epochs_completed", result.epochs_completed},
                                  {"epochs", epochs},
                                  {"final_loss", result.final_loss},
                                  {"images_per_second", result.images_per_second},
                                  {"last_checkpoint", result.last_checkpoint}};
  return ssl::WriteFileAtomically((fs::path(output_dir) / "pretrain_result.json").string(),
                                  summary.dump(2) + "\n");
}

absl::StatusOr<PretrainResult> ReadPretrainResult(const std::string& output_dir) {
  std::ifstream file((fs::path(output_dir) / "pretrain_result.json").string());
  const nlohmann::json summary = nlohmann::json::parse(file, nullptr, false);
  if (!file || summary.is_discarded() || !summary.is_object()) {
    return absl::DataLossError("the pretraining wrote no pretrain_result.json");
  }
  PretrainResult result;
  result.last_checkpoint = summary.value("last_checkpoint", std::string());
  result.epochs_completed = summary.value("epochs_completed", 0);
  result.final_loss = summary.value("final_loss", 0.0);
  result.images_per_second = summary.value("images_per_second", 0.0);
  return result;
}

absl::StatusOr<PretrainResult> RunPretraining(
    Method& method, const PretrainOptions& options,
    std::shared_ptr<distributed::Communicator> communicator, const EpochMonitor& monitor) {
  try {
    return Train(method, options, std::move(communicator), monitor);
  } catch (const distributed::CollectiveError& e) {
    return absl::UnavailableError(e.what());
  } catch (const std::invalid_argument& e) {
    return absl::InvalidArgumentError(e.what());
  } catch (const c10::Error& e) {
    // A tensor check failed (shapes the method cannot take): one sentence, no backtrace.
    return absl::InternalError(e.what_without_backtrace());
  }
}

}  // namespace ssl::train
