#include "transfer/datasets.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "ssl/core/file.h"
#include "ssl/data/image_io.h"
#include "ssl/data/test_util.h"

namespace ssl::transfer {
namespace {

namespace fs = std::filesystem;

// Tiny datasets in the exact distributed formats, written by
// transfer/make_transfer_fixtures.py with Debian's python3-numpy (and python3-scipy for
// the .mat files); nothing is downloaded.
class TransferDatasetsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(data::testing::MakeTempDir("transfer"));
    const std::string script = std::string(std::getenv("TEST_SRCDIR")) + "/" +
                               std::getenv("TEST_WORKSPACE") + "/transfer/make_transfer_fixtures.py";
    fixtures_ = system(("/usr/bin/python3 " + script + " " + *dir_ + " 2>" + *dir_ + "/py.log")
                           .c_str()) == 0;
  }
  void SetUp() override {
    if (!fixtures_) GTEST_SKIP() << "Debian's python3-numpy / python3-scipy are not installed";
  }
  static std::string* dir_;
  static bool fixtures_;
};
std::string* TransferDatasetsTest::dir_ = nullptr;
bool TransferDatasetsTest::fixtures_ = false;

uint8_t ExpectedPixel(int n, int c, int p, int batch) { return (7 * n + 3 * c + p + batch) % 256; }

TEST_F(TransferDatasetsTest, Cifar10FromPython2PicklesBecomesImagesWithTheirLabels) {
  DatasetOptions options;
  options.format = "cifar10";
  options.root = *dir_ + "/cifar-10-batches-py";
  options.cache_dir = *dir_ + "/cache";
  absl::StatusOr<DatasetSplits> splits = OpenTransferDataset(options);
  ASSERT_TRUE(splits.ok()) << splits.status();
  EXPECT_EQ(splits->train.size(), 20);
  EXPECT_EQ(splits->val.size(), 6);
  ASSERT_EQ(splits->train.num_classes(), 10);
  EXPECT_EQ(splits->train.classes()[0], "000_airplane");
  EXPECT_EQ(splits->train.classes()[9], "009_truck");
  // Batch 1's image 2 has label 3 and pixels from the formula; its PNG is lossless.
  const std::string path = options.cache_dir + "/cifar10/train/003_cat/000002.png";
  absl::StatusOr<data::Image> image = data::ReadImageFile(path);
  ASSERT_TRUE(image.ok()) << image.status();
  ASSERT_EQ(image->height, 32);
  for (int p : {0, 5, 100, 1023}) {
    for (int c = 0; c < 3; ++c) {
      EXPECT_EQ(image->pixels[p * 3 + c], ExpectedPixel(2, c, p, 1)) << p << "," << c;
    }
  }
  int label_of_path = -1;
  for (const auto& sample : splits->train.samples()) {
    if (sample.path == path) label_of_path = sample.label;
  }
  EXPECT_EQ(label_of_path, 3);
  // A second open reuses the unpacked images.
  const auto written = fs::last_write_time(path);
  ASSERT_TRUE(OpenTransferDataset(options).ok());
  EXPECT_EQ(fs::last_write_time(path), written);
}

TEST_F(TransferDatasetsTest, Cifar100FromPython3Pickles) {
  const std::string root = *dir_ + "/cifar-100-python";
  absl::StatusOr<std::string> bytes = ssl::ReadFileBytes(root + "/train");
  ASSERT_TRUE(bytes.ok());
  absl::StatusOr<CifarBatch> batch = ParseCifarBatch(*bytes, "train");
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_EQ(batch->count, 5);
  EXPECT_EQ(batch->labels, (std::vector<int>{1, 2, 3, 4, 5}));
  EXPECT_EQ(batch->pixels[4 * 3072 + 2 * 1024 + 7], ExpectedPixel(4, 2, 7, 1));
  DatasetOptions options;
  options.format = "cifar100";
  options.root = root;
  options.cache_dir = *dir_ + "/cache";
  absl::StatusOr<DatasetSplits> splits = OpenTransferDataset(options);
  ASSERT_TRUE(splits.ok()) << splits.status();
  EXPECT_EQ(splits->train.num_classes(), 100);
  EXPECT_EQ(splits->train.size(), 5);
  EXPECT_EQ(splits->val.size(), 3);
  EXPECT_EQ(splits->val.classes()[42], "042_class42");
}

