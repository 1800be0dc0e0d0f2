// Small helpers shared by the command-line programs.
#ifndef TOOLS_CLI_UTIL_H_
#define TOOLS_CLI_UTIL_H_

#include <string>
#include <vector>

namespace ssl::tools {

/// `bazel run` starts programs in the runfiles tree: relative paths given by the user
/// are resolved against the directory the command was typed in.
std::string UserPath(const std::string& path);

/// "20,200" -> {20, 200}; empty items are skipped.
std::vector<int> ParseIntList(const std::string& text);

/// gflags' parsing for the programs, with a --help (also -h, --helpshort) that prints
/// the usage and this project's own flags grouped by file, not the ~80 flags LibTorch,
/// glog and gflags register (--helpfull still lists everything); exits 0 after help.
/// Also sets the allocator up for training loops (ssl/core/allocator.h).
void ParseProgramFlags(int* argc, char*** argv, const std::string& usage);

/// Accepts the Python originals' spellings before gflags sees them: "--moco-m-cos" as
/// "--moco_m_cos" (dashes inside long flag names become underscores) and short
/// options such as "-a vit_small" / "-a=vit_small" through `short_aliases` ({"a",
/// "arch"}; an alias longer than one letter, e.g. {"wd", "weight_decay"}, is matched as
/// a long flag). Rewrites argv in place; arguments after "--" and values are untouched.
void AcceptPythonSpellings(int argc, char** argv,
                           const std::vector<std::pair<std::string, std::string>>& short_aliases);

}  // namespace ssl::tools

#endif  // TOOLS_CLI_UTIL_H_
