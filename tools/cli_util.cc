#include "tools/cli_util.h"

#include <cstdlib>
#include <filesystem>
#include <sstream>

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

}  // namespace ssl::tools
