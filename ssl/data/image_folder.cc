#include "ssl/data/image_folder.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ssl::data {
namespace fs = std::filesystem;

bool HasImageExtension(const std::string& filename) {
  const std::string lower = absl::AsciiStrToLower(filename);
  for (const char* ext :
       {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}) {
    const size_t n = std::char_traits<char>::length(ext);
    if (lower.size() > n && lower.compare(lower.size() - n, n, ext) == 0) return true;
  }
  return false;
}

absl::StatusOr<ImageFolder> ImageFolder::Open(const std::string& root) {
  std::error_code error;
  if (!fs::is_directory(root, error)) {
    return absl::NotFoundError(absl::StrCat("dataset root ", root, " is not a directory"));
  }
  ImageFolder folder;
  folder.root_ = root;
  for (const fs::directory_entry& entry : fs::directory_iterator(root, error)) {
    if (entry.is_directory(error)) folder.classes_.push_back(entry.path().filename().string());
  }
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot list dataset root ", root, ": ", error.message()));
  }
  if (folder.classes_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dataset root ", root, " has no class folders; expected <root>/<class>/<image>"));
  }
  std::sort(folder.classes_.begin(), folder.classes_.end());
  std::vector<std::string> empty_classes;
  for (int label = 0; label < folder.num_classes(); ++label) {
    const fs::path class_dir = fs::path(root) / folder.classes_[label];
    std::vector<std::string> files;
    for (auto it = fs::recursive_directory_iterator(
             class_dir, fs::directory_options::follow_directory_symlink, error);
         it != fs::recursive_directory_iterator(); it.increment(error)) {
      if (error) break;
      if (it->is_regular_file(error) && HasImageExtension(it->path().filename().string())) {
        files.push_back(it->path().string());
      }
    }
    if (error) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot list ", class_dir.string(), ": ", error.message()));
    }
    if (files.empty()) empty_classes.push_back(folder.classes_[label]);
    std::sort(files.begin(), files.end());
    for (std::string& path : files) folder.samples_.push_back(Sample{std::move(path), label});
  }
  if (!empty_classes.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("dataset root ", root,
                     " has class folders without images: ", absl::StrJoin(empty_classes, ", ")));
  }
  return folder;
}

absl::StatusOr<ImageFolder> ImageFolder::FromSamples(std::string root,
                                                     std::vector<std::string> classes,
                                                     std::vector<Sample> samples) {
  if (samples.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(root, " lists no images"));
  }
  for (const Sample& sample : samples) {
    if (sample.label < 0 || sample.label >= static_cast<int>(classes.size())) {
      return absl::InvalidArgumentError(absl::StrCat(root, ": label ", sample.label, " of ",
                                                     sample.path, " is not one of the ",
                                                     classes.size(), " classes"));
    }
  }
  ImageFolder folder;
  folder.root_ = std::move(root);
  folder.classes_ = std::move(classes);
  folder.samples_ = std::move(samples);
  return folder;
}

}  // namespace ssl::data
