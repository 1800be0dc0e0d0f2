// Which sample indices each process sees in an epoch.
#ifndef SSL_DATA_SAMPLER_H_
#define SSL_DATA_SAMPLER_H_

#include <cstdint>
#include <vector>

namespace ssl::data {

/// torch's DistributedSampler with drop_last: each of `world_size` processes gets
/// floor(size / world_size) indices, rank r taking positions r, r + W, ... of the
/// epoch's order; the order is a fresh permutation per epoch (seeded by seed + epoch)
/// when shuffling, else 0..size-1. The ragged tail is dropped, never padded.
class DistributedSampler {
 public:
  DistributedSampler(int64_t dataset_size, int world_size, int rank, bool shuffle, uint64_t seed);

  /// This rank's indices for `epoch`.
  std::vector<int64_t> EpochIndices(int64_t epoch) const;
  int64_t num_samples() const { return dataset_size_ / world_size_; }

 private:
  int64_t dataset_size_;
  int world_size_;
  int rank_;
  bool shuffle_;
  uint64_t seed_;
};

}  // namespace ssl::data

#endif  // SSL_DATA_SAMPLER_H_
