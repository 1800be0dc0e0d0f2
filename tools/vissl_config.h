// VISSL's configuration, read the way its command line composes it:
//   config=pretrain/swav/swav_8node_resnet        <root>/config/<name>.yaml (or a path)
//   +config/pretrain/swav/transforms=multicrop_2x224_4x96
//                                                 merges <root>/<group>/<name>.yaml
//   config.LOSS.swav_loss.temperature=0.2         sets one value (YAML syntax)
//   node_id=1                                     this machine's index
// Files hold one "config:" mapping ("# @package _global_" as in VISSL); mappings merge
// key by key, anything else is replaced. Reading is strict: every key present must be
// read or explicitly accepted, so a key this program does not implement is an error
// naming it instead of a silent no-op.
#ifndef TOOLS_VISSL_CONFIG_H_
#define TOOLS_VISSL_CONFIG_H_

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace ssl::tools {

struct VisslCommandLine {
  std::string config;                                          ///< the base config's name or path
  std::vector<std::pair<std::string, std::string>> groups;     ///< (+config/<group>, name)
  std::vector<std::pair<std::string, std::string>> overrides;  ///< (config.A.B, value)
  int node_id = 0;
};

/// Parses the key=value arguments; InvalidArgument names the first one it cannot use.
absl::StatusOr<VisslCommandLine> ParseVisslArguments(const std::vector<std::string>& arguments);

/// Loads the base config, merges the group files in order, applies the overrides, and
/// returns the composed "config" mapping. `config_roots` are searched in order for
/// relative names (a VISSL checkout's configs/ directory, or the project's own).
absl::StatusOr<YAML::Node> ComposeVisslConfig(const VisslCommandLine& command_line,
                                              const std::vector<std::string>& config_roots);

/// Typed, strict access to a composed config. Paths are dotted ("DATA.TRAIN.
/// BATCHSIZE_PER_REPLICA"), relative to "config"; errors name them as config.<path>.
class VisslConfigReader {
 public:
  explicit VisslConfigReader(YAML::Node config);

  bool Has(const std::string& path) const;
  absl::StatusOr<int64_t> Int(const std::string& path, int64_t fallback);
  absl::StatusOr<double> Double(const std::string& path, double fallback);
  absl::StatusOr<bool> Bool(const std::string& path, bool fallback);
  absl::StatusOr<std::string> String(const std::string& path, const std::string& fallback);
  absl::StatusOr<std::vector<int64_t>> IntList(const std::string& path,
                                               const std::vector<int64_t>& fallback);
  absl::StatusOr<std::vector<double>> DoubleList(const std::string& path,
                                                 const std::vector<double>& fallback);
  absl::StatusOr<std::vector<std::string>> StringList(const std::string& path,
                                                      const std::vector<std::string>& fallback);
  /// The raw node (null when absent) with everything under it counted as read; the
  /// caller checks its contents.
  YAML::Node Raw(const std::string& path);
  /// Present or not, the key and everything under it is accepted without effect.
  void Ignore(const std::string& path);
  /// The value must be `expected` when present (a setting this program has fixed).
  absl::Status Require(const std::string& path, const std::string& expected,
                       const std::string& why);

  /// Keys present that were ignored, for a log line.
  std::vector<std::string> IgnoredPresent() const;
  /// InvalidArgument naming the first key present that nothing read or accepted.
  absl::Status CheckAllRead() const;

 private:
  YAML::Node Find(const std::string& path) const;
  YAML::Node config_;
  std::set<std::string> read_;
  std::set<std::string> ignored_;
};

/// One sentence for a value of the wrong type at `path`.
absl::Status WrongType(const std::string& path, const std::string& expected,
                       const YAML::Node& node);

}  // namespace ssl::tools

#endif  // TOOLS_VISSL_CONFIG_H_
