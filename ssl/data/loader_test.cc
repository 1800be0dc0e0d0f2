#include "ssl/data/loader.h"

#include <ATen/ops/equal.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <set>

#include "ssl/core/file.h"
#include "ssl/data/image_io.h"
#include "ssl/data/synthetic.h"
#include "ssl/data/test_util.h"

namespace ssl::data {
namespace {

class LoaderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new std::string(testing::MakeTempDir("loader_data"));
    SyntheticDatasetOptions options;
    options.num_classes = 3;
    options.train_per_class = 7;  // 21 images: ragged against batch 4
    options.val_per_class = 1;
    options.image_size = 40;
    ASSERT_TRUE(WriteSyntheticImageFolder(options, *root_).ok());
  }
  void SetUp() override {
    absl::StatusOr<ImageFolder> folder = ImageFolder::Open(*root_ + "/train");
    ASSERT_TRUE(folder.ok()) << folder.status();
    folder_ = std::make_unique<ImageFolder>(*std::move(folder));
  }

  std::unique_ptr<Loader> MakeLoader(ViewRecipe recipe, LoaderOptions options) {
    absl::StatusOr<std::unique_ptr<Loader>> loader =
        Loader::Create(*folder_, std::move(recipe), options);
    EXPECT_TRUE(loader.ok()) << loader.status();
    return loader.ok() ? *std::move(loader) : nullptr;
  }

  static std::vector<Batch> Epoch(Loader& loader, int64_t epoch, int64_t first_batch = 0) {
    loader.StartEpoch(epoch, first_batch);
    std::vector<Batch> batches;
    Batch batch;
    while (true) {
      absl::StatusOr<bool> more = loader.Next(&batch);
      EXPECT_TRUE(more.ok()) << more.status();
      if (!more.ok() || !*more) break;
      batches.push_back(batch);
    }
    return batches;
  }

  static void ExpectSameBatches(const std::vector<Batch>& a, const std::vector<Batch>& b) {
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_TRUE(at::equal(a[i].indices, b[i].indices)) << "batch " << i;
      ASSERT_TRUE(at::equal(a[i].labels, b[i].labels));
      ASSERT_EQ(a[i].views.size(), b[i].views.size());
      for (size_t v = 0; v < a[i].views.size(); ++v) {
        ASSERT_TRUE(at::equal(a[i].views[v], b[i].views[v])) << "batch " << i << " view " << v;
      }
    }
  }

  static std::string* root_;
  std::unique_ptr<ImageFolder> folder_;
};

std::string* LoaderTest::root_ = nullptr;

LoaderOptions SmallOptions(int workers) {
  LoaderOptions options;
  options.batch_size = 4;
  options.num_workers = workers;
  options.seed = 17;
  return options;
}

TEST_F(LoaderTest, BatchesHoldTheRecipesCropsOfTheSampledImages) {
  auto loader = MakeLoader(MocoV3Views(32, 0.2), SmallOptions(2));
  ASSERT_NE(loader, nullptr);
  EXPECT_EQ(loader->BatchesPerEpoch(), 5);  // 21 // 4, ragged tail dropped
  const std::vector<Batch> batches = Epoch(*loader, 3);
  ASSERT_EQ(batches.size(), 5u);
  const Batch& batch = batches[1];
  ASSERT_EQ(batch.views.size(), 2u);
  EXPECT_EQ(batch.views[0].sizes(), (at::IntArrayRef{4, 3, 32, 32}));
  EXPECT_TRUE(batch.views[1].is_contiguous());
  EXPECT_EQ(batch.epoch, 3);
  EXPECT_EQ(batch.iteration, 1);
  // Independent recomputation of every crop from the file and the documented seeding.
  const ViewRecipe recipe = MocoV3Views(32, 0.2);
  FloatImage scratch;
  std::vector<float> expected(3 * 32 * 32);
  for (int p = 0; p < 4; ++p) {
    const int64_t index = batch.indices[p].item<int64_t>();
    EXPECT_EQ(batch.labels[p].item<int64_t>(), folder_->samples()[index].label);
    const absl::StatusOr<Image> image = ReadImageFile(folder_->samples()[index].path);
    ASSERT_TRUE(image.ok());
    for (int v = 0; v < 2; ++v) {
      Rng rng = Rng::ForSample(17, 3, index, v);
      AugmentView(*image, recipe.groups[v].augmentation, rng, &scratch, expected.data());
      const at::Tensor crop = batch.views[v][p].contiguous();
      ASSERT_EQ(std::memcmp(crop.data_ptr<float>(), expected.data(), expected.size() * 4), 0)
          << "sample " << p << " view " << v;
    }
  }
  // Every epoch covers distinct samples.
  std::set<int64_t> seen;
  for (const Batch& b : batches) {
    for (int p = 0; p < 4; ++p) EXPECT_TRUE(seen.insert(b.indices[p].item<int64_t>()).second);
  }
}

