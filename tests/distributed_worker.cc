// One process of a multi-process test job (started by distributed_test with torchrun's
// variables). Scenarios:
//   collectives  every collective and SyncBN group size, values written per rank
//   moco_step    MoCo v3 steps on a fixed global batch split over the processes
//   swav_step    SwAV steps (multi-crop, Sinkhorn over processes, a queue, LARC,
//                frozen prototypes) on a fixed global batch split over the processes
//   m2t_step     Momentum^2 Teacher steps (EMA, Momentum BN, LARS groups)
//   sync_bn      one SyncBN layer forward and backward
//   lose_rank    all-reduces in a loop while --victim kills or stops itself
//   latency      mean time of small and large collectives (a benchmark, not a test)
// Exit status: 0 done, 3 a collective failed (message on stderr), 2 any other error.
#include <ATen/Parallel.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/tensor.h>
#include <c10/core/GradMode.h>
#include <gflags/gflags.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "ssl/distributed/environment.h"
#include "ssl/distributed/gradient_sync.h"
#include "ssl/distributed/process_group.h"
#include "ssl/methods/m2teacher.h"
#include "ssl/methods/mocov3.h"
#include "ssl/methods/swav.h"
#include "ssl/nn/batch_norm.h"
#include "ssl/nn/state_dict.h"
#include "ssl/optim/optimizer.h"
#include "ssl/train/checkpoint.h"

DEFINE_string(scenario, "collectives",
              "collectives | moco_step | swav_step | m2t_step | sync_bn | channels_last_grads | "
              "lose_rank");
DEFINE_string(output, "", "Results file (rank 0; collectives: one per rank, .<rank> appended).");
DEFINE_int32(timeout_ms, 10000, "Collective and rendezvous timeout.");
DEFINE_int32(heartbeat_ms, 200, "Heartbeat interval.");
DEFINE_int32(global_batch, 8, "moco_step: samples over all processes.");
DEFINE_int32(steps, 2, "moco_step: optimizer steps.");
DEFINE_string(bn, "sync", "moco_step: local | sync | split.");
DEFINE_int32(split_bn_splits, 2, "moco_step: splits for --bn=split.");
DEFINE_bool(double_precision, true,
            "moco_step: float64 model and data, so that 1e-10 agreement is meaningful "
            "(float32 runs can flip a ReLU on a borderline activation after a few steps).");
DEFINE_bool(overlap, true, "moco_step: start bucket all-reduces from autograd hooks.");
DEFINE_string(bn_dtype, "float", "sync_bn: the layer's input dtype: float, half or bfloat16.");
DEFINE_int32(bn_spatial, 4, "sync_bn: input height and width.");
DEFINE_string(bn_mode, "sync",
              "sync_bn: sync (SyncBN) or momentum (synchronized Momentum BN, two calls).");
DEFINE_double(bn_grad_scale, 1, "sync_bn: scale of the upstream gradient (a loss scale).");
DEFINE_int32(victim, 1, "lose_rank: the rank that goes away.");
DEFINE_string(victim_action, "kill",
              "lose_rank: kill (SIGKILL), stop (SIGSTOP), or stop_mid_request (SIGSTOP "
              "after the first byte of a request to the rendezvous store).");

