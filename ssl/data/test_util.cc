#include "ssl/data/test_util.h"

#include <cstdlib>
#include <filesystem>
#include <random>

namespace ssl::data::testing {
namespace fs = std::filesystem;

Image RandomImage(int height, int width, uint64_t seed) {
  std::mt19937_64 engine(seed);
  Image image(height, width);
  for (uint8_t& v : image.pixels) v = static_cast<uint8_t>(engine() & 0xFF);
  return image;
}

std::string MakeTempDir(const std::string& name) {
  const char* base = std::getenv("TEST_TMPDIR");
  const fs::path dir = fs::path(base ? base : fs::temp_directory_path().string()) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

std::optional<std::string> SharedDataset(const std::string& name) {
  std::error_code error;
  fs::path root;
  if (const char* from_env = std::getenv("SSL_SHARED_DATASETS")) {
    root = from_env;
  } else {
    const char* runfiles = std::getenv("TEST_SRCDIR");
    const char* workspace = std::getenv("TEST_WORKSPACE");
    if (runfiles == nullptr || workspace == nullptr) return std::nullopt;
    const fs::path source_workspace =
        fs::canonical(fs::path(runfiles) / workspace / "WORKSPACE", error);
    if (error) return std::nullopt;
    root = source_workspace.parent_path().parent_path() / "shared" / "datasets";
  }
  const fs::path path = root / name;
  if (!fs::is_directory(path, error)) return std::nullopt;
  return path.string();
}

}  // namespace ssl::data::testing