TEST_F(LoaderTest, BatchesAreBitIdenticalWhateverTheWorkerCount) {
  LoaderOptions one = SmallOptions(1), many = SmallOptions(3);
  one.prefetch_batches = 1;
  many.prefetch_batches = 4;
  auto a = MakeLoader(MocoV3Views(24, 0.08), one);
  auto b = MakeLoader(MocoV3Views(24, 0.08), many);
  for (int64_t epoch : {0, 1}) ExpectSameBatches(Epoch(*a, epoch), Epoch(*b, epoch));
  // ... while different epochs reshuffle and re-augment.
  const std::vector<Batch> e0 = Epoch(*a, 0), e1 = Epoch(*a, 1);
  EXPECT_FALSE(at::equal(e0[0].indices, e1[0].indices));
}

TEST_F(LoaderTest, ResumingMidEpochContinuesWithTheSameBatches) {
  auto loader = MakeLoader(MocoV3Views(16, 0.2), SmallOptions(2));
  const std::vector<Batch> full = Epoch(*loader, 2);
  const std::vector<Batch> tail = Epoch(*loader, 2, /*first_batch=*/3);
  ASSERT_EQ(tail.size(), 2u);
  ExpectSameBatches(tail, {full[3], full[4]});
  EXPECT_EQ(tail[0].iteration, 3);
}

// Training holds one batch at a time: after the first epoch every batch comes from the
// pool's prefetch_batches + 2 slots, and no new batch memory is allocated.
TEST_F(LoaderTest, SteadyStateReusesThePoolsMemory) {
  LoaderOptions options = SmallOptions(2);
  options.prefetch_batches = 2;
  auto loader = MakeLoader(MocoV3Views(16, 0.2), options);
  ASSERT_NE(loader, nullptr);
  // Two 16 px groups of 4 crops, plus labels and indices.
  EXPECT_EQ(loader->BatchBytes(), 2 * 4 * 3 * 16 * 16 * 4 + 2 * 4 * 8);
  EXPECT_EQ(loader->BatchPoolBytes(), 4 * loader->BatchBytes());
  std::set<const void*> addresses;
  int64_t allocations_after_first_epoch = 0;
  Batch batch;
  for (int64_t epoch = 0; epoch < 4; ++epoch) {
    loader->StartEpoch(epoch);
    while (true) {
      absl::StatusOr<bool> more = loader->Next(&batch);
      ASSERT_TRUE(more.ok()) << more.status();
      if (!*more) break;
      // As the training loop does: groups replaced by their device copies, views kept.
      for (at::Tensor& group : batch.groups) group = group.clone();
      addresses.insert(batch.views[0].data_ptr());
    }
    if (epoch == 0) allocations_after_first_epoch = loader->stats().batch_allocations;
  }
  EXPECT_GE(allocations_after_first_epoch, 1);
  EXPECT_LE(allocations_after_first_epoch, options.prefetch_batches + 2);
  EXPECT_EQ(loader->stats().batch_allocations, allocations_after_first_epoch);
  EXPECT_LE(addresses.size(), static_cast<size_t>(options.prefetch_batches + 2));
  // A caller that keeps batches keeps them intact: the loader allocates instead.
  const std::vector<Batch> kept = Epoch(*loader, 0);
  std::set<const void*> kept_addresses;
  for (const Batch& b : kept) kept_addresses.insert(b.views[0].data_ptr());
  EXPECT_EQ(kept_addresses.size(), kept.size());
  EXPECT_GT(loader->stats().batch_allocations, allocations_after_first_epoch);
  LoaderOptions one_worker = options;
  one_worker.num_workers = 1;
  ExpectSameBatches(kept, Epoch(*MakeLoader(MocoV3Views(16, 0.2), one_worker), 0));
}

