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
  const char* root = std::getenv("SSL_SHARED_DATASETS");
  if (root == nullptr) return std::nullopt;
  const fs::path path = fs::path(root) / name;
  std::error_code error;
  if (!fs::is_directory(path, error)) return std::nullopt;
  return path.string();
}

}  // namespace ssl::data::testing
