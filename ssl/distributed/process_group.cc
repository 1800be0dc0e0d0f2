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

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <thread>
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

// Where each rank's liveness store listens, published in the rendezvous store.
std::string LivenessKey(int rank) { return absl::StrCat("ssl/liveness/", rank); }

// The key every liveness store holds from its start: waiting on it answers at once.
constexpr char kAliveKey[] = "alive";

double Seconds(milliseconds duration) { return duration.count() / 1000.0; }

std::string FirstLine(const char* text) {
  const std::string all(text);
  return all.substr(0, all.find('\n'));
}

c10::intrusive_ptr<c10d::TCPStore> ConnectStore(const std::string& host, int port, bool is_server,
                                                milliseconds timeout) {
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<std::uint16_t>(port);
  store_options.isServer = is_server;
  store_options.waitWorkers = false;
  // LibTorch 1.13 counts the connection deadline in whole seconds: under one second it
  // gives up before its first try.
  store_options.timeout = std::max(timeout, milliseconds(1000));
  return c10::make_intrusive<c10d::TCPStore>(host, store_options);
}

// The address of this machine that faces the rendezvous host (the source address a
// datagram to it would carry; nothing is sent). IPv4 first: a store listening on
// 0.0.0.0 accepts it, and so does one listening on a dual-stack "::".
std::string AddressTowards(const std::string& host, int port) {
  for (const int family : {AF_INET, AF_UNSPEC}) {
    addrinfo hints{};
    hints.ai_family = family;
    hints.ai_socktype = SOCK_DGRAM;
    addrinfo* found = nullptr;
    if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) continue;
    std::string address;
    for (addrinfo* a = found; a != nullptr && address.empty(); a = a->ai_next) {
      const int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
      if (fd < 0) continue;
      sockaddr_storage local{};
      socklen_t length = sizeof(local);
      char text[INET6_ADDRSTRLEN] = {};
      if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 &&
          getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) == 0) {
        const void* raw =
            local.ss_family == AF_INET
                ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(&local)->sin_addr)
                : static_cast<const void*>(
                      &reinterpret_cast<const sockaddr_in6*>(&local)->sin6_addr);
        if (inet_ntop(local.ss_family, raw, text, sizeof(text)) != nullptr) address = text;
      }
      close(fd);
    }
    freeaddrinfo(found);
    if (!address.empty()) return address;
  }
  return host;  // unresolvable here: the rendezvous itself will say so
}

// Answers whether a rank is alive without going through rank 0: each process serves a
// small TCPStore of its own. The shared rendezvous store cannot tell: LibTorch 1.13's
// server reads each request to its end before serving the next, so a rank stopped in
// the middle of one (SIGSTOP, a frozen machine) freezes it for everyone, and a reader
// without a deadline would wait forever.
class LivenessProbe {
 public:
  LivenessProbe(const DistributedConfig& config, milliseconds timeout)
      : rank_(config.rank), timeout_(timeout) {
    server_ = ConnectStore("127.0.0.1", /*port=*/0, /*is_server=*/true, timeout);
    const std::string yes = "1";
    server_->set(kAliveKey, std::vector<uint8_t>(yes.begin(), yes.end()));
    own_address_ = absl::StrCat(AddressTowards(config.master_addr, config.master_port), " ",
                                server_->getPort());
  }

  const std::string& own_address() const { return own_address_; }

  // Reads every rank's liveness address, once all have joined the rendezvous.
  void LearnAddresses(c10d::Store& store, int world_size) {
    for (int r = 0; r < world_size; ++r) {
      const std::vector<uint8_t> value = store.get(LivenessKey(r));
      const std::string text(value.begin(), value.end());
      const size_t space = text.rfind(' ');
      addresses_.push_back({text.substr(0, space), std::stoi(text.substr(space + 1))});
    }
  }

  // The ranks other than this one that do not answer within the timeout: a dead one
  // refuses the connection, a stopped one accepts (its kernel does) but never replies.
  // All are asked at once, so this takes at most one connection deadline (a second or
  // more) plus one timeout.
  std::vector<int> Unresponsive() const {
    std::vector<std::future<bool>> answers;
    for (int r = 0; r < static_cast<int>(addresses_.size()); ++r) {
      answers.push_back(std::async(std::launch::async, [this, r] {
        if (r == rank_) return true;
        try {
          auto store = ConnectStore(addresses_[r].first, addresses_[r].second, false, timeout_);
          store->wait({kAliveKey}, timeout_);  // also bounds the socket's reads
          return true;
        } catch (const std::exception&) {
          return false;
        }
      }));
    }
    std::vector<int> silent;
    for (int r = 0; r < static_cast<int>(answers.size()); ++r) {
      if (!answers[r].get()) silent.push_back(r);
    }
    return silent;
  }

