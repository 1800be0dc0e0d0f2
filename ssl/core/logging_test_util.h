#ifndef SSL_CORE_LOGGING_TEST_UTIL_H_
#define SSL_CORE_LOGGING_TEST_UTIL_H_

#include <string>

namespace ssl::logging_test {

// LOG(INFO) and LOG(WARNING) of `message` (after a CHECK on `value`, which must be 7)
// from files compiled against a LibTorch without glog, in the two include orders.
void LogAfterTorchHeaders(const std::string& message, int value);
void LogBeforeTorchHeaders(const std::string& message, int value);

}  // namespace ssl::logging_test

#endif  // SSL_CORE_LOGGING_TEST_UTIL_H_
