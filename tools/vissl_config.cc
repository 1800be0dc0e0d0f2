#include "tools/vissl_config.h"

#include <filesystem>
#include <functional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace ssl::tools {
namespace fs = std::filesystem;
namespace {

std::string Describe(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "nothing";
  if (node.IsScalar()) return "\"" + node.Scalar() + "\"";
  if (node.IsSequence()) return "a list";
  return "a mapping";
}

absl::StatusOr<YAML::Node> LoadConfigFile(const std::string& path) {
  YAML::Node file;
  try {
    file = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read the config file ", path, ": ", e.what()));
  }
  if (!file.IsMap() || !file["config"] || !file["config"].IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " has no top-level \"config:\" mapping, as VISSL's config files do"));
  }
  return YAML::Clone(file["config"]);
}

// Mappings merge key by key; anything else replaces what was there.
void Merge(YAML::Node target, const YAML::Node& source) {
  for (const auto& item : source) {
    const std::string key = item.first.as<std::string>();
    if (target[key] && target[key].IsMap() && item.second.IsMap()) {
      Merge(target[key], item.second);
    } else {
      target[key] = YAML::Clone(item.second);
    }
  }
}

absl::StatusOr<std::string> FindFile(const std::string& relative,
                                     const std::vector<std::string>& roots,
                                     const std::string& what) {
  std::vector<std::string> tried;
  for (const std::string& root : roots) {
    const fs::path candidate = fs::path(root) / relative;
    if (fs::is_regular_file(candidate)) return candidate.string();
    tried.push_back(candidate.string());
  }
  return absl::NotFoundError(absl::StrCat(what, " not found (looked for ",
                                          absl::StrJoin(tried, ", "),
                                          "); give the configs directory with --config_dir"));
}

}  // namespace

absl::Status WrongType(const std::string& path, const std::string& expected,
                       const YAML::Node& node) {
  return absl::InvalidArgumentError(
      absl::StrCat("config.", path, " must be ", expected, ", got ", Describe(node)));
}

absl::StatusOr<VisslCommandLine> ParseVisslArguments(const std::vector<std::string>& arguments) {
  VisslCommandLine result;
  for (const std::string& argument : arguments) {
    const size_t equals = argument.find('=');
    const std::string key = argument.substr(0, equals);
    const std::string value = equals == std::string::npos ? "" : argument.substr(equals + 1);
    if (equals != std::string::npos && key == "config") {
      result.config = value;
    } else if (equals != std::string::npos && absl::StartsWith(key, "+config/")) {
      result.groups.emplace_back(key.substr(1), value);
    } else if (equals != std::string::npos &&
               (absl::StartsWith(key, "config.") || absl::StartsWith(key, "+config."))) {
      result.overrides.emplace_back(key.substr(key[0] == '+' ? 8 : 7), value);
    } else if (equals != std::string::npos && key == "node_id") {
      if (!absl::SimpleAtoi(value, &result.node_id) || result.node_id < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("node_id must be a whole number >= 0, got \"", value, "\""));
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot use the argument \"", argument,
                       "\"; expected config=<name>, +config/<group>=<name>, config.A.B=<value> or "
                       "node_id=<n>"));
    }
  }
  if (result.config.empty()) {
    return absl::InvalidArgumentError(
        "no config given; e.g. config=pretrain/swav/swav_8node_resnet (a name under "
        "<configs>/config/) or config=/path/to/file.yaml");
  }
  return result;
}

