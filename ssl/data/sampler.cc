#include "ssl/data/sampler.h"

#include <numeric>

#include "ssl/core/logging.h"
#include "ssl/core/random.h"

namespace ssl::data {

DistributedSampler::DistributedSampler(int64_t dataset_size, int world_size, int rank, bool shuffle,
                                       uint64_t seed, int repeats)
    : dataset_size_(dataset_size),
      world_size_(world_size),
      rank_(rank),
      shuffle_(shuffle),
      seed_(seed),
      repeats_(repeats) {
  CHECK_GE(world_size, 1);
  CHECK_GE(repeats, 1);
  CHECK(rank >= 0 && rank < world_size) << "rank " << rank << " of " << world_size;
}

int64_t DistributedSampler::num_samples() const {
  if (repeats_ == 1) return dataset_size_ / world_size_;
  const int64_t selected = dataset_size_ / 256 * 256 / world_size_;
  return selected > 0 ? selected : dataset_size_ / world_size_;
}

std::vector<int64_t> DistributedSampler::EpochIndices(int64_t epoch,
                                                      std::vector<int>* copies) const {
  std::vector<int64_t> order(dataset_size_);
  std::iota(order.begin(), order.end(), 0);
  if (shuffle_) {
    // The same permutation on every rank: it depends on (seed, epoch) only.
    Rng rng({seed_, static_cast<uint64_t>(epoch), 0x5a3b1e5ULL});
    rng.Shuffle(order);
  }
  std::vector<int64_t> mine;
  mine.reserve(num_samples());
  if (copies) copies->clear();
  if (repeats_ == 1) {
    for (int64_t i = rank_; i < num_samples() * world_size_; i += world_size_) {
      mine.push_back(order[i]);
      if (copies) copies->push_back(0);
    }
    return mine;
  }
  // Position q of the repeated, cyclically padded list holds order[(q % n*R) / R].
  const int64_t repeated = dataset_size_ * repeats_;
  for (int64_t j = 0; j < num_samples(); ++j) {
    const int64_t q = (rank_ + j * world_size_) % repeated;
    mine.push_back(order[q / repeats_]);
    if (copies) copies->push_back(static_cast<int>(q % repeats_));
  }
  return mine;
}

}  // namespace ssl::data
