#include "ssl/data/sampler.h"

#include <glog/logging.h>

#include <numeric>

#include "ssl/core/random.h"

namespace ssl::data {

DistributedSampler::DistributedSampler(int64_t dataset_size, int world_size, int rank, bool shuffle,
                                       uint64_t seed)
    : dataset_size_(dataset_size),
      world_size_(world_size),
      rank_(rank),
      shuffle_(shuffle),
      seed_(seed) {
  CHECK_GE(world_size, 1);
  CHECK(rank >= 0 && rank < world_size) << "rank " << rank << " of " << world_size;
}

std::vector<int64_t> DistributedSampler::EpochIndices(int64_t epoch) const {
  std::vector<int64_t> order(dataset_size_);
  std::iota(order.begin(), order.end(), 0);
  if (shuffle_) {
    // The same permutation on every rank: it depends on (seed, epoch) only.
    Rng rng({seed_, static_cast<uint64_t>(epoch), 0x5a3b1e5ULL});
    rng.Shuffle(order);
  }
  std::vector<int64_t> mine;
  mine.reserve(num_samples());
  for (int64_t i = rank_; i < num_samples() * world_size_; i += world_size_) {
    mine.push_back(order[i]);
  }
  return mine;
}

}  // namespace ssl::data