namespace ssl {
namespace {

using distributed::Communicator;

void Save(const c10::impl::GenericDict& results, const std::string& path) {
  const absl::Status saved = train::SaveIValue(results, path);
  if (!saved.ok()) throw std::runtime_error(std::string(saved.message()));
}

c10::impl::GenericDict NewDict() {
  return c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get());
}

void Collectives(const std::shared_ptr<Communicator>& shared) {
  Communicator& comm = *shared;
  const int r = comm.rank();
  auto results = NewDict();
  results.insert("rank", static_cast<int64_t>(r));
  results.insert("world_size", static_cast<int64_t>(comm.world_size()));
  results.insert("gathered",
                 comm.AllGather(at::tensor({static_cast<float>(r), 10.0f * r}).view({1, 2})));
  at::Tensor sum = at::tensor({r + 1.0f, 1.0f});
  comm.AllReduceSum(sum);
  results.insert("sum", sum);
  at::Tensor async_sum = at::full({3}, static_cast<float>(r));
  comm.AllReduceSumAsync(async_sum)->Wait();
  results.insert("async_sum", async_sum);
  at::Tensor broadcast = at::full({2}, static_cast<float>(r));
  comm.Broadcast(broadcast, comm.world_size() / 2);
  results.insert("broadcast", broadcast);
  for (int group_size : {-1, 0, 1}) {
    auto group = distributed::SyncBatchNormGroup(shared, group_size);
    if (!group.ok()) throw std::runtime_error(std::string(group.status().message()));
    at::Tensor ranks = at::full({1}, static_cast<float>(r));
    (*group)->AllReduceSum(ranks);
    const std::string key = "group" + std::to_string(group_size);
    results.insert(key + "_size", static_cast<int64_t>((*group)->world_size()));
    results.insert(key + "_rank", static_cast<int64_t>((*group)->rank()));
    results.insert(key + "_sum", ranks);
  }
  comm.Barrier();
  Save(results, FLAGS_output + "." + std::to_string(r));
}

at::Tensor Flat(const std::vector<at::Tensor>& tensors, bool grads) {
  std::vector<at::Tensor> pieces;
  for (const at::Tensor& t : tensors) {
    if (!t.defined()) continue;
    pieces.push_back((grads ? t.grad() : t).detach().reshape({-1}).to(at::kDouble));
  }
  return at::cat(pieces);
}

void MocoStep(const std::shared_ptr<Communicator>& comm) {
  methods::MocoV3Options options;
  options.arch = "resnet18w0.125";
  options.cifar_stem = true;
  options.dim = 16;
  options.mlp_dim = 32;
  options.temperature = 0.2;
  at::manual_seed(0);
  auto model = *methods::MocoV3Impl::Create(options, comm);
  const at::ScalarType dtype = FLAGS_double_precision ? at::kDouble : at::kFloat;
  model->to(dtype);
  auto setting = nn::MakeBatchNormSetting(FLAGS_bn, 0, FLAGS_split_bn_splits, comm);
  if (!setting.ok()) throw std::runtime_error(std::string(setting.status().message()));
  nn::ConfigureBatchNorm(*model, *setting);
  std::vector<at::Tensor> trainable;  // the momentum encoder has no gradients
  for (const at::Tensor& p : nn::Parameters(*model)) {
    if (p.requires_grad()) trainable.push_back(p);
  }
  optim::OptimizerOptions hyper;
  hyper.weight_decay = 1e-4;
  auto optimizer = optim::MakeLars(trainable, hyper);
  optimizer->set_lr(0.5);
  // Small buckets, so that several all-reduces overlap the backward pass.
  distributed::GradientAverager averager(trainable, comm, /*bucket_bytes=*/16 << 10, FLAGS_overlap);
  at::manual_seed(1);
  const at::Tensor view1 = at::randn({FLAGS_global_batch, 3, 16, 16}).to(dtype);
  const at::Tensor view2 = at::randn({FLAGS_global_batch, 3, 16, 16}).to(dtype);
  // Samples rank, rank + world, ...: what a DistributedSampler gives each process, and
  // what split BN's sub-batch `rank` holds in a single process.
  const at::Tensor mine =
      at::arange(comm->rank(), FLAGS_global_batch, comm->world_size(), at::kLong);
  const at::Tensor my_view1 = view1.index_select(0, mine);
  const at::Tensor my_view2 = view2.index_select(0, mine);
  std::vector<double> losses;
  at::Tensor first_grads, last_grads;
  model->train();
  for (int step = 0; step < FLAGS_steps; ++step) {
    const at::Tensor loss = model->forward(my_view1, my_view2, 0.99);
    optimizer->ZeroGrad();
    loss.backward();
    averager.Synchronize();
    at::Tensor mean_loss = loss.detach().reshape({1}).clone();
    comm->AllReduceSum(mean_loss);
    losses.push_back(mean_loss.item<double>() / comm->world_size());
    if (step == 0) first_grads = Flat(trainable, /*grads=*/true);
    last_grads = Flat(trainable, /*grads=*/true);
    optimizer->Step();
  }
  if (comm->rank() != 0) return;
  auto results = NewDict();
  results.insert("losses", at::tensor(losses, at::kDouble));
  results.insert("grads", first_grads);
  results.insert("last_grads", last_grads);
  results.insert("params", Flat(trainable, false));
  results.insert("base_buffers", Flat(model->base_encoder->buffers(), false));
  results.insert("momentum_buffers", Flat(model->momentum_encoder->buffers(), false));
  results.insert("num_buckets", static_cast<int64_t>(averager.num_buckets()));
  results.insert("overlapped_buckets", static_cast<int64_t>(averager.overlapped_buckets()));
  c10::List<int64_t> sizes;
  for (const at::Tensor& p : trainable) sizes.push_back(p.numel());
  results.insert("sizes", sizes);
  Save(results, FLAGS_output);
}

// SwAV steps driven as the engine drives them, in float64: 2 crops of 16 px and 2 of
// 8 px per sample, a queue of two global batches (in use from the third step), the
// prototypes frozen for the first step. The queue follows the SwAV repository's rule
// (zero-filled, used once full): VISSL's random initial rows are drawn per process, so
// 2 processes could not equal 1 process with them.
void SwavStep(const std::shared_ptr<Communicator>& comm) {
  methods::SwavOptions options;
  options.arch = "resnet18w0.125";
  options.cifar_stem = true;
  options.head = nn::SwavHeadOptions().dims({64, 32, 16}).num_clusters({12});
  options.crops.counts = {2, 2};
  options.crops.sizes = {16, 8};
  options.crops.scale_mins = {0.14, 0.05};
  options.crops.scale_maxs = {1.0, 0.14};
  options.queue_length = 2 * FLAGS_global_batch;
  options.queue_rule = methods::SwavOptions::QueueRule::kSwavRepo;
  options.prototypes_frozen_iters = 1;
  options.use_double_precision = true;
  at::manual_seed(0);
  auto model = *methods::SwavImpl::Create(options, comm);
  model->to(at::kDouble);
  auto setting = nn::MakeBatchNormSetting(FLAGS_bn, 0, FLAGS_split_bn_splits, comm);
  if (!setting.ok()) throw std::runtime_error(std::string(setting.status().message()));
  nn::ConfigureBatchNorm(*model, *setting);
  std::vector<optim::ParamGroup> groups;
  std::vector<at::Tensor> trainable, frozen;
  for (methods::ParameterGroup& group : model->ParameterGroups()) {
    trainable.insert(trainable.end(), group.parameters.begin(), group.parameters.end());
    if (group.frozen_iterations > 0) {
      frozen.insert(frozen.end(), group.parameters.begin(), group.parameters.end());
    }
    groups.push_back({group.parameters, group.no_weight_decay ? 0.0 : 1e-4, false});
  }
  auto optimizer = optim::MakeLarc(groups, {.lr = 0.5});
  distributed::GradientAverager averager(trainable, comm, /*bucket_bytes=*/16 << 10, FLAGS_overlap);
  at::manual_seed(1);
  const int64_t batch = FLAGS_global_batch;
  const at::Tensor big = at::randn({2 * batch, 3, 16, 16}, at::kDouble);
  const at::Tensor small = at::randn({2 * batch, 3, 8, 8}, at::kDouble);
  // Crop-major rows of this process's samples (rank, rank + world, ...).
  const at::Tensor samples = at::arange(comm->rank(), batch, comm->world_size(), at::kLong);
  const at::Tensor rows = at::cat({samples, samples + batch});
  const std::vector<at::Tensor> crops = {big.index_select(0, rows), small.index_select(0, rows)};
  std::vector<double> losses;
  std::vector<double> queue_used;
  model->train();
  for (int step = 0; step < FLAGS_steps; ++step) {
    methods::StepContext context;
    context.global_step = step;
    context.iteration = step;
    context.iterations_per_epoch = FLAGS_steps;
    context.total_steps = FLAGS_steps;
    model->BeforeStep(context);
    queue_used.push_back(model->using_queue() ? 1 : 0);
    const at::Tensor loss = model->Loss(crops, context);
    optimizer->ZeroGrad();
    loss.backward();
    averager.Synchronize();
    if (step < options.prototypes_frozen_iters) {
      for (at::Tensor& p : frozen) p.mutable_grad().reset();
    }
    optimizer->Step();
    at::Tensor mean_loss = loss.detach().reshape({1}).clone();
    comm->AllReduceSum(mean_loss);
    losses.push_back(mean_loss.item<double>() / comm->world_size());
  }
  const c10::impl::GenericDict extra = model->ExtraState();  // collective: every rank
  if (comm->rank() != 0) return;
  auto results = NewDict();
  results.insert("losses", at::tensor(losses, at::kDouble));
  results.insert("queue_used", at::tensor(queue_used, at::kDouble));
  results.insert("params", Flat(trainable, false));
  results.insert("queues", extra.at("ssl_queue_by_rank").toTensor());
  Save(results, FLAGS_output);
}

// Momentum^2 Teacher steps in float64 with the student's BN and the teacher's Momentum
// BN synchronized, so that 2 processes with half the batch each equal 1 process.
void M2TeacherStep(const std::shared_ptr<Communicator>& comm) {
  methods::M2TeacherOptions options;
  options.arch = "resnet18w0.125";
  options.cifar_stem = true;
  options.hidden_dim = 32;
  options.low_dim = 16;
  options.lars_groups = true;
  options.sync_momentum_bn = true;
  at::manual_seed(0);
  auto model = *methods::M2TeacherImpl::Create(options, comm);
  model->to(at::kDouble);
  nn::ConfigureBatchNorm(*model, *nn::MakeBatchNormSetting("sync", 0, 1, comm));
  std::vector<optim::ParamGroup> groups;
  std::vector<at::Tensor> trainable;
  for (methods::ParameterGroup& group : model->ParameterGroups()) {
    trainable.insert(trainable.end(), group.parameters.begin(), group.parameters.end());
    groups.push_back({group.parameters, 1e-4, group.no_trust_ratio});
  }
  auto optimizer = optim::MakeM2TeacherLars(groups, {.lr = 0.5});
  distributed::GradientAverager averager(trainable, comm, /*bucket_bytes=*/16 << 10, FLAGS_overlap);
  at::manual_seed(1);
  const at::Tensor view1 = at::randn({FLAGS_global_batch, 3, 16, 16}, at::kDouble);
  const at::Tensor view2 = at::randn({FLAGS_global_batch, 3, 16, 16}, at::kDouble);
  const at::Tensor mine =
      at::arange(comm->rank(), FLAGS_global_batch, comm->world_size(), at::kLong);
  const std::vector<at::Tensor> crops = {view1.index_select(0, mine), view2.index_select(0, mine)};
  std::vector<double> losses;
  model->train();
  for (int step = 0; step < FLAGS_steps; ++step) {
    methods::StepContext context;
    context.global_step = step;
    context.total_steps = 10;
    model->BeforeStep(context);
    const at::Tensor loss = model->Loss(crops, context);
    optimizer->ZeroGrad();
    loss.backward();
    averager.Synchronize();
    optimizer->Step();
    at::Tensor mean_loss = loss.detach().reshape({1}).clone();
    comm->AllReduceSum(mean_loss);
    losses.push_back(mean_loss.item<double>() / comm->world_size());
  }
  if (comm->rank() != 0) return;
  auto results = NewDict();
  results.insert("losses", at::tensor(losses, at::kDouble));
  results.insert("params", Flat(trainable, false));
  results.insert("teacher_params", Flat(model->teacher_encoder->parameters(), false));
  results.insert("teacher_buffers", Flat(model->teacher_encoder->buffers(), false));
  Save(results, FLAGS_output);
}

// One SyncBN (or synchronized Momentum BN) layer with non-trivial affine parameters:
// this process's samples (interleaved, as in moco_step), in --bn_dtype, forward and
// backward against a fixed upstream gradient. Results in float32.
void SyncBatchNorm(const std::shared_ptr<Communicator>& comm) {
  at::manual_seed(2);
  const int64_t n = FLAGS_global_batch;
  const int64_t hw = FLAGS_bn_spatial;
  const at::Tensor x = at::randn({n, 3, hw, hw}).mul(3).add(1);
  const at::Tensor upstream = at::randn({n, 3, hw, hw}).mul(FLAGS_bn_grad_scale);
  nn::BatchNorm bn = nn::BatchNorm2d(3);
  {
    c10::AutoGradMode no_grad(false);
    bn->weight.copy_(at::randn({3}));
    bn->bias.copy_(at::randn({3}));
  }
  if (FLAGS_bn_mode == "momentum") {
    nn::BatchNormSetting setting;
    setting.mode = nn::BatchNormMode::kMomentum;
    setting.group = comm;
    setting.momentum = std::make_shared<nn::MomentumBatchNormSchedule>();
    setting.momentum->m_bn = 0.7;
    nn::ConfigureBatchNorm(*bn, setting);
  } else {
    nn::ConfigureBatchNorm(*bn, *nn::MakeBatchNormSetting("sync", 0, 1, comm));
  }
  const at::ScalarType dtype = FLAGS_bn_dtype == "half"       ? at::kHalf
                               : FLAGS_bn_dtype == "bfloat16" ? at::kBFloat16
                                                              : at::kFloat;
  const at::Tensor mine = at::arange(comm->rank(), n, comm->world_size(), at::kLong);
  const at::Tensor input = x.index_select(0, mine).to(dtype).requires_grad_();
  const at::Tensor output = bn->forward(input);
  // Momentum BN updates its running statistics on every second call (two views).
  if (FLAGS_bn_mode == "momentum") bn->forward(input.detach());
  output.to(at::kFloat).mul(upstream.index_select(0, mine)).sum().backward();
  at::Tensor weight_grad = bn->weight.grad().clone();
  comm->AllReduceSum(weight_grad);
  const at::Tensor input_grads = comm->AllGather(input.grad().to(at::kFloat));
  const at::Tensor outputs = comm->AllGather(output.detach().to(at::kFloat));
  if (comm->rank() != 0) return;
  auto results = NewDict();
  results.insert("outputs", outputs);
  results.insert("input_grads", input_grads);
  results.insert("weight_grad", weight_grad);
  results.insert("running_mean", bn->running_mean);
  results.insert("running_var", bn->running_var);
  Save(results, FLAGS_output);
}

// Gradient averaging over channels-last parameters, one without a gradient this step
// (an unused layer): rank r's gradient of `used` is (r + 1) * arange in the logical
// layout.
void ChannelsLastGradients(const std::shared_ptr<Communicator>& comm) {
  const auto channels_last = at::MemoryFormat::ChannelsLast;
  at::Tensor used = at::randn({4, 3, 3, 3}).contiguous(channels_last).requires_grad_();
  at::Tensor unused = at::randn({4, 3, 3, 3}).contiguous(channels_last).requires_grad_();
  distributed::GradientAverager averager({used, unused}, comm, /*bucket_bytes=*/1 << 20);
  const at::Tensor logical = at::arange(108, at::kFloat).view({4, 3, 3, 3});
  used.mul(logical).sum().mul(comm->rank() + 1).backward();
  averager.Synchronize();
  if (comm->rank() != 0) return;
  auto results = NewDict();
  results.insert("used_grad", used.grad().contiguous());
  results.insert("unused_grad", unused.grad().contiguous());
  results.insert("unused_grad_channels_last",
                 static_cast<int64_t>(unused.grad().is_contiguous(channels_last)));
  Save(results, FLAGS_output);
}

void Latency(Communicator& comm) {
  auto time_us = [](auto&& collective) {
    for (int i = 0; i < 20; ++i) collective();
    const auto start = std::chrono::steady_clock::now();
    const int repeats = 300;
    for (int i = 0; i < repeats; ++i) collective();
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
               .count() /
           repeats;
  };
  auto results = NewDict();
  for (int64_t size : {int64_t{64}, int64_t{1} << 20}) {
    at::Tensor sum = at::ones({size});
    const at::Tensor piece = at::ones({1, size});
    const std::string suffix = "_" + std::to_string(size) + "_floats_us";
    results.insert("all_reduce" + suffix, time_us([&] { comm.AllReduceSum(sum); }));
    results.insert("all_reduce_async" + suffix,
                   time_us([&] { comm.AllReduceSumAsync(sum)->Wait(); }));
    results.insert("all_gather" + suffix, time_us([&] { comm.AllGather(piece); }));
  }
  if (comm.rank() == 0) Save(results, FLAGS_output);
}

// Sends the first byte of a TCPStore request (LibTorch 1.13's SET) to rank 0's store and
// no more: what a rank stopped in the middle of a request leaves behind.
void StartARequestToTheStore() {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(std::getenv("MASTER_ADDR"), std::getenv("MASTER_PORT"), &hints, &found) != 0) {
    throw std::runtime_error("cannot resolve the rendezvous store");
  }
  const int fd = socket(found->ai_family, found->ai_socktype, found->ai_protocol);
  const bool sent =
      fd >= 0 && connect(fd, found->ai_addr, found->ai_addrlen) == 0 && send(fd, "\0", 1, 0) == 1;
  freeaddrinfo(found);
  if (!sent) throw std::runtime_error("cannot write to the rendezvous store");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let the store read it
}

