// ImageFolder scanning, the distributed sampler and the synthetic dataset, on real
// files written to the test's temporary directory (and on the shared Imagenette copy
// where it exists).
#include "ssl/data/image_folder.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "ssl/data/image_io.h"
#include "ssl/data/sampler.h"
#include "ssl/data/synthetic.h"
#include "ssl/data/test_util.h"

namespace ssl::data {
namespace {
namespace fs = std::filesystem;

void Touch(const fs::path& path) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << "x";
}

TEST(ImageFolderTest, ClassesAndFilesAreSortedLikeTorchvision) {
  const fs::path root = testing::MakeTempDir("folder");
  Touch(root / "zebra" / "b.JPG");
  Touch(root / "zebra" / "a.jpeg");
  Touch(root / "apple" / "nested" / "deep.PNG");
  Touch(root / "apple" / "c.png");
  Touch(root / "apple" / "notes.txt");  // ignored
  Touch(root / "Mango" / "m.jpg");      // uppercase sorts first
  Touch(root / "readme.md");            // a file at the root is not a class
  const absl::StatusOr<ImageFolder> folder = ImageFolder::Open(root.string());
  ASSERT_TRUE(folder.ok()) << folder.status();
  EXPECT_EQ(folder->classes(), (std::vector<std::string>{"Mango", "apple", "zebra"}));
  ASSERT_EQ(folder->size(), 5);
  const std::vector<Sample>& s = folder->samples();
  EXPECT_EQ(fs::path(s[0].path).filename(), "m.jpg");
  EXPECT_EQ(s[0].label, 0);
  EXPECT_EQ(fs::path(s[1].path).filename(), "c.png");
  EXPECT_EQ(fs::path(s[2].path).filename(), "deep.PNG");
  EXPECT_EQ(s[2].label, 1);
  EXPECT_EQ(fs::path(s[3].path).filename(), "a.jpeg");
  EXPECT_EQ(s[4].label, 2);
}

TEST(ImageFolderTest, BadRootsAreOneClearError) {
  const fs::path root = testing::MakeTempDir("bad");
  absl::StatusOr<ImageFolder> missing = ImageFolder::Open((root / "nope").string());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(),
            "dataset root " + (root / "nope").string() + " is not a directory");
  absl::StatusOr<ImageFolder> empty = ImageFolder::Open(root.string());
  EXPECT_NE(empty.status().message().find("has no class folders"), std::string_view::npos);
  Touch(root / "cats" / "1.jpg");
  fs::create_directories(root / "dogs");
  Touch(root / "dogs" / "x.txt");
  absl::StatusOr<ImageFolder> no_images = ImageFolder::Open(root.string());
  EXPECT_EQ(no_images.status().message(),
            "dataset root " + root.string() + " has class folders without images: dogs");
}

TEST(ImageFolderTest, SharedImagenetteHasItsPublishedCounts) {
  const std::optional<std::string> root = testing::SharedDataset("imagenette/val");
  if (!root) GTEST_SKIP() << "../shared/datasets/imagenette is not on this machine";
  const absl::StatusOr<ImageFolder> folder = ImageFolder::Open(*root);
  ASSERT_TRUE(folder.ok()) << folder.status();
  EXPECT_EQ(folder->num_classes(), 10);
  EXPECT_EQ(folder->size(), 3925);
  EXPECT_EQ(folder->classes().front(), "n01440764");
  // 387 tench images come first, then the 395 English springers.
  EXPECT_EQ(folder->samples()[386].label, 0);
  EXPECT_EQ(folder->samples()[387].label, 1);
  // Decode a slice, grayscale ones included: all become 224 x 224 RGB.
  for (int i = 0; i < 3925; i += 97) {
    const absl::StatusOr<Image> image = ReadImageFile(folder->samples()[i].path);
    ASSERT_TRUE(image.ok()) << image.status();
    EXPECT_EQ(image->height, 224);
    EXPECT_EQ(image->width, 224);
  }
}

