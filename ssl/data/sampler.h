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
///
/// With `repeats` > 1 it is DeiT's RASampler (repeated augmentation): the epoch's order
/// has each index `repeats` times in a row, padded cyclically to a multiple of
/// world_size, rank r takes positions r, r + W, ...; and every rank keeps only the first
/// floor(size / 256) * 256 / W of its share (so an epoch sees about size / repeats
/// distinct images, each `repeats` times; below 256 images: size / W).
class DistributedSampler {
 public:
  DistributedSampler(int64_t dataset_size, int world_size, int rank, bool shuffle, uint64_t seed,
                     int repeats = 1);

  /// This rank's indices for `epoch`; `copies`, when given, receives which repeat of its
  /// index each position is (0 .. repeats-1), so that the copies are augmented apart.
  std::vector<int64_t> EpochIndices(int64_t epoch, std::vector<int>* copies = nullptr) const;
  int64_t num_samples() const;

 private:
  int64_t dataset_size_;
  int world_size_;
  int rank_;
  bool shuffle_;
  uint64_t seed_;
  int repeats_;
};

}  // namespace ssl::data

#endif  // SSL_DATA_SAMPLER_H_
