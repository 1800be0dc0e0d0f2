#include "ssl/distributed/process_group.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/empty_like.h>
#include <torch/version.h>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ssl::distributed {
namespace {

using std::chrono::milliseconds;

// PyTorch 2.0 split c10d::ProcessGroup into a per-device front over c10d::Backend
// objects: from then on ProcessGroupGloo and ProcessGroupNCCL are Backends, each with
// every collective of its own, so the communicator holds the backend itself.
#if TORCH_VERSION_MAJOR >= 2
using CollectiveGroup = c10d::Backend;
#else
using CollectiveGroup = c10d::ProcessGroup;
#endif

absl::Status UnavailableBackend(const std::string& backend) {
  return absl::InvalidArgumentError(absl::StrCat(
      "backend \"", backend, "\" is not available in this build (",
      BackendAvailable("nccl") ? "gloo or nccl" : "gloo only; nccl needs a CUDA LibTorch", ")"));
}

std::string HeartbeatKey(int rank) { return absl::StrCat("ssl/heartbeat/", rank); }

double Seconds(milliseconds duration) { return duration.count() / 1000.0; }

std::string FirstLine(const char* text) {
  const std::string all(text);
  return all.substr(0, all.find('\n'));
}

template <typename Options, typename = void>
struct HasUseLibUV : std::false_type {};
template <typename Options>
struct HasUseLibUV<Options, std::void_t<decltype(std::declval<Options&>().useLibUV)>>
    : std::true_type {};

// PyTorch >= 2.4 serves the store with libuv by default, which builds without libuv
// (Debian's) refuse; the classic server exists in every version and is the one whose
// behaviour under a stopped rank the dead-rank diagnosis is tested against.
template <typename Options>
void UseClassicStoreServer(Options& options) {
  if constexpr (HasUseLibUV<Options>::value) options.useLibUV = false;
}

c10::intrusive_ptr<c10d::TCPStore> ConnectStore(const DistributedConfig& config, bool is_server,
                                                milliseconds timeout) {
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<std::uint16_t>(config.master_port);
  store_options.isServer = is_server;
  store_options.waitWorkers = false;
  store_options.timeout = timeout;
  UseClassicStoreServer(store_options);
  return c10::make_intrusive<c10d::TCPStore>(config.master_addr, store_options);
}

// Bumps this rank's counter in the store every interval, over its own connection (a
// TCPStore client is not shared between threads).
class Heartbeat {
 public:
  Heartbeat(c10::intrusive_ptr<c10d::TCPStore> store, int rank, milliseconds interval)
      : store_(std::move(store)), key_(HeartbeatKey(rank)), interval_(interval) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Heartbeat() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

 private:
  void Run() {
    int64_t beat = 1;
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stop_) {
      try {
        const std::string value = std::to_string(beat++);
        store_->set(key_, std::vector<uint8_t>(value.begin(), value.end()));
      } catch (const std::exception&) {
        return;  // the store is gone; whoever waits on a collective will say so
      }
      wake_.wait_for(lock, interval_, [this] { return stop_; });
    }
  }

  c10::intrusive_ptr<c10d::TCPStore> store_;
  std::string key_;
  milliseconds interval_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

// Turns a failed or timed-out collective into a sentence that names the missing rank.
class FailureDiagnosis {
 public:
  FailureDiagnosis(DistributedConfig config, milliseconds heartbeat_interval)
      : config_(std::move(config)), interval_(heartbeat_interval) {}

