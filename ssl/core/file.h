// Whole-file reads and atomic writes: what checkpoints, metrics, results and dataset
// readers need, without the image codecs.
#ifndef SSL_CORE_FILE_H_
#define SSL_CORE_FILE_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ssl {

/// Reads a whole file into memory; NotFound when it cannot be opened.
absl::StatusOr<std::string> ReadFileBytes(const std::string& path);

/// Writes bytes to `path` via a temporary file, fsync and rename, so readers never see
/// a partial file (after a crash the name holds either the old or the new contents).
absl::Status WriteFileAtomically(const std::string& path, std::string_view bytes);

}  // namespace ssl

#endif  // SSL_CORE_FILE_H_
