// SwAV's training step on CPU: multi-crop forward (the trunk once per resolution),
// head, Sinkhorn, swapped-prediction loss, backward and a LARC step, on random crops.
// tools/benchmark_swav_step.sh runs it beside VISSL's own loss and head code (a
// checkout passed by path) on the same configuration and prints the ratio.
//
//   bazel run //ssl/methods:swav_step_benchmark -- [--arch=resnet18] [--batch=32]
//       [--large=64] [--small=32] [--threads=2] [--loss_check]
#include <ATen/Parallel.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/sin.h>
#include <benchmark/benchmark.h>
#include <gflags/gflags.h>

#include <cstdio>

#include "ssl/distributed/communicator.h"
#include "ssl/methods/sinkhorn.h"
#include "ssl/methods/swav.h"
#include "ssl/optim/optimizer.h"

DEFINE_string(arch, "resnet18", "Trunk.");
DEFINE_int32(batch, 32, "Images per step.");
DEFINE_int32(large, 64, "Side of the 2 large crops.");
DEFINE_int32(small, 32, "Side of the 4 small crops.");
DEFINE_int32(prototypes, 3000, "Prototypes.");
DEFINE_int32(threads, 2, "Intra-op threads.");
DEFINE_bool(loss_check, false,
            "Print the loss of fixed scores (sin(0.37 i + 1.3 j) * 0.3, 4 crops of 6, 10 "
            "prototypes) in float and double precision, for comparison with VISSL's.");

namespace ssl::methods {
namespace {

std::shared_ptr<SwavImpl> Make(int prototypes, bool double_precision) {
  SwavOptions options;
  options.arch = FLAGS_arch;
  const int64_t width = *backbones::BackboneFeatureDim(FLAGS_arch);
  options.head = nn::SwavHeadOptions().dims({width, 2048, 128}).num_clusters({prototypes});
  options.crops.counts = {2, 4};
  options.crops.sizes = {FLAGS_large, FLAGS_small};
  options.use_double_precision = double_precision;
  return *SwavImpl::Create(options, distributed::MakeLocalCommunicator());
}

void BM_SwavStep(benchmark::State& state) {
  at::manual_seed(0);
  auto swav = Make(FLAGS_prototypes, false);
  std::vector<optim::ParamGroup> groups;
  for (ParameterGroup& group : swav->ParameterGroups()) {
    groups.push_back({group.parameters, group.no_weight_decay ? 0.0 : 1e-6, false});
  }
  auto larc = optim::MakeLarc(groups, {.lr = 0.1});
  const std::vector<at::Tensor> crops = {at::randn({2 * FLAGS_batch, 3, FLAGS_large, FLAGS_large}),
                                         at::randn({4 * FLAGS_batch, 3, FLAGS_small, FLAGS_small})};
  swav->train();
  StepContext step;
  for (auto _ : state) {
    swav->BeforeStep(step);
    const at::Tensor loss = swav->Loss(crops, step);
    larc->ZeroGrad();
    loss.backward();
    larc->Step();
    benchmark::DoNotOptimize(loss.item<double>());
    ++step.global_step;
  }
  state.SetItemsProcessed(state.iterations() * FLAGS_batch);
  state.counters["steps_per_second"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SwavStep)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(10);

// Sinkhorn on a batch of 64 plus a queue of 3840 against 3000 prototypes: the codes of
// one assignment crop in the CPU recipe once the queue is in use.
void BM_SinkhornWithQueue(benchmark::State& state) {
  at::manual_seed(0);
  const at::Tensor scores = at::randn({64 + 3840, 3000}).mul_(0.1);
  auto local = distributed::MakeLocalCommunicator();
  for (auto _ : state) {
    benchmark::DoNotOptimize(DistributedSinkhorn(scores, SinkhornOptions(), *local));
  }
}
BENCHMARK(BM_SinkhornWithQueue)->Unit(benchmark::kMillisecond)->UseRealTime();

void LossCheck() {
  for (bool double_precision : {false, true}) {
    SwavOptions options;
    options.arch = "resnet18w0.0625";
    options.head = nn::SwavHeadOptions().dims({32, 8}).num_clusters({10});
    options.crops.counts = {2, 2};
    options.crops.sizes = {16, 8};
    options.use_double_precision = double_precision;
    auto swav = *SwavImpl::Create(options, distributed::MakeLocalCommunicator());
    const at::Tensor i = at::arange(24, at::kDouble).unsqueeze(1);
    const at::Tensor j = at::arange(10, at::kDouble).unsqueeze(0);
    const at::Tensor scores = (at::sin(0.37 * i + 1.3 * j) * 0.3).to(at::kFloat);
    std::printf("ours %s %.7f\n", double_precision ? "double" : "float",
                swav->SwappedPredictionLoss(scores, {}, false).item<double>());
  }
}

}  // namespace
}  // namespace ssl::methods

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  at::set_num_threads(FLAGS_threads);
  if (FLAGS_loss_check) {
    ssl::methods::LossCheck();
    return 0;
  }
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
