// Compiled against a LibTorch configured without glog (see BUILD), with LibTorch's
// headers read before the project's logging header, the usual order in a .cc file.
#include <ATen/core/Tensor.h>
#include <torch/nn/modules/linear.h>

#include <string>

#include "ssl/core/logging.h"
#include "ssl/core/logging_test_util.h"

#ifdef C10_USE_GLOG
#error "this file must be compiled with the without-glog LibTorch configuration"
#endif

namespace ssl::logging_test {

void LogAfterTorchHeaders(const std::string& message, int value) {
  CHECK_EQ(value, 7) << "value";
  CHECK(!message.empty());
  LOG(INFO) << message;
}

}  // namespace ssl::logging_test
