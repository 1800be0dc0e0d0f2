// Helpers shared by the data tests.
#ifndef SSL_DATA_TEST_UTIL_H_
#define SSL_DATA_TEST_UTIL_H_

#include <cstdint>
#include <optional>
#include <string>

#include "ssl/data/image.h"

namespace ssl::data::testing {

/// An image with every byte drawn from a fixed-seed generator.
Image RandomImage(int height, int width, uint64_t seed);

/// A fresh empty directory under the test's temporary directory.
std::string MakeTempDir(const std::string& name);

/// `<SSL_SHARED_DATASETS>/<name>`, or else `../shared/datasets/<name>` beside the
/// source tree, when it exists; tests skip otherwise (a user's machine has neither).
std::optional<std::string> SharedDataset(const std::string& name);

}  // namespace ssl::data::testing

#endif  // SSL_DATA_TEST_UTIL_H_
