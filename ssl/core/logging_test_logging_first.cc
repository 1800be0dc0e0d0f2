// Compiled against a LibTorch configured without glog (see BUILD), with the project's
// logging header read before any LibTorch header that pulls in c10's logging.
#include "ssl/core/logging.h"

#include <string>

#include "ssl/core/logging_test_util.h"

// Read after the logging header on purpose (see above).
#include <ATen/core/Tensor.h>  // NOLINT(build/include_order)
#include <torch/nn/modules/linear.h>  // NOLINT(build/include_order)

namespace ssl::logging_test {

void LogBeforeTorchHeaders(const std::string& message, int value) {
  CHECK_GE(value, 7) << "value";
  CHECK(!message.empty());
  LOG(WARNING) << message;
}

}  // namespace ssl::logging_test