  std::string Explain(const std::string& collective, const std::string& detail) {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::string what =
        absl::StrCat(collective, " failed on rank ", config_.rank, " of ", config_.world_size);
    const std::string first_line = FirstLine(detail.c_str());
    // The store is read on a thread of its own against a deadline: a rank stopped
    // halfway through a request (SIGSTOP, a frozen machine) freezes the classic store
    // server for everyone, and not every store read of every LibTorch version has a
    // deadline (1.13's `check` and `get`; 2.x's connection handshake and cancelled
    // `wait`). A probe still blocked when the process exits goes with it.
    auto probe = std::make_shared<StoreProbe>();
    std::thread([probe, config = config_, interval = interval_] {
      std::vector<int> stopped;
      bool answered = false;
      try {
        const c10::intrusive_ptr<c10d::TCPStore> store =
            ConnectStore(config, /*is_server=*/false, interval * 5);
        const std::vector<int64_t> before = Beats(*store, config.world_size);
        std::this_thread::sleep_for(interval * 3);
        const std::vector<int64_t> after = Beats(*store, config.world_size);
        for (int r = 0; r < config.world_size; ++r) {
          if (r != config.rank && after[r] == before[r]) stopped.push_back(r);
        }
        answered = true;
      } catch (const std::exception&) {
      }
      std::lock_guard<std::mutex> probe_lock(probe->mutex);
      probe->done = true;
      probe->answered = answered;
      probe->stopped = std::move(stopped);
      probe->finished.notify_all();
    }).detach();
    std::vector<int> stopped;
    {
      std::unique_lock<std::mutex> probe_lock(probe->mutex);
      probe->finished.wait_for(probe_lock, interval_ * 8, [&probe] { return probe->done; });
      if (!probe->answered) {
        return absl::StrCat(what, ": the rendezvous store hosted by rank 0 at ",
                            config_.master_addr, ":", config_.master_port,
                            " does not answer: rank 0 died or hangs, or a rank stopped in the "
                            "middle of a request to the store (",
                            first_line, ")");
      }
      stopped = probe->stopped;
    }
    // Rank 0 hosts the store: it stays a moment longer so that the other survivors,
    // which detect the failure at about the same time, can finish reading it.
    if (config_.rank == 0) std::this_thread::sleep_for(interval_ * 5);
    if (stopped.empty()) {
      return absl::StrCat(what,
                          ": every other rank still has a heartbeat, so one is stuck "
                          "outside the collective or the network failed (",
                          first_line, ")");
    }
    return absl::StrCat(what, ": rank", stopped.size() > 1 ? "s " : " ",
                        absl::StrJoin(stopped, ", "), stopped.size() > 1 ? " have" : " has",
                        " stopped responding (no heartbeat for ", Seconds(interval_ * 3),
                        " s): it died or hangs (", first_line, ")");
  }

 private:
  struct StoreProbe {
    std::mutex mutex;
    std::condition_variable finished;
    bool done = false;
    bool answered = false;
    std::vector<int> stopped;
  };

  static std::vector<int64_t> Beats(c10d::TCPStore& store, int world_size) {
    std::vector<int64_t> beats(world_size, -1);
    for (int r = 0; r < world_size; ++r) {
      if (!store.check({HeartbeatKey(r)})) continue;
      const std::vector<uint8_t> value = store.get(HeartbeatKey(r));
      beats[r] = std::stoll(std::string(value.begin(), value.end()));
    }
    return beats;
  }

  DistributedConfig config_;
  milliseconds interval_;
  std::mutex mutex_;
};

void WaitFor(const c10::intrusive_ptr<c10d::Work>& work, const char* collective,
             FailureDiagnosis& diagnosis) {
  try {
    work->wait();
  } catch (const std::exception& e) {
    throw CollectiveError(diagnosis.Explain(collective, e.what()));
  }
}

class ProcessGroupReduction : public PendingReduction {
 public:
  ProcessGroupReduction(c10::intrusive_ptr<c10d::Work> work,
                        std::shared_ptr<FailureDiagnosis> diagnosis)
      : work_(std::move(work)), diagnosis_(std::move(diagnosis)) {}
  void Wait() override { WaitFor(work_, "all-reduce", *diagnosis_); }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
  std::shared_ptr<FailureDiagnosis> diagnosis_;
};

class ProcessGroupCommunicator : public Communicator {
 public:
  static constexpr int64_t kSmallAllReduceElements = 1 << 16;

  ProcessGroupCommunicator(const ProcessGroupOptions& options,
                           c10::intrusive_ptr<c10d::Store> store,
                           c10::intrusive_ptr<CollectiveGroup> group, int rank, int size,
                           std::shared_ptr<Heartbeat> heartbeat,
                           std::shared_ptr<FailureDiagnosis> diagnosis)
      : options_(options),
        store_(std::move(store)),
        group_(std::move(group)),
        rank_(rank),
        size_(size),
        heartbeat_(std::move(heartbeat)),
        diagnosis_(std::move(diagnosis)) {}

  ~ProcessGroupCommunicator() override {
    // After a failure Gloo's destructor would drain the queued collectives one timeout
    // at a time; a process that is about to exit with the error must not wait for that.
    if (failed_) group_.release();
  }

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  int local_world_size() const override { return options_.config.local_world_size; }