absl::StatusOr<YAML::Node> ComposeVisslConfig(const VisslCommandLine& command_line,
                                              const std::vector<std::string>& config_roots) {
  std::string base = command_line.config;
  if (!absl::EndsWith(base, ".yaml") || !fs::is_regular_file(base)) {
    const std::string relative =
        "config/" + (absl::EndsWith(base, ".yaml") ? base : base + ".yaml");
    absl::StatusOr<std::string> found =
        FindFile(relative, config_roots, "config \"" + command_line.config + "\"");
    if (!found.ok()) return found.status();
    base = *found;
  }
  absl::StatusOr<YAML::Node> config = LoadConfigFile(base);
  if (!config.ok()) return config.status();
  for (const auto& [group, name] : command_line.groups) {
    absl::StatusOr<std::string> found = FindFile(group + "/" + name + ".yaml", config_roots,
                                                 "config group file +" + group + "=" + name);
    if (!found.ok()) return found.status();
    absl::StatusOr<YAML::Node> part = LoadConfigFile(*found);
    if (!part.ok()) return part.status();
    Merge(*config, *part);
  }
  for (const auto& [path, text] : command_line.overrides) {
    YAML::Node value;
    try {
      value = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot parse the value of config.", path, "=", text, ": ", e.what()));
    }
    const std::vector<std::string> keys = absl::StrSplit(path, '.');
    std::vector<YAML::Node> chain = {*config};
    for (size_t i = 0; i + 1 < keys.size(); ++i) {
      YAML::Node next = chain.back()[keys[i]];
      if (!next || !next.IsMap()) {
        if (next && !next.IsMap()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "config.", path, " cannot be set: config.",
              absl::StrJoin(keys.begin(), keys.begin() + i + 1, "."), " is not a mapping"));
        }
        chain.back()[keys[i]] = YAML::Node(YAML::NodeType::Map);
        next = chain.back()[keys[i]];
      }
      chain.push_back(next);
    }
    chain.back()[keys.back()] = value;
  }
  return *config;
}

VisslConfigReader::VisslConfigReader(YAML::Node config) : config_(std::move(config)) {}

