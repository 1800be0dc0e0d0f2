// A metrics file of JSON lines beside the checkpoints: one object per record.
#ifndef SSL_TRAIN_METRICS_H_
#define SSL_TRAIN_METRICS_H_

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace ssl::train {

class MetricsWriter {
 public:
  /// Appends to `path` (resumed runs continue the same file); an empty path discards.
  explicit MetricsWriter(const std::string& path);
  /// Writes one line and flushes, so a killed run keeps everything logged so far.
  void Write(const nlohmann::json& record);

 private:
  std::ofstream file_;
};

}  // namespace ssl::train

#endif  // SSL_TRAIN_METRICS_H_