  at::Tensor AllGather(const at::Tensor& tensor) override {
    std::vector<at::Tensor> input{tensor.detach().contiguous()};
    std::vector<std::vector<at::Tensor>> output(1);
    for (int r = 0; r < size_; ++r) output[0].push_back(at::empty_like(input[0]));
    Run("all-gather", [&] { return group_->allgather(output, input); });
    return at::cat(output[0], 0);
  }

  void AllReduceSum(at::Tensor& tensor) override {
    // Small sums (SyncBN's per-channel statistics, metrics) as one all-gather and a
    // local sum in rank order: a single exchange instead of Gloo's reduce-scatter plus
    // all-gather, which roughly halves their latency, and every rank adds in the same
    // order, so the results stay identical everywhere.
    if (tensor.numel() * size_ <= kSmallAllReduceElements) {
      const at::Tensor gathered = AllGather(tensor.reshape({1, -1}));
      tensor.copy_(gathered.sum(0).view(tensor.sizes()));
      return;
    }
    std::vector<at::Tensor> buffer{tensor.is_contiguous() ? tensor : tensor.contiguous()};
    Run("all-reduce", [&] { return group_->allreduce(buffer); });
    if (!buffer[0].is_same(tensor)) tensor.copy_(buffer[0]);
  }

  std::unique_ptr<PendingReduction> AllReduceSumAsync(at::Tensor tensor) override {
    TORCH_CHECK(tensor.is_contiguous(), "AllReduceSumAsync needs a contiguous tensor");
    std::vector<at::Tensor> buffer{tensor};
    c10::intrusive_ptr<c10d::Work> work =
        Launch("all-reduce", [&] { return group_->allreduce(buffer); });
    return std::make_unique<ProcessGroupReduction>(std::move(work), diagnosis_);
  }

  void Broadcast(at::Tensor& tensor, int root) override {
    std::vector<at::Tensor> buffer{tensor.is_contiguous() ? tensor : tensor.contiguous()};
    c10d::BroadcastOptions broadcast_options;
    broadcast_options.rootRank = root;
    Run("broadcast", [&] { return group_->broadcast(buffer, broadcast_options); });
    if (!buffer[0].is_same(tensor)) tensor.copy_(buffer[0]);
  }

  void Barrier() override {
    Run("barrier", [&] { return group_->barrier(); });
  }

  absl::StatusOr<std::shared_ptr<Communicator>> Subgroup(int group_size) override {
    if (group_size < 1 || size_ % group_size != 0) {
      return absl::InvalidArgumentError(absl::StrCat("a group size of ", group_size,
                                                     " does not divide the ", size_, " processes"));
    }
    if (group_size == size_) return std::shared_ptr<Communicator>(shared_from_this_);
    auto found = subgroups_.find(group_size);
    if (found != subgroups_.end()) return found->second;
    const int index = rank_ / group_size;
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>(
        absl::StrCat("ssl/groups_of_", group_size, "/", index), store_);
    try {
      auto group = MakeGroup(options_, prefixed, rank_ % group_size, group_size);
      if (!group.ok()) return group.status();
      auto subgroup = std::make_shared<ProcessGroupCommunicator>(
          options_, store_, *group, rank_ % group_size, group_size, heartbeat_, diagnosis_);
      subgroup->shared_from_this_ = subgroup;
      subgroups_[group_size] = subgroup;
      return std::shared_ptr<Communicator>(subgroup);
    } catch (const std::exception& e) {
      return absl::UnavailableError(diagnosis_->Explain("creating a process subgroup", e.what()));
    }
  }

  static absl::StatusOr<c10::intrusive_ptr<CollectiveGroup>> MakeGroup(
      const ProcessGroupOptions& options, const c10::intrusive_ptr<c10d::Store>& store, int rank,
      int size) {
    if (options.backend == "gloo") {
      auto gloo_options = c10d::ProcessGroupGloo::Options::create(options.timeout);
      const std::string& host = options.config.master_addr;
      const bool loopback = host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
      if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME")) {
        gloo_options->devices.push_back(
            c10d::ProcessGroupGloo::createDeviceForInterface(interface));
      } else if (loopback) {
        gloo_options->devices.push_back(
            c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      return c10::intrusive_ptr<CollectiveGroup>(
          c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, gloo_options));
    }
#ifdef USE_C10D_NCCL
    if (options.backend == "nccl") {
      auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
      nccl_options->timeout = options.timeout;
      return c10::intrusive_ptr<CollectiveGroup>(
          c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, nccl_options));
    }
#endif
    return UnavailableBackend(options.backend);
  }

