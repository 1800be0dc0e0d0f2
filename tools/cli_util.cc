#include "tools/cli_util.h"

#include <gflags/gflags.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>

#include "ssl/core/allocator.h"

namespace ssl::tools {

std::string UserPath(const std::string& path) {
  const char* cwd = std::getenv("BUILD_WORKING_DIRECTORY");
  if (path.empty() || cwd == nullptr || std::filesystem::path(path).is_absolute()) return path;
  return (std::filesystem::path(cwd) / path).string();
}

std::vector<int> ParseIntList(const std::string& text) {
  std::vector<int> values;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, ',');) {
    if (!item.empty()) values.push_back(std::stoi(item));
  }
  return values;
}

namespace {

// Files of this repository (Bazel compiles them by workspace-relative path).
bool IsOwnFlag(const std::string& file) {
  for (const char* root : {"tools/", "ssl/", "eval/", "transfer/", "experiments/", "results/"}) {
    if (file.rfind(root, 0) == 0) return true;
  }
  return false;
}

bool AsksForShortHelp(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) return false;
    for (const char* spelling : {"--help", "-help", "-h", "--helpshort", "-helpshort"}) {
      if (std::strcmp(argv[i], spelling) == 0) return true;
    }
  }
  return false;
}

void PrintOwnFlags() {
  std::vector<gflags::CommandLineFlagInfo> flags;
  gflags::GetAllFlags(&flags);
  std::map<std::string, std::vector<const gflags::CommandLineFlagInfo*>> by_file;
  for (const auto& flag : flags) {
    if (IsOwnFlag(flag.filename)) by_file[flag.filename].push_back(&flag);
  }
  for (const auto& [file, file_flags] : by_file) {
    std::printf("\n  Flags from %s:\n", file.c_str());
    for (const gflags::CommandLineFlagInfo* flag : file_flags) {
      const bool is_string = flag->type == "string";
      std::printf("    --%s (%s) type: %s default: %s%s%s\n", flag->name.c_str(),
                  flag->description.c_str(), flag->type.c_str(), is_string ? "\"" : "",
                  flag->default_value.c_str(), is_string ? "\"" : "");
    }
  }
  std::printf("\n  All flags, LibTorch's and glog's included: --helpfull\n");
}

}  // namespace

void ParseProgramFlags(int* argc, char*** argv, const std::string& usage) {
  gflags::SetUsageMessage(usage);
  if (AsksForShortHelp(*argc, *argv)) {
    const std::string program = std::filesystem::path((*argv)[0]).filename().string();
    const bool named = usage.rfind(program, 0) == 0;
    std::printf("%s%s%s\n", named ? "" : program.c_str(), named ? "" : ": ", usage.c_str());
    PrintOwnFlags();
    std::fflush(stdout);
    std::exit(0);
  }
  gflags::ParseCommandLineFlags(argc, argv, /*remove_flags=*/true);
  // Every program here trains or evaluates in loops that free and reallocate the same
  // large tensors.
  core::KeepFreedMemoryForReuse();
}

void AcceptPythonSpellings(int argc, char** argv,
                           const std::vector<std::pair<std::string, std::string>>& short_aliases) {
  // The rewritten strings must outlive argv's use by gflags.
  static std::vector<std::unique_ptr<std::string>> storage;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") break;
    std::string rewritten;
    if (arg.rfind("--", 0) == 0) {
      const size_t end = std::min(arg.find('='), arg.size());
      std::string name = arg.substr(2, end - 2);
      std::replace(name.begin(), name.end(), '-', '_');
      for (const auto& [alias, flag] : short_aliases) {
        if (name == alias && alias.size() > 1) name = flag;
      }
      rewritten = "--" + name + arg.substr(end);
    } else if (arg.size() >= 2 && arg[0] == '-' && arg[1] != '-') {
      const size_t end = std::min(arg.find('='), arg.size());
      const std::string name = arg.substr(1, end - 1);
      for (const auto& [alias, flag] : short_aliases) {
        if (name == alias) rewritten = "--" + flag + arg.substr(end);
      }
    }
    if (!rewritten.empty() && rewritten != arg) {
      storage.push_back(std::make_unique<std::string>(rewritten));
      argv[i] = storage.back()->data();
    }
  }
}

}  // namespace ssl::tools
