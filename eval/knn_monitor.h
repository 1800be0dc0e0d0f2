// The kNN monitor of pretraining: every N epochs (and after the last) the evaluation
// backbone's center-crop features of a training folder vote for a validation folder's
// classes; the accuracies go into the epoch's metrics record.
#ifndef EVAL_KNN_MONITOR_H_
#define EVAL_KNN_MONITOR_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ssl/train/pretrain.h"

namespace ssl::eval {

struct KnnMonitorOptions {
  int every = 0;             ///< epochs between evaluations (0: no monitor)
  int last_epoch = 0;        ///< always evaluated
  std::string train_folder;  ///< memory bank ImageFolder
  std::string val_folder;    ///< query ImageFolder
  int image_size = 224;      ///< center crop
  int resize = 256;          ///< short side before the crop
  std::vector<int> ks = {20, 200};
  double temperature = 0.07;
  int workers = 2;
};

/// A monitor for train::RunPretraining; a null monitor when `every` is 0. Opening the
/// folders fails here, before training starts, with one sentence.
absl::StatusOr<train::EpochMonitor> MakeKnnMonitor(const KnnMonitorOptions& options);

}  // namespace ssl::eval

#endif  // EVAL_KNN_MONITOR_H_