TEST_F(LoaderTest, MultiCropGroupsAreCropMajorAndViewsSliceThem) {
  MultiCropOptions options;
  options.counts = {2, 3};
  options.sizes = {24, 12};
  options.scale_mins = {0.3, 0.05};
  options.scale_maxs = {1.0, 0.3};
  auto loader = MakeLoader(MultiCropViews(options), SmallOptions(2));
  const std::vector<Batch> batches = Epoch(*loader, 0);
  const Batch& batch = batches[0];
  ASSERT_EQ(batch.groups.size(), 2u);
  EXPECT_EQ(batch.groups[0].sizes(), (at::IntArrayRef{8, 3, 24, 24}));
  EXPECT_EQ(batch.groups[1].sizes(), (at::IntArrayRef{12, 3, 12, 12}));
  ASSERT_EQ(batch.views.size(), 5u);
  EXPECT_TRUE(at::equal(batch.views[1], batch.groups[0].narrow(0, 4, 4)));
  EXPECT_TRUE(at::equal(batch.views[4], batch.groups[1].narrow(0, 8, 4)));
  EXPECT_FALSE(at::equal(batch.views[2], batch.views[3]));  // independent draws
}

TEST_F(LoaderTest, EvalRecipeKeepsTheTailAndIsDeterministic) {
  LoaderOptions options = SmallOptions(2);
  options.shuffle = false;
  options.drop_last = false;
  auto loader = MakeLoader(EvalViews(32, 36), options);
  const std::vector<Batch> batches = Epoch(*loader, 0);
  ASSERT_EQ(batches.size(), 6u);
  EXPECT_EQ(batches.back().views[0].size(0), 1);  // 21 = 5 * 4 + 1
  EXPECT_EQ(batches.back().indices[0].item<int64_t>(), 20);
  ExpectSameBatches(batches, Epoch(*loader, 5));  // no randomness in eval
}

TEST_F(LoaderTest, ProcessesSeeDisjointShards) {
  LoaderOptions rank0 = SmallOptions(1), rank1 = SmallOptions(2);
  rank0.world_size = rank1.world_size = 2;
  rank1.rank = 1;
  auto a = MakeLoader(EvalViews(16, 16), rank0), b = MakeLoader(EvalViews(16, 16), rank1);
  EXPECT_EQ(a->BatchesPerEpoch(), 2);  // 21 // 2 = 10 per rank, 2 full batches
  std::set<int64_t> seen;
  for (Loader* loader : {a.get(), b.get()}) {
    for (const Batch& batch : Epoch(*loader, 4)) {
      for (int p = 0; p < 4; ++p) EXPECT_TRUE(seen.insert(batch.indices[p].item<int64_t>()).second);
    }
  }
  EXPECT_EQ(seen.size(), 16u);
}

// DeiT's RASampler: each index three times in a row over the ranks' interleaving, only
// floor(n / 256) * 256 / W positions per rank.
TEST(RepeatedAugmentationSamplerTest, RepeatsEachIndexOverTheRanks) {
  const int64_t n = 600;
  std::vector<std::vector<int64_t>> shards;
  std::vector<std::vector<int>> copies(3);
  for (int rank = 0; rank < 3; ++rank) {
    DistributedSampler sampler(n, 3, rank, /*shuffle=*/true, /*seed=*/4, /*repeats=*/3);
    EXPECT_EQ(sampler.num_samples(), 512 / 3);
    shards.push_back(sampler.EpochIndices(2, &copies[rank]));
    ASSERT_EQ(shards.back().size(), 170u);
  }
  for (size_t j = 0; j < 170; ++j) {
    // Global positions 3j, 3j+1, 3j+2 are the three copies of one index.
    EXPECT_EQ(shards[0][j], shards[1][j]);
    EXPECT_EQ(shards[1][j], shards[2][j]);
    EXPECT_EQ(copies[0][j], 0);
    EXPECT_EQ(copies[1][j], 1);
    EXPECT_EQ(copies[2][j], 2);
  }
  DistributedSampler single(n, 1, 0, true, 4, 3);
  std::vector<int> single_copies;
  const std::vector<int64_t> order = single.EpochIndices(2, &single_copies);
  ASSERT_EQ(order.size(), 512u);
  for (size_t q = 0; q < order.size(); ++q) {
    EXPECT_EQ(order[q], order[q - q % 3]);
    EXPECT_EQ(single_copies[q], static_cast<int>(q % 3));
  }
  EXPECT_EQ(std::set<int64_t>(order.begin(), order.end()).size(), 171u);  // ceil(512 / 3)
  // Without repeats: torch's DistributedSampler as before.
  EXPECT_EQ(DistributedSampler(n, 3, 0, true, 4).num_samples(), 200);
  EXPECT_EQ(DistributedSampler(100, 1, 0, true, 4, 3).num_samples(), 100);  // below 256
}

