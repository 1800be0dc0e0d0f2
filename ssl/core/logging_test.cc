// ssl/core/logging.h keeps glog's LOG and CHECK in force in files compiled against a
// LibTorch built without glog, whichever of the two headers a file reads first.
#include <glog/logging.h>
#include <gtest/gtest.h>

#include <mutex>
#include <string>
#include <vector>

#include "ssl/core/logging_test_util.h"

namespace ssl::logging_test {
namespace {

class CapturingSink : public google::LogSink {
 public:
  void send(google::LogSeverity severity, const char*, const char*, int,
            const google::LogMessageTime&, const char* message, size_t length) override {
    std::lock_guard<std::mutex> lock(mutex_);
    messages_.push_back(std::to_string(severity) + ":" + std::string(message, length));
  }
  std::vector<std::string> messages() {
    std::lock_guard<std::mutex> lock(mutex_);
    return messages_;
  }

 private:
  std::mutex mutex_;
  std::vector<std::string> messages_;
};

class LoggingTest : public testing::Test {
 protected:
  void SetUp() override { google::AddLogSink(&sink_); }
  void TearDown() override { google::RemoveLogSink(&sink_); }
  CapturingSink sink_;
};

TEST_F(LoggingTest, InfoReachesGlogWhenTorchHeadersComeFirst) {
  LogAfterTorchHeaders("after torch", 7);
  EXPECT_EQ(sink_.messages(), std::vector<std::string>{std::to_string(google::GLOG_INFO) +
                                                       ":after torch"});
}

TEST_F(LoggingTest, WarningReachesGlogWhenTheLoggingHeaderComesFirst) {
  LogBeforeTorchHeaders("before torch", 7);
  EXPECT_EQ(sink_.messages(), std::vector<std::string>{std::to_string(google::GLOG_WARNING) +
                                                       ":before torch"});
}

TEST(LoggingDeathTest, ChecksFailThroughGlog) {
  EXPECT_DEATH(LogAfterTorchHeaders("x", 6), "Check failed: value == 7 \\(6 vs. 7\\) value");
  EXPECT_DEATH(LogBeforeTorchHeaders("x", 6), "Check failed: value >= 7 \\(6 vs. 7\\) value");
}

}  // namespace
}  // namespace ssl::logging_test