  std::weak_ptr<ProcessGroupCommunicator> shared_from_this_;

 private:
  template <typename Start>
  c10::intrusive_ptr<c10d::Work> Launch(const char* collective, Start start) {
    try {
      return start();
    } catch (const std::exception& e) {
      failed_ = true;
      throw CollectiveError(diagnosis_->Explain(collective, e.what()));
    }
  }

  template <typename Start>
  void Run(const char* collective, Start start) {
    c10::intrusive_ptr<c10d::Work> work = Launch(collective, start);
    try {
      WaitFor(work, collective, *diagnosis_);
    } catch (const CollectiveError&) {
      failed_ = true;
      throw;
    }
  }

  ProcessGroupOptions options_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<CollectiveGroup> group_;
  int rank_;
  int size_;
  std::shared_ptr<Heartbeat> heartbeat_;
  std::shared_ptr<FailureDiagnosis> diagnosis_;
  std::map<int, std::shared_ptr<ProcessGroupCommunicator>> subgroups_;
  std::atomic<bool> failed_{false};
};

}  // namespace

bool BackendAvailable(const std::string& backend) {
  if (backend == "gloo") return true;
#ifdef USE_C10D_NCCL
  if (backend == "nccl") return true;
#endif
  return false;
}

absl::StatusOr<std::shared_ptr<Communicator>> CreateCommunicator(
    const ProcessGroupOptions& options) {
  const DistributedConfig& config = options.config;
  if (!BackendAvailable(options.backend)) {
    return UnavailableBackend(options.backend);
  }
  if (config.world_size == 1) return MakeLocalCommunicator();
  const std::string where = absl::StrCat(config.master_addr, ":", config.master_port);
  const bool is_server = config.rank == 0;
  c10::intrusive_ptr<c10d::TCPStore> store;
  try {
    store = ConnectStore(config, is_server, options.timeout);
  } catch (const std::exception& e) {
    const std::string detail = FirstLine(e.what());
    return absl::UnavailableError(
        is_server
            ? absl::StrCat("rank 0 cannot host the rendezvous store on ", where,
                           " (is the port taken?): ", detail)
            : absl::StrCat("rank ", config.rank, " cannot reach the rendezvous store at ", where,
                           " hosted by rank 0 within ", Seconds(options.timeout), " s: ", detail));
  }
  std::shared_ptr<Heartbeat> heartbeat;
  try {
    const std::string zero = "0";
    store->set(HeartbeatKey(config.rank), std::vector<uint8_t>(zero.begin(), zero.end()));
    heartbeat = std::make_shared<Heartbeat>(ConnectStore(config, false, options.timeout),
                                            config.rank, options.heartbeat_interval);
    // Our own roll call, so that a rank that never starts is named.
    const auto deadline = std::chrono::steady_clock::now() + options.timeout;
    while (true) {
      std::vector<int> missing;
      for (int r = 0; r < config.world_size; ++r) {
        if (!store->check({HeartbeatKey(r)})) missing.push_back(r);
      }
      if (missing.empty()) break;
      if (std::chrono::steady_clock::now() > deadline) {
        return absl::DeadlineExceededError(
            absl::StrCat("rank", missing.size() > 1 ? "s " : " ", absl::StrJoin(missing, ", "),
                         " of ", config.world_size, " did not join the rendezvous at ", where,
                         " within ", Seconds(options.timeout), " s"));
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("the rendezvous at ", where, " failed on rank ",
                                               config.rank, ": ", FirstLine(e.what())));
  }
  auto diagnosis = std::make_shared<FailureDiagnosis>(config, options.heartbeat_interval);
  try {
    auto group =
        ProcessGroupCommunicator::MakeGroup(options, store, config.rank, config.world_size);
    if (!group.ok()) return group.status();
    auto communicator = std::make_shared<ProcessGroupCommunicator>(
        options, store, *group, config.rank, config.world_size, heartbeat, diagnosis);
    communicator->shared_from_this_ = communicator;
    return std::shared_ptr<Communicator>(communicator);
  } catch (const std::exception& e) {
    return absl::UnavailableError(diagnosis->Explain("connecting the process group", e.what()));
  }
}

}  // namespace ssl::distributed