TEST_F(LoaderTest, RepeatedCopiesOfAnImageGetDifferentCrops) {
  LoaderOptions options = SmallOptions(1);
  options.batch_size = 3;
  options.repeated_augmentations = 3;
  auto loader = MakeLoader(ClassifierTrainViews(16), options);
  const std::vector<Batch> batches = Epoch(*loader, 0);
  ASSERT_FALSE(batches.empty());
  const Batch& first = batches[0];
  EXPECT_EQ(first.indices[0].item<int64_t>(), first.indices[1].item<int64_t>());
  EXPECT_EQ(first.indices[1].item<int64_t>(), first.indices[2].item<int64_t>());
  EXPECT_FALSE(at::equal(first.views[0][0], first.views[0][1]));
  EXPECT_FALSE(at::equal(first.views[0][1], first.views[0][2]));
}

TEST_F(LoaderTest, CorruptFilesAreSkippedCountedAndReplaced) {
  // A copy of the dataset with two damaged files: one truncated JPEG, one text file.
  const std::string root = testing::MakeTempDir("loader_corrupt");
  std::vector<std::string> copied;
  for (const Sample& sample : folder_->samples()) {
    const std::filesystem::path target =
        std::filesystem::path(root) / std::filesystem::path(sample.path).parent_path().filename() /
        std::filesystem::path(sample.path).filename();
    std::filesystem::create_directories(target.parent_path());
    std::filesystem::copy_file(sample.path, target);
  }
  absl::StatusOr<ImageFolder> folder = ImageFolder::Open(root);
  ASSERT_TRUE(folder.ok());
  const std::string& truncated = folder->samples()[5].path;
  const std::string bytes = *ReadFileBytes(truncated);
  ASSERT_TRUE(WriteFileAtomically(truncated, bytes.substr(0, bytes.size() / 2)).ok());
  ASSERT_TRUE(WriteFileAtomically(folder->samples()[11].path, "not a jpeg").ok());
  LoaderOptions options = SmallOptions(2);
  options.shuffle = false;
  auto loader = Loader::Create(*folder, EvalViews(16, 16), options);
  ASSERT_TRUE(loader.ok());
  std::vector<Batch> batches = Epoch(**loader, 0);
  ASSERT_EQ(batches.size(), 5u);
  // Sample 5 is served by sample 6, sample 11 by sample 12.
  EXPECT_EQ(batches[1].indices[1].item<int64_t>(), 6);
  EXPECT_EQ(batches[2].indices[3].item<int64_t>(), 12);
  const LoaderStats stats = (*loader)->stats();
  EXPECT_EQ(stats.decode_failures, 2);
  EXPECT_EQ(stats.images_loaded, 20);
}

TEST_F(LoaderTest, BadOptionsAreOneClearError) {
  LoaderOptions options = SmallOptions(1);
  options.batch_size = 0;
  EXPECT_EQ(Loader::Create(*folder_, EvalViews(), options).status().message(),
            "batch size must be >= 1, got 0");
  options.batch_size = 64;
  EXPECT_EQ(Loader::Create(*folder_, EvalViews(), options).status().message(),
            "dataset " + folder_->root() +
                " has 21 images, 21 per process, fewer than one batch of 64; lower the batch size");
  options.batch_size = 4;
  options.rank = 2;
  EXPECT_EQ(Loader::Create(*folder_, EvalViews(), options).status().message(),
            "rank 2 is not in a world of size 1");
  ViewRecipe bad = EvalViews();
  bad.groups[0].count = 0;
  EXPECT_FALSE(Loader::Create(*folder_, bad, SmallOptions(1)).ok());
}

}  // namespace
}  // namespace ssl::data