 private:
  int rank_;
  milliseconds timeout_;
  c10::intrusive_ptr<c10d::TCPStore> server_;
  std::string own_address_;
  std::vector<std::pair<std::string, int>> addresses_;
};

// Turns a failed or timed-out collective into a sentence that names the missing rank.
class FailureDiagnosis {
 public:
  FailureDiagnosis(DistributedConfig config, std::shared_ptr<LivenessProbe> probe,
                   milliseconds probe_timeout)
      : config_(std::move(config)), probe_(std::move(probe)), timeout_(probe_timeout) {}

  std::string Explain(const std::string& collective, const std::string& detail) {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::string what =
        absl::StrCat(collective, " failed on rank ", config_.rank, " of ", config_.world_size);
    const std::string first_line = FirstLine(detail.c_str());
    const std::vector<int> silent = probe_->Unresponsive();
    // The other survivors detect the failure at about the same time and probe this
    // process too: it stays reachable a moment longer so that none takes it for dead.
    std::this_thread::sleep_for(timeout_);
    if (silent.empty()) {
      return absl::StrCat(what,
                          ": every other rank still answers, so one is stuck outside the "
                          "collective or the network failed (",
                          first_line, ")");
    }
    return absl::StrCat(what, ": rank", silent.size() > 1 ? "s " : " ", absl::StrJoin(silent, ", "),
                        silent.size() > 1 ? " have" : " has",
                        " stopped responding (no answer within ", Seconds(timeout_),
                        " s): it died or hangs (", first_line, ")");
  }

 private:
  DistributedConfig config_;
  std::shared_ptr<LivenessProbe> probe_;
  milliseconds timeout_;
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
                           std::shared_ptr<FailureDiagnosis> diagnosis)
      : options_(options),
        store_(std::move(store)),
        group_(std::move(group)),
        rank_(rank),
        size_(size),
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
          options_, store_, *group, rank_ % group_size, group_size, diagnosis_);
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
    store = ConnectStore(config.master_addr, config.master_port, is_server, options.timeout);
  } catch (const std::exception& e) {
    const std::string detail = FirstLine(e.what());
    return absl::UnavailableError(
        is_server
            ? absl::StrCat("rank 0 cannot host the rendezvous store on ", where,
                           " (is the port taken?): ", detail)
            : absl::StrCat("rank ", config.rank, " cannot reach the rendezvous store at ", where,
                           " hosted by rank 0 within ", Seconds(options.timeout), " s: ", detail));
  }
  std::shared_ptr<LivenessProbe> probe;
  try {
    probe = std::make_shared<LivenessProbe>(config, options.probe_timeout);
    const std::string address = probe->own_address();
    store->set(LivenessKey(config.rank), std::vector<uint8_t>(address.begin(), address.end()));
    // Our own roll call, so that a rank that never starts is named.
    const auto deadline = std::chrono::steady_clock::now() + options.timeout;
    while (true) {
      std::vector<int> missing;
      for (int r = 0; r < config.world_size; ++r) {
        if (!store->check({LivenessKey(r)})) missing.push_back(r);
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
    probe->LearnAddresses(*store, config.world_size);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("the rendezvous at ", where, " failed on rank ",
                                               config.rank, ": ", FirstLine(e.what())));
  }
  auto diagnosis = std::make_shared<FailureDiagnosis>(config, probe, options.probe_timeout);
  try {
    auto group =
        ProcessGroupCommunicator::MakeGroup(options, store, config.rank, config.world_size);
    if (!group.ok()) return group.status();
    auto communicator = std::make_shared<ProcessGroupCommunicator>(
        options, store, *group, config.rank, config.world_size, diagnosis);
    communicator->shared_from_this_ = communicator;
    return std::shared_ptr<Communicator>(communicator);
  } catch (const std::exception& e) {
    return absl::UnavailableError(diagnosis->Explain("connecting the process group", e.what()));
  }
}

}  // namespace ssl::distributed
