// The transfer datasets of MoCo v3's seed in the formats they are distributed in, as
// training / evaluation splits the fine-tuning loop reads:
//   cifar10     cifar-10-batches-py/: data_batch_1..5, test_batch, batches.meta
//   cifar100    cifar-100-python/: train, test, meta (fine labels)
//   flowers102  jpg/image_%05d.jpg, imagelabels.mat, setid.mat (train = trnid + valid,
//               evaluation = tstid)
//   pets        images/<name>.jpg, annotations/trainval.txt and test.txt
//   imagefolder <root>/<train_split>, <root>/<val_split>
// CIFAR's pickled arrays are unpacked once into PNG ImageFolders under a cache dir (class
// folders "<index>_<name>", so the label order is the file's).
#ifndef TRANSFER_DATASETS_H_
#define TRANSFER_DATASETS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ssl/data/image_folder.h"

namespace ssl::transfer {

struct DatasetOptions {
  std::string format = "imagefolder";
  std::string root;
  std::string train_split = "train";  ///< imagefolder only
  std::string val_split = "val";      ///< imagefolder only
  std::string cache_dir;              ///< cifar10 / cifar100: where the PNGs go
};

struct DatasetSplits {
  data::ImageFolder train;
  data::ImageFolder val;
};

/// Opens `options.root` in `options.format`; one sentence naming the file for anything
/// missing or malformed.
absl::StatusOr<DatasetSplits> OpenTransferDataset(const DatasetOptions& options);

/// The formats OpenTransferDataset knows.
std::vector<std::string> TransferFormats();

/// One CIFAR batch file (Python's pickle of {data: uint8 array [N, 3072], labels or
/// fine_labels: [N]}, as Python 2's cPickle wrote them or Python 3 re-saves them).
struct CifarBatch {
  int64_t count = 0;
  std::vector<uint8_t> pixels;  ///< count x 3 x 32 x 32, planar RGB as in the file
  std::vector<int> labels;
};
absl::StatusOr<CifarBatch> ParseCifarBatch(const std::string& bytes, const std::string& name);
/// batches.meta / meta: label_names or fine_label_names.
absl::StatusOr<std::vector<std::string>> ParseCifarLabelNames(const std::string& bytes,
                                                              const std::string& name);

/// Numeric variables of a MATLAB v5 .mat file (compressed or not), flattened in
/// MATLAB's column-major order, by name.
absl::StatusOr<std::map<std::string, std::vector<double>>> ParseMatV5(const std::string& bytes,
                                                                      const std::string& name);

}  // namespace ssl::transfer

#endif  // TRANSFER_DATASETS_H_