TEST(SamplerTest, ShardsAreDisjointEqualAndDropTheTail) {
  const int64_t size = 103;
  std::set<int64_t> seen;
  std::vector<std::vector<int64_t>> shards;
  for (int rank = 0; rank < 4; ++rank) {
    DistributedSampler sampler(size, 4, rank, /*shuffle=*/true, /*seed=*/5);
    shards.push_back(sampler.EpochIndices(3));
    ASSERT_EQ(shards.back().size(), 25u);
    for (int64_t i : shards.back()) {
      ASSERT_TRUE(i >= 0 && i < size);
      ASSERT_TRUE(seen.insert(i).second) << "index " << i << " on two ranks";
    }
  }
  EXPECT_EQ(seen.size(), 100u);  // 3 dropped, none padded
  // Rank r takes positions r, r + 4, ... of one shared permutation.
  DistributedSampler single(size, 1, 0, true, 5);
  const std::vector<int64_t> order = single.EpochIndices(3);
  for (int rank = 0; rank < 4; ++rank) {
    for (int j = 0; j < 25; ++j) ASSERT_EQ(shards[rank][j], order[rank + 4 * j]);
  }
}

TEST(SamplerTest, ReshufflesPerEpochDeterministically) {
  DistributedSampler a(50, 2, 1, true, 9), b(50, 2, 1, true, 9);
  EXPECT_EQ(a.EpochIndices(0), b.EpochIndices(0));
  EXPECT_NE(a.EpochIndices(0), a.EpochIndices(1));
  DistributedSampler ordered(10, 2, 1, /*shuffle=*/false, 0);
  EXPECT_EQ(ordered.EpochIndices(7), (std::vector<int64_t>{1, 3, 5, 7, 9}));
}

TEST(SyntheticTest, DrawingIsDeterministicAndClassesDiffer) {
  Rng a({1, 2, 3}), b({1, 2, 3});
  const Image first = DrawSyntheticImage(3, 32, a);
  EXPECT_EQ(first.pixels, DrawSyntheticImage(3, 32, b).pixels);
  Rng c({1, 2, 3});
  EXPECT_NE(first.pixels, DrawSyntheticImage(4, 32, c).pixels);  // same pose, other shape
  EXPECT_EQ(SyntheticClassNames(3),
            (std::vector<std::string>{"00_disk", "01_square", "02_triangle"}));
}

TEST(SyntheticTest, WritesAnImageFolderAndReusesACompleteOne) {
  const std::string root = testing::MakeTempDir("synthetic");
  SyntheticDatasetOptions options;
  options.num_classes = 3;
  options.train_per_class = 4;
  options.val_per_class = 2;
  options.image_size = 24;
  ASSERT_TRUE(WriteSyntheticImageFolder(options, root).ok());
  const absl::StatusOr<ImageFolder> train = ImageFolder::Open(root + "/train");
  ASSERT_TRUE(train.ok()) << train.status();
  EXPECT_EQ(train->classes(), SyntheticClassNames(3));
  EXPECT_EQ(train->size(), 12);
  const absl::StatusOr<ImageFolder> val = ImageFolder::Open(root + "/val");
  ASSERT_TRUE(val.ok());
  EXPECT_EQ(val->size(), 6);
  const absl::StatusOr<Image> image = ReadImageFile(train->samples()[5].path);
  ASSERT_TRUE(image.ok());
  EXPECT_EQ(image->width, 24);
  // Same options: nothing rewritten. Other options: regenerated.
  const auto stamp = fs::last_write_time(train->samples()[0].path);
  ASSERT_TRUE(WriteSyntheticImageFolder(options, root).ok());
  EXPECT_EQ(fs::last_write_time(train->samples()[0].path), stamp);
  options.train_per_class = 1;
  ASSERT_TRUE(WriteSyntheticImageFolder(options, root).ok());
  EXPECT_EQ(ImageFolder::Open(root + "/train")->size(), 3);
  options.num_classes = 99;
  EXPECT_EQ(WriteSyntheticImageFolder(options, root).message(),
            "synthetic num_classes must be in [2, 12], got 99");
}

}  // namespace
}  // namespace ssl::data
