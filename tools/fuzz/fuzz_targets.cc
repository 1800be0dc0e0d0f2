#include "tools/fuzz/fuzz_targets.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <string_view>

#include "ssl/data/image_io.h"
#include "ssl/train/torch_file.h"
#include "tools/vissl_config.h"
#include "transfer/datasets.h"
#ifndef SSL_FUZZ_WITHOUT_RECIPE
#include "tools/swav_recipe.h"
#endif

namespace ssl::fuzz {

int DecodeImageTarget(const uint8_t* data, size_t size) {
  // 4096 x 4096: the header check refuses bigger claims before any pixel is decoded.
  data::SetMaxImagePixels(int64_t{1} << 24);
  (void)data::DecodeImage(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
  return 0;
}

int TorchFileTarget(const uint8_t* data, size_t size) {
  (void)train::ParseTorchSave(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
  return 0;
}

int VisslConfigTarget(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    char pattern[] = "/tmp/ssl_fuzz_yaml_XXXXXX";
    const char* made = mkdtemp(pattern);
    return std::string(made ? made : "/tmp");
  }();
  const std::string path = dir + "/config.yaml";
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<tools::VisslCommandLine> command_line =
      tools::ParseVisslArguments({"config=" + path});
  if (!command_line.ok()) return 0;
  absl::StatusOr<YAML::Node> config = tools::ComposeVisslConfig(*command_line, {dir});
  if (!config.ok()) return 0;
  // Typed reads of every kind of value (the libFuzzer build stops here: the recipe
  // links the whole engine; fuzz_targets_test replays through it).
  tools::VisslConfigReader reader(*config);
  (void)reader.Int("DATA.TRAIN.BATCHSIZE_PER_REPLICA", 1);
  (void)reader.DoubleList("DATA.TRAIN.TRANSFORMS", {});
  (void)reader.StringList("DATA.TRAIN.DATA_PATHS", {});
  (void)reader.Bool("MODEL.SYNC_BN_CONFIG.CONVERT_BN_TO_SYNC_BN", false);
#ifndef SSL_FUZZ_WITHOUT_RECIPE
  (void)tools::SwavRecipeFromConfig(*config, "/nonexistent");
#endif
  return 0;
}

int TransferFilesTarget(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  (void)transfer::ParseCifarBatch(bytes, "fuzz");
  (void)transfer::ParseCifarLabelNames(bytes, "fuzz");
  (void)transfer::ParseMatV5(bytes, "fuzz.mat");
  return 0;
}

}  // namespace ssl::fuzz

#ifdef SSL_FUZZ_TARGET
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return ssl::fuzz::SSL_FUZZ_TARGET(data, size);
}
#endif