YAML::Node VisslConfigReader::Find(const std::string& path) const {
  // Read-only walk: operator[] on a const node never inserts, and reset() rebinds
  // (assignment would overwrite the node's contents).
  YAML::Node node;
  node.reset(config_);
  for (const std::string& key : std::vector<std::string>(absl::StrSplit(path, '.'))) {
    if (!node.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    const YAML::Node& constant = node;
    const YAML::Node child = constant[key];
    if (!child.IsDefined()) return YAML::Node(YAML::NodeType::Undefined);
    node.reset(child);
  }
  return node;
}

bool VisslConfigReader::Has(const std::string& path) const {
  const YAML::Node node = Find(path);
  return node.IsDefined() && !node.IsNull();
}

absl::StatusOr<int64_t> VisslConfigReader::Int(const std::string& path, int64_t fallback) {
  read_.insert(path);
  const YAML::Node node = Find(path);
  if (!node.IsDefined() || node.IsNull()) return fallback;
  int64_t value = 0;
  if (!node.IsScalar() || !absl::SimpleAtoi(node.Scalar(), &value)) {
    return WrongType(path, "a whole number", node);
  }
  return value;
}

absl::StatusOr<double> VisslConfigReader::Double(const std::string& path, double fallback) {
  read_.insert(path);
  const YAML::Node node = Find(path);
  if (!node.IsDefined() || node.IsNull()) return fallback;
  double value = 0;
  if (!node.IsScalar() || !absl::SimpleAtod(node.Scalar(), &value)) {
    return WrongType(path, "a number", node);
  }
  return value;
}

absl::StatusOr<bool> VisslConfigReader::Bool(const std::string& path, bool fallback) {
  read_.insert(path);
  const YAML::Node node = Find(path);
  if (!node.IsDefined() || node.IsNull()) return fallback;
  bool value = false;
  if (!node.IsScalar() || !YAML::convert<bool>::decode(node, value)) {
    return WrongType(path, "true or false", node);
  }
  return value;
}

absl::StatusOr<std::string> VisslConfigReader::String(const std::string& path,
                                                      const std::string& fallback) {
  read_.insert(path);
  const YAML::Node node = Find(path);
  if (!node.IsDefined() || node.IsNull()) return fallback;
  if (!node.IsScalar()) return WrongType(path, "a string", node);
  return node.Scalar();
}

absl::StatusOr<std::vector<int64_t>> VisslConfigReader::IntList(
    const std::string& path, const std::vector<int64_t>& fallback) {
  read_.insert(path);
  const YAML::Node node = Find(path);
  if (!node.IsDefined() || node.IsNull()) return fallback;
  if (!node.IsSequence()) return WrongType(path, "a list of whole numbers", node);
  std::vector<int64_t> values;
  for (const YAML::Node& item : node) {
    int64_t value = 0;
    if (!item.IsScalar() || !absl::SimpleAtoi(item.Scalar(), &value)) {
      return WrongType(path, "a list of whole numbers", node);
    }
    values.push_back(value);
  }
  return values;
}

absl::StatusOr<std::vector<double>> VisslConfigReader::DoubleList(
    const std::string& path, const std::vector<double>& fallback) {
  read_.insert(path);
  const YAML::Node node = Find(path);
  if (!node.IsDefined() || node.IsNull()) return fallback;
  if (!node.IsSequence()) return WrongType(path, "a list of numbers", node);
  std::vector<double> values;
  for (const YAML::Node& item : node) {
    double value = 0;
    if (!item.IsScalar() || !absl::SimpleAtod(item.Scalar(), &value)) {
      return WrongType(path, "a list of numbers", node);
    }
    values.push_back(value);
  }
  return values;
}

absl::StatusOr<std::vector<std::string>> VisslConfigReader::StringList(
    const std::string& path, const std::vector<std::string>& fallback) {
  read_.insert(path);
  const YAML::Node node = Find(path);
  if (!node.IsDefined() || node.IsNull()) return fallback;
  if (!node.IsSequence()) return WrongType(path, "a list of strings", node);
  std::vector<std::string> values;
  for (const YAML::Node& item : node) {
    if (!item.IsScalar()) return WrongType(path, "a list of strings", node);
    values.push_back(item.Scalar());
  }
  return values;
}

YAML::Node VisslConfigReader::Raw(const std::string& path) {
  read_.insert(path);
  const YAML::Node node = Find(path);
  return node.IsDefined() ? node : YAML::Node();
}

void VisslConfigReader::Ignore(const std::string& path) { ignored_.insert(path); }

absl::Status VisslConfigReader::Require(const std::string& path, const std::string& expected,
                                        const std::string& why) {
  absl::StatusOr<std::string> value = String(path, expected);
  if (!value.ok()) return value.status();
  if (*value != expected) {
    return absl::InvalidArgumentError(absl::StrCat("config.", path, " is \"", *value,
                                                   "\"; this program supports only \"", expected,
                                                   "\" (", why, ")"));
  }
  return absl::OkStatus();
}

std::vector<std::string> VisslConfigReader::IgnoredPresent() const {
  std::vector<std::string> present;
  for (const std::string& path : ignored_) {
    if (Find(path).IsDefined()) present.push_back("config." + path);
  }
  return present;
}

absl::Status VisslConfigReader::CheckAllRead() const {
  // A key counts as read when it, or a mapping above it, was read or accepted.
  auto covered = [this](const std::string& path) {
    for (size_t dot = path.find('.');; dot = path.find('.', dot + 1)) {
      const std::string prefix = path.substr(0, dot);
      if (read_.count(prefix) || ignored_.count(prefix)) return true;
      if (dot == std::string::npos) return false;
    }
  };
  std::string first_unread;
  std::function<void(const YAML::Node&, const std::string&)> walk = [&](const YAML::Node& node,
                                                                        const std::string& path) {
    if (!first_unread.empty()) return;
    if (node.IsMap() && node.size() > 0 && !covered(path)) {
      for (const auto& item : node) {
        const std::string key = item.first.as<std::string>();
        walk(item.second, path.empty() ? key : path + "." + key);
      }
      return;
    }
    if (!path.empty() && !covered(path)) first_unread = path;
  };
  walk(config_, "");
  if (first_unread.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "config.", first_unread,
      " is not implemented by this program; remove it (--help lists the keys it reads and "
      "the VISSL-only keys it accepts)"));
}

}  // namespace ssl::tools