TEST_F(TransferDatasetsTest, FlowersFromMatlabFiles) {
  const std::string root = *dir_ + "/flowers";
  absl::StatusOr<std::string> labels = ssl::ReadFileBytes(root + "/imagelabels.mat");
  ASSERT_TRUE(labels.ok());
  auto variables = ParseMatV5(*labels, "imagelabels.mat");  // compressed
  ASSERT_TRUE(variables.ok()) << variables.status();
  EXPECT_EQ((*variables)["labels"], (std::vector<double>{1, 2, 3, 1, 2, 3, 3}));
  DatasetOptions options;
  options.format = "flowers102";
  options.root = root;
  absl::StatusOr<DatasetSplits> splits = OpenTransferDataset(options);  // setid uncompressed
  ASSERT_TRUE(splits.ok()) << splits.status();
  ASSERT_EQ(splits->train.size(), 4);  // trnid + valid
  ASSERT_EQ(splits->val.size(), 3);    // tstid
  EXPECT_EQ(splits->train.num_classes(), 3);
  EXPECT_EQ(splits->train.samples()[2].path, root + "/jpg/image_00003.jpg");
  EXPECT_EQ(splits->train.samples()[2].label, 2);
  EXPECT_EQ(splits->val.samples()[0].path, root + "/jpg/image_00005.jpg");
  EXPECT_EQ(splits->val.samples()[0].label, 1);
}

TEST_F(TransferDatasetsTest, PetsFromTheAnnotationLists) {
  const std::string root = *dir_ + "/pets";
  fs::create_directories(root + "/annotations");
  std::ofstream(root + "/annotations/trainval.txt")
      << "Abyssinian_100 1 1 1\nbasset_hound_12 3 2 2\nBengal_7 2 1 2\n";
  std::ofstream(root + "/annotations/test.txt") << "#Image CLASS-ID SPECIES BREED ID\n"
                                                << "Abyssinian_2 1 1 1\nbasset_hound_1 3 2 2\n";
  DatasetOptions options;
  options.format = "pets";
  options.root = root;
  absl::StatusOr<DatasetSplits> splits = OpenTransferDataset(options);
  ASSERT_TRUE(splits.ok()) << splits.status();
  EXPECT_EQ(splits->train.classes(),
            (std::vector<std::string>{"Abyssinian", "Bengal", "basset_hound"}));
  EXPECT_EQ(splits->train.samples()[1].path, root + "/images/basset_hound_12.jpg");
  EXPECT_EQ(splits->train.samples()[1].label, 2);
  EXPECT_EQ(splits->val.size(), 2);
  std::ofstream(root + "/annotations/test.txt") << "Abyssinian_2 one\n";
  EXPECT_EQ(OpenTransferDataset(options).status().message(),
            root + "/annotations/test.txt line 1: expected \"<image> <class id from 1> ...\", got "
                   "\"Abyssinian_2 one\"");
}

TEST_F(TransferDatasetsTest, BrokenFilesGetOneSentenceAndNeverCrash) {
  absl::StatusOr<std::string> bytes =
      ssl::ReadFileBytes(*dir_ + "/cifar-10-batches-py/data_batch_1");
  ASSERT_TRUE(bytes.ok());
  // Every truncation is an error, never a crash or a hang.
  for (size_t length = 0; length < bytes->size(); length += 97) {
    EXPECT_FALSE(ParseCifarBatch(bytes->substr(0, length), "cut").ok()) << length;
  }
  EXPECT_EQ(std::string(ParseCifarBatch(bytes->substr(0, 100), "data_batch_1").status().message()),
            "data_batch_1 is not a readable Python pickle: it is truncated (offset 100)");
  EXPECT_EQ(ParseMatV5("not a mat file", "x.mat").status().message(),
            "x.mat is not a little-endian MATLAB 5.0 .mat file");
  absl::StatusOr<std::string> mat = ssl::ReadFileBytes(*dir_ + "/flowers/setid.mat");
  ASSERT_TRUE(mat.ok());
  for (size_t length = 128; length < mat->size(); length += 13) {
    (void)ParseMatV5(mat->substr(0, length), "cut.mat");  // errors or partial, never a crash
  }
  DatasetOptions options;
  options.format = "svhn";
  EXPECT_EQ(OpenTransferDataset(options).status().message(),
            "unknown dataset format \"svhn\"; known: imagefolder, cifar10, cifar100, flowers102, "
            "pets");
  options.format = "cifar10";
  options.root = *dir_ + "/nowhere";
  options.cache_dir = *dir_ + "/cache";
  EXPECT_EQ(OpenTransferDataset(options).status().message(),
            "cifar10: " + *dir_ + "/nowhere/batches.meta does not exist");
}

}  // namespace
}  // namespace ssl::transfer
