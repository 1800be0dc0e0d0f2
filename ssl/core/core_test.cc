#include <gtest/gtest.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "ssl/core/allocator.h"
#include "ssl/core/file.h"
#include "ssl/core/progress.h"
#include "ssl/core/random.h"
#include "ssl/core/status_macros.h"

namespace ssl {
namespace {

TEST(FileTest, FilesAreWrittenAtomicallyAndReadBack) {
  const std::string dir = ::testing::TempDir() + "/atomic";
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/file.bin";
  std::string bytes = "\xff\xd8 binary ";
  bytes += '\0';
  bytes += " bytes\n";
  ASSERT_TRUE(WriteFileAtomically(path, "old contents").ok());
  ASSERT_TRUE(WriteFileAtomically(path, bytes).ok());
  const absl::StatusOr<std::string> read = ReadFileBytes(path);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, bytes);
  int entries = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir)) ++entries;
  EXPECT_EQ(entries, 1);  // no temporary left behind
  EXPECT_EQ(ReadFileBytes(dir + "/missing").status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(WriteFileAtomically(dir + "/no/such/dir/file", "x").ok());
}

TEST(RngTest, SameKeysGiveSameStreamDifferentKeysDiffer) {
  Rng a = Rng::ForSample(7, 1, 42, 0), b = Rng::ForSample(7, 1, 42, 0);
  Rng other_view = Rng::ForSample(7, 1, 42, 1), other_epoch = Rng::ForSample(7, 2, 42, 0);
  for (int i = 0; i < 100; ++i) {
    const uint64_t x = a.NextU64();
    EXPECT_EQ(x, b.NextU64());
    EXPECT_NE(x, other_view.NextU64());
    EXPECT_NE(x, other_epoch.NextU64());
  }
}

TEST(RngTest, UniformMomentsMatchTheUnitInterval) {
  Rng rng(123);
  constexpr int kDraws = 200000;
  double sum = 0, sum_sq = 0, low = 1, high = 0;
  for (int i = 0; i < kDraws; ++i) {
    const double u = rng.Uniform();
    sum += u;
    sum_sq += u * u;
    low = std::min(low, u);
    high = std::max(high, u);
  }
  const double mean = sum / kDraws, var = sum_sq / kDraws - mean * mean;
  EXPECT_NEAR(mean, 0.5, 0.005);        // sd of the mean ~ 0.00065
  EXPECT_NEAR(var, 1.0 / 12.0, 0.002);  // 0.0833
  EXPECT_GE(low, 0.0);
  EXPECT_LT(high, 1.0);
}

TEST(RngTest, UniformIntCoversTheRangeEvenly) {
  Rng rng(5);
  std::vector<int> counts(6, 0);
  constexpr int kDraws = 60000;
  for (int i = 0; i < kDraws; ++i) {
    const int64_t v = rng.UniformInt(-2, 3);
    ASSERT_GE(v, -2);
    ASSERT_LE(v, 3);
    ++counts[v + 2];
  }
  // Each bucket expects 10000 with sd ~91; 5 sd bounds.
  for (int c : counts) EXPECT_NEAR(c, 10000, 460);
}

TEST(RngTest, BernoulliFrequencyAndEdges) {
  Rng rng(9);
  int hits = 0;
  for (int i = 0; i < 100000; ++i) hits += rng.Bernoulli(0.2);
  EXPECT_NEAR(hits, 20000, 630);  // sd ~126
  for (int i = 0; i < 1000; ++i) {
    EXPECT_FALSE(rng.Bernoulli(0.0));
    EXPECT_TRUE(rng.Bernoulli(1.0));
  }
}

TEST(RngTest, ShuffleIsAPermutation) {
  Rng rng(11);
  std::vector<int> values(1000);
  std::iota(values.begin(), values.end(), 0);
  std::vector<int> shuffled = values;
  rng.Shuffle(shuffled);
  EXPECT_NE(shuffled, values);
  std::sort(shuffled.begin(), shuffled.end());
  EXPECT_EQ(shuffled, values);
}

TEST(ProgressTest, FormatsDurations) {
  EXPECT_EQ(FormatDuration(0), "0s");
  EXPECT_EQ(FormatDuration(45.4), "45s");
  EXPECT_EQ(FormatDuration(725), "12m05s");
  EXPECT_EQ(FormatDuration(3 * 3600 + 7 * 60 + 30), "3h07m");
  EXPECT_EQ(FormatDuration(-1), "?");
}

TEST(ProgressTest, LineShowsCountsAndPercent) {
  ProgressMeter meter(200, "decode");
  EXPECT_LT(meter.EtaSeconds(), 0);  // unknown before progress
  meter.Update(50);
  const std::string line = meter.Line();
  EXPECT_EQ(line.rfind("decode 50/200 (25.0%) ", 0), 0u) << line;
  EXPECT_NE(line.find("ETA"), std::string::npos);
  EXPECT_GT(meter.Throughput(), 0);
}

absl::StatusOr<int> Half(int x) {
  if (x % 2) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::Status Quarter(int x, int* out) {
  SSL_ASSIGN_OR_RETURN(int half, Half(x));
  SSL_ASSIGN_OR_RETURN(*out, Half(half));
  SSL_RETURN_IF_ERROR(absl::OkStatus());
  return absl::OkStatus();
}

TEST(StatusMacrosTest, PropagateErrorsAndValues) {
  int out = 0;
  EXPECT_TRUE(Quarter(8, &out).ok());
  EXPECT_EQ(out, 2);
  EXPECT_EQ(Quarter(6, &out).message(), "odd");
}

#if defined(__GLIBC__)
TEST(AllocatorTest, LargeBlocksComeFromTheHeapAndStayForReuse) {
  for (const char* name :
       {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES"}) {
    if (std::getenv(name) != nullptr) GTEST_SKIP() << name << " is set";
  }
  ASSERT_TRUE(core::KeepFreedMemoryForReuse());
  const size_t mapped_blocks = mallinfo2().hblks;
  constexpr size_t kBlock = 16 << 20;  // a large activation; mapped on its own by default
  char* block = static_cast<char*>(std::malloc(kBlock));
  ASSERT_NE(block, nullptr);
  std::memset(block, 1, kBlock);
  EXPECT_EQ(mallinfo2().hblks, mapped_blocks);
  std::free(block);
  // Still held by the heap, free for the next allocation.
  EXPECT_GE(mallinfo2().fordblks, kBlock);

  // A user's own setting wins.
  setenv("MALLOC_TOP_PAD_", "0", 1);
  EXPECT_FALSE(core::KeepFreedMemoryForReuse());
  unsetenv("MALLOC_TOP_PAD_");
}
#endif

}  // namespace
}  // namespace ssl
