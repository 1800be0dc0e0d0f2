#include "ssl/distributed/environment.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace ssl::distributed {
namespace {

// Reads an integer variable; absent -> `fallback`; present but malformed -> error.
absl::StatusOr<int> EnvInt(const Getenv& getenv, const char* name, int fallback) {
  const char* text = getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  int value = 0;
  // SLURM writes counts like "4(x2)": the leading number is the value.
  std::string digits;
  for (const char* c = text; *c >= '0' && *c <= '9'; ++c) digits += *c;
  if (digits.empty() || !absl::SimpleAtoi(digits, &value)) {
    return absl::InvalidArgumentError(absl::StrCat("environment variable ", name, "=\"", text,
                                                   "\" is not a whole number"));
  }
  return value;
}

absl::Status Check(const DistributedConfig& c) {
  if (c.world_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("world size must be >= 1, got ", c.world_size, " (from ", c.source, ")"));
  }
  if (c.rank < 0 || c.rank >= c.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", c.rank, " is not in a world of size ",
                                                   c.world_size, " (from ", c.source, ")"));
  }
  if (c.master_port < 1 || c.master_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("master port ", c.master_port, " is not a TCP port (from ", c.source, ")"));
  }
  if (c.local_rank < 0 || c.local_rank >= std::max(c.local_world_size, 1)) {
    return absl::InvalidArgumentError(absl::StrCat("local rank ", c.local_rank, " is not below ",
                                                   c.local_world_size, " (from ", c.source, ")"));
  }
  return absl::OkStatus();
}

// Master address and port from MASTER_ADDR / MASTER_PORT, when set.
absl::Status ApplyMasterVariables(const Getenv& getenv, DistributedConfig& c) {
  if (const char* addr = getenv("MASTER_ADDR"); addr != nullptr && *addr != '\0') {
    c.master_addr = addr;
  }
  absl::StatusOr<int> port = EnvInt(getenv, "MASTER_PORT", c.master_port);
  if (!port.ok()) return port.status();
  c.master_port = *port;
  return absl::OkStatus();
}

}  // namespace

std::string FirstSlurmHost(const std::string& node_list) {
  // The first entry ends at the first comma outside brackets.
  std::string first;
  int depth = 0;
  for (char ch : node_list) {
    if (ch == '[') ++depth;
    if (ch == ']') --depth;
    if (ch == ',' && depth == 0) break;
    first += ch;
  }
  const size_t open = first.find('[');
  if (open == std::string::npos) return first;
  // prefix[003-005,009] -> prefix003 (zero padding kept).
  std::string number;
  for (size_t i = open + 1; i < first.size() && first[i] >= '0' && first[i] <= '9'; ++i) {
    number += first[i];
  }
  return first.substr(0, open) + number;
}