void LoseRank(Communicator& comm) {
  for (int i = 0; i < 1000; ++i) {
    if (comm.rank() == FLAGS_victim && i == 3) {
      if (FLAGS_victim_action == "stop_mid_request") StartARequestToTheStore();
      std::raise(FLAGS_victim_action == "kill" ? SIGKILL : SIGSTOP);
    }
    at::Tensor ones = at::ones({4});
    comm.AllReduceSum(ones);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

int Run() {
  auto config = distributed::ResolveDistributedConfig({}, std::getenv);
  if (!config.ok()) throw std::runtime_error(std::string(config.status().message()));
  distributed::ProcessGroupOptions options;
  options.config = *config;
  options.timeout = std::chrono::milliseconds(FLAGS_timeout_ms);
  options.heartbeat_interval = std::chrono::milliseconds(FLAGS_heartbeat_ms);
  auto comm = distributed::CreateCommunicator(options);
  if (!comm.ok()) {
    std::cerr << "worker: " << comm.status().message() << "\n";
    return 2;
  }
  if (FLAGS_scenario == "collectives") {
    Collectives(*comm);
  } else if (FLAGS_scenario == "moco_step") {
    MocoStep(*comm);
  } else if (FLAGS_scenario == "m2t_step") {
    M2TeacherStep(*comm);
  } else if (FLAGS_scenario == "swav_step") {
    SwavStep(*comm);
  } else if (FLAGS_scenario == "sync_bn") {
    SyncBatchNorm(*comm);
  } else if (FLAGS_scenario == "channels_last_grads") {
    ChannelsLastGradients(*comm);
  } else if (FLAGS_scenario == "latency") {
    Latency(**comm);
  } else if (FLAGS_scenario == "lose_rank") {
    LoseRank(**comm);
  } else {
    throw std::runtime_error("unknown scenario " + FLAGS_scenario);
  }
  return 0;
}

}  // namespace
}  // namespace ssl

int main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  at::set_num_threads(1);
  try {
    const int code = ssl::Run();
    std::cerr.flush();
    std::_Exit(code);
  } catch (const ssl::distributed::CollectiveError& e) {
    std::cerr << "worker: " << e.what() << "\n";
    std::cerr.flush();
    std::_Exit(3);
  } catch (const std::exception& e) {
    std::cerr << "worker: unexpected error: " << e.what() << "\n";
    std::cerr.flush();
    std::_Exit(2);
  }
}
