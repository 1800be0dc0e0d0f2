// torchvision's ImageFolder layout: <root>/<class>/**/<image>, classes sorted by name
// to indices 0..C-1, files sorted within each class.
#ifndef SSL_DATA_IMAGE_FOLDER_H_
#define SSL_DATA_IMAGE_FOLDER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ssl::data {

struct Sample {
  std::string path;
  int label = 0;
};

class ImageFolder {
 public:
  /// Scans `root`. Accepts .jpg/.jpeg/.png (any case, also .bmp/.webp/.tif/.tiff/.ppm/
  /// .pgm as torchvision does), following sub-folders of each class. A missing root, a
  /// root with no class folders, or a class folder without images is one clear error.
  static absl::StatusOr<ImageFolder> Open(const std::string& root);

  /// A dataset listed by other means (the transfer datasets' split files): `root` names
  /// it in messages, labels index `classes`. InvalidArgument for an empty list or a
  /// label out of range.
  static absl::StatusOr<ImageFolder> FromSamples(std::string root, std::vector<std::string> classes,
                                                 std::vector<Sample> samples);

  const std::string& root() const { return root_; }
  const std::vector<std::string>& classes() const { return classes_; }
  const std::vector<Sample>& samples() const { return samples_; }
  int64_t size() const { return static_cast<int64_t>(samples_.size()); }
  int num_classes() const { return static_cast<int>(classes_.size()); }

 private:
  std::string root_;
  std::vector<std::string> classes_;
  std::vector<Sample> samples_;
};

/// True for the extensions ImageFolder accepts (case-insensitive).
bool HasImageExtension(const std::string& filename);

}  // namespace ssl::data

#endif  // SSL_DATA_IMAGE_FOLDER_H_
