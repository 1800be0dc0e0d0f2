// Threaded batch loader: decode + view recipe on N worker threads with bounded
// prefetch, batches delivered in order as contiguous float tensors.
//
// Determinism: the order of samples comes from the DistributedSampler (seed, epoch,
// rank) and every random draw for a crop from Rng::ForSample(seed, epoch, sample, view),
// so the batches are bit-identical whatever the number of workers.
#ifndef SSL_DATA_LOADER_H_
#define SSL_DATA_LOADER_H_

#include <ATen/core/Tensor.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "ssl/data/image_folder.h"
#include "ssl/data/sampler.h"
#include "ssl/data/views.h"

namespace ssl::data {

struct LoaderOptions {
  int64_t batch_size = 256;  ///< per process
  int num_workers = 2;       ///< threads decoding and augmenting
  int prefetch_batches = 2;  ///< batches prepared ahead of the consumer (>= 1)
  bool shuffle = true;
  bool drop_last = true;  ///< drop the epoch's final partial batch
  uint64_t seed = 0;
  int world_size = 1;  ///< sharding across processes
  int rank = 0;
  /// DeiT's repeated augmentation (RASampler) when > 1; see DistributedSampler.
  int repeated_augmentations = 1;
  /// Batches in page-locked host memory, so that copies to a GPU can be asynchronous
  /// (DataLoader's pin_memory). Needs a CUDA LibTorch.
  bool pin_memory = false;
};

struct Batch {
  /// One tensor per crop group, [count * b, 3, size, size], crop-major (all samples'
  /// first crop, then all samples' second crop, ...): one backbone call per group.
  std::vector<at::Tensor> groups;
  /// One tensor per view, [b, 3, size, size]: contiguous slices of `groups`.
  std::vector<at::Tensor> views;
  at::Tensor labels;   ///< int64 [b]
  at::Tensor indices;  ///< int64 [b], dataset index of each sample actually used
  int64_t epoch = 0;
  int64_t iteration = 0;  ///< batch index within the epoch
};

struct LoaderStats {
  int64_t images_loaded = 0;
  int64_t decode_failures = 0;  ///< corrupt or unreadable files skipped
  double wait_seconds = 0;      ///< time Next() spent waiting for workers
};

class Loader {
 public:
  /// Validates options and recipe; InvalidArgument names the bad value.
  static absl::StatusOr<std::unique_ptr<Loader>> Create(const ImageFolder& dataset,
                                                        ViewRecipe recipe, LoaderOptions options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  /// Batches per epoch on this process.
  int64_t BatchesPerEpoch() const;
  /// Begins `epoch` at batch `first_batch` (to resume mid-epoch); stops any work still
  /// running for the previous epoch.
  void StartEpoch(int64_t epoch, int64_t first_batch = 0);
  /// Fills `batch` with the next batch and returns true, or returns false at the end of
  /// the epoch. An error means no sample could be decoded around some index.
  absl::StatusOr<bool> Next(Batch* batch);

  LoaderStats stats() const;
  const ViewRecipe& recipe() const { return recipe_; }

 private:
  Loader(const ImageFolder& dataset, ViewRecipe recipe, LoaderOptions options);
  void StopWorkers();
  void WorkerLoop();
  absl::StatusOr<Batch> BuildBatch(int64_t batch_index);
  // Decodes sample `index`, or the first decodable one after it (warning once per bad
  // file); returns the index used.
  absl::StatusOr<int64_t> DecodeWithFallback(int64_t index, Image* image);

  const ImageFolder& dataset_;
  const ViewRecipe recipe_;
  const LoaderOptions options_;
  const DistributedSampler sampler_;

  // Epoch state, guarded by mutex_.
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::thread> workers_;
  bool stopping_ = false;
  int64_t epoch_ = 0;
  std::vector<int64_t> epoch_indices_;
  std::vector<int> epoch_copies_;  ///< repeat number of each position (repeated augmentation)
  int64_t num_batches_ = 0;
  int64_t next_to_claim_ = 0;
  int64_t next_to_deliver_ = 0;
  std::map<int64_t, absl::StatusOr<Batch>> ready_;

  std::atomic<int64_t> images_loaded_{0};
  std::atomic<int64_t> decode_failures_{0};
  double wait_seconds_ = 0;
  std::mutex warned_mutex_;
  std::set<int64_t> warned_;
};

}  // namespace ssl::data

#endif  // SSL_DATA_LOADER_H_
