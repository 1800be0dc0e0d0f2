// Writes the procedurally drawn shapes dataset as an ImageFolder (<out>/train, <out>/val).
//
//   bazel run //tools:make_synthetic_dataset -- --output=/tmp/shapes --image_size=64
#include <gflags/gflags.h>

#include <filesystem>
#include <iostream>

#include "ssl/data/synthetic.h"
#include "tools/cli_util.h"

DEFINE_string(output, "",
              "Destination root (required); reused when complete with the same options.");
DEFINE_int32(num_classes, 10, "Shape classes, 2 to 12.");
DEFINE_int32(train_per_class, 300, "Training images per class.");
DEFINE_int32(val_per_class, 100, "Validation images per class.");
DEFINE_int32(image_size, 64, "Square image side in pixels.");
DEFINE_uint64(seed, 0, "Generator seed; the dataset is a function of all these flags.");

int main(int argc, char** argv) {
  ssl::tools::ParseProgramFlags(&argc, &argv, "Writes a synthetic shapes ImageFolder");
  if (FLAGS_output.empty()) {
    std::cerr << "make_synthetic_dataset: --output is required\n";
    return 1;
  }
  std::filesystem::path output = FLAGS_output;
  if (const char* cwd = std::getenv("BUILD_WORKING_DIRECTORY"); cwd && output.is_relative()) {
    output = std::filesystem::path(cwd) / output;
  }
  ssl::data::SyntheticDatasetOptions options;
  options.num_classes = FLAGS_num_classes;
  options.train_per_class = FLAGS_train_per_class;
  options.val_per_class = FLAGS_val_per_class;
  options.image_size = FLAGS_image_size;
  options.seed = FLAGS_seed;
  if (absl::Status s = ssl::data::WriteSyntheticImageFolder(options, output.string()); !s.ok()) {
    std::cerr << "make_synthetic_dataset: " << s.message() << "\n";
    return 1;
  }
  std::cout << "wrote " << output.string() << "/train and /val\n";
  return 0;
}