absl::StatusOr<DistributedConfig> ResolveDistributedConfig(const DistributedFlags& flags,
                                                           const Getenv& getenv) {
  DistributedConfig c;
  if (!flags.dist_url.empty() || flags.world_size > 0) {
    c.source = "flags";
    if (flags.world_size < 1 || flags.rank < 0) {
      return absl::InvalidArgumentError("--dist_url needs --world_size and --rank");
    }
    if (!flags.dist_url.empty()) {
      const std::string prefix = "tcp://";
      const std::string& url = flags.dist_url;
      const size_t colon = url.rfind(':');
      if (url.rfind(prefix, 0) != 0 || colon == std::string::npos || colon < prefix.size() ||
          !absl::SimpleAtoi(url.substr(colon + 1), &c.master_port)) {
        return absl::InvalidArgumentError(
            absl::StrCat("--dist_url must look like tcp://host:port, got \"", url, "\""));
      }
      c.master_addr = url.substr(prefix.size(), colon - prefix.size());
    }
    c.world_size = flags.world_size;
    c.rank = flags.rank;
    // The process's place on its machine, which picks its GPU: a launcher's LOCAL_RANK
    // when set, else rank modulo the processes per machine (--nproc_per_node, or one per
    // visible GPU), so that N ranks on one N-GPU machine do not all take GPU 0.
    const int per_machine =
        flags.nproc_per_node > 0 ? flags.nproc_per_node : std::max(1, flags.visible_gpus);
    if (getenv("LOCAL_RANK") != nullptr) {
      absl::StatusOr<int> local = EnvInt(getenv, "LOCAL_RANK", 0);
      if (!local.ok()) return local.status();
      absl::StatusOr<int> local_world =
          EnvInt(getenv, "LOCAL_WORLD_SIZE", std::max(per_machine, *local + 1));
      if (!local_world.ok()) return local_world.status();
      c.local_rank = *local;
      c.local_world_size = *local_world;
    } else {
      c.local_world_size = per_machine;
      c.local_rank = c.rank % c.local_world_size;
    }
  } else if (getenv("RANK") != nullptr && getenv("WORLD_SIZE") != nullptr) {
    c.source = "torchrun";
    for (auto [name, field, fallback] :
         {std::tuple{"WORLD_SIZE", &c.world_size, 1}, std::tuple{"RANK", &c.rank, 0},
          std::tuple{"LOCAL_RANK", &c.local_rank, 0},
          std::tuple{"LOCAL_WORLD_SIZE", &c.local_world_size, -1}}) {
      absl::StatusOr<int> value = EnvInt(getenv, name, fallback);
      if (!value.ok()) return value.status();
      *field = *value;
    }
    if (c.local_world_size < 0) c.local_world_size = std::max(c.local_rank + 1, 1);
    if (absl::Status s = ApplyMasterVariables(getenv, c); !s.ok()) return s;
  } else if (getenv("SLURM_PROCID") != nullptr && getenv("SLURM_NTASKS") != nullptr) {
    c.source = "slurm";
    for (auto [name, field, fallback] :
         {std::tuple{"SLURM_NTASKS", &c.world_size, 1}, std::tuple{"SLURM_PROCID", &c.rank, 0},
          std::tuple{"SLURM_LOCALID", &c.local_rank, 0},
          std::tuple{"SLURM_NTASKS_PER_NODE", &c.local_world_size, -1}}) {
      absl::StatusOr<int> value = EnvInt(getenv, name, fallback);
      if (!value.ok()) return value.status();
      *field = *value;
    }
    if (c.local_world_size < 0) c.local_world_size = std::max(c.local_rank + 1, 1);
    if (const char* nodes = getenv("SLURM_JOB_NODELIST"); nodes != nullptr && *nodes != '\0') {
      c.master_addr = FirstSlurmHost(nodes);
    }
    if (absl::Status s = ApplyMasterVariables(getenv, c); !s.ok()) return s;
  } else if (getenv("MACHINE_TOTAL") != nullptr) {
    c.source = "machine";
    absl::StatusOr<int> machines = EnvInt(getenv, "MACHINE_TOTAL", 1);
    if (!machines.ok()) return machines.status();
    absl::StatusOr<int> machine = EnvInt(getenv, "MACHINE", 0);
    if (!machine.ok()) return machine.status();
    absl::StatusOr<int> local = EnvInt(getenv, "LOCAL_RANK", 0);
    if (!local.ok()) return local.status();
    if (*machine < 0 || *machine >= *machines) {
      return absl::InvalidArgumentError(absl::StrCat("MACHINE=", *machine,
                                                     " is not below MACHINE_TOTAL=", *machines));
    }
    c.local_world_size = std::max(1, flags.nproc_per_node);
    c.local_rank = *local;
    c.world_size = *machines * c.local_world_size;
    c.rank = *machine * c.local_world_size + c.local_rank;
    if (absl::Status s = ApplyMasterVariables(getenv, c); !s.ok()) return s;
  }
  if (absl::Status s = Check(c); !s.ok()) return s;
  return c;
}

}  // namespace ssl::distributed
