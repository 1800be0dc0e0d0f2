// Transfer-learning datasets: what each expects on disk and the published MoCo v3
// transfer results (ViT-B, 100 epochs, batch 128, lr 3e-4) to compare against.
#ifndef TRANSFER_DATASETS_H_
#define TRANSFER_DATASETS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ssl/data/image_folder.h"

namespace ssl::transfer {

struct TransferDatasetSpec {
  std::string name;  ///< "cifar10", "cifar100", "flowers", "pets"
  int num_classes = 0;
  std::string train_split;  ///< sub-folder names of the ImageFolder root
  std::string test_split;
  double mocov3_vit_b_top1 = 0;  ///< published transfer top-1 (%)
};

/// The datasets of MoCo v3's transfer table.
const std::vector<TransferDatasetSpec>& TransferDatasets();

/// The spec called `name`; InvalidArgument listing the known names otherwise.
absl::StatusOr<TransferDatasetSpec> FindTransferDataset(const std::string& name);

struct TransferSplits {
  data::ImageFolder train;
  data::ImageFolder test;
};

/// Opens <root>/<train_split> and <root>/<test_split> and checks that both have the
/// spec's classes, in the same order.
absl::StatusOr<TransferSplits> OpenTransferDataset(const TransferDatasetSpec& spec,
                                                   const std::string& root);

}  // namespace ssl::transfer

#endif  // TRANSFER_DATASETS_H_
