#include "transfer/datasets.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "ssl/data/test_util.h"

namespace ssl::transfer {
namespace {

TEST(TransferDatasetsTest, PublishedTableIsComplete) {
  ASSERT_EQ(TransferDatasets().size(), 4u);
  EXPECT_DOUBLE_EQ(FindTransferDataset("cifar100")->mocov3_vit_b_top1, 90.5);
  EXPECT_EQ(FindTransferDataset("pets")->num_classes, 37);
  EXPECT_EQ(FindTransferDataset("mnist").status().message(),
            "unknown transfer dataset \"mnist\"; known: cifar10, cifar100, flowers, pets");
}

TEST(TransferDatasetsTest, ClassCountMismatchIsReported) {
  const std::filesystem::path root = data::testing::MakeTempDir("transfer");
  for (const char* split : {"train", "test"}) {
    for (const char* cls : {"a", "b"}) {
      std::filesystem::create_directories(root / split / cls);
      std::ofstream(root / split / cls / "x.jpg") << "x";
    }
  }
  const absl::Status status =
      OpenTransferDataset(*FindTransferDataset("cifar10"), root.string()).status();
  EXPECT_EQ(status.message(),
            "cifar10 expects 10 classes but " + (root / "train").string() + " has 2");
}

TEST(TransferDatasetsTest, SharedCifar10OpensWithItsSplits) {
  const std::optional<std::string> root = data::testing::SharedDataset("cifar10");
  if (!root) GTEST_SKIP() << "../shared/datasets/cifar10 is not on this machine";
  absl::StatusOr<TransferSplits> splits =
      OpenTransferDataset(*FindTransferDataset("cifar10"), *root);
  ASSERT_TRUE(splits.ok()) << splits.status();
  EXPECT_EQ(splits->train.size(), 50000);
  EXPECT_EQ(splits->test.size(), 10000);
  EXPECT_EQ(splits->train.classes().front(), "airplane");
}

}  // namespace
}  // namespace ssl::transfer
