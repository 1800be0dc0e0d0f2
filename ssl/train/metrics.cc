#include "ssl/train/metrics.h"

namespace ssl::train {

MetricsWriter::MetricsWriter(const std::string& path) {
  if (!path.empty()) file_.open(path, std::ios::app);
}

void MetricsWriter::Write(const nlohmann::json& record) {
  if (!file_.is_open()) return;
  file_ << record.dump() << "\n";
  file_.flush();
}

}  // namespace ssl::train
