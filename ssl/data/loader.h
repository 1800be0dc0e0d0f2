// Threaded batch loader: decode + view recipe on N worker threads with bounded
// prefetch, batches delivered in order as contiguous float tensors.
//
// Work is claimed one sample at a time from the earliest open batch, so any number of
// workers fill the same batch together and at most `prefetch_batches` batches are open
// whatever the worker count. Views are written straight into their batch's memory,
// which comes from a pool of prefetch_batches + 2 reused slots (see BatchPoolBytes()).
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
  /// (DataLoader's pin_memory). Needs a CUDA LibTorch. Pinned batches come from
  /// PyTorch's caching host allocator, which reuses a block only once the
  /// non_blocking copies that read it have finished on their stream; the same bound on
  /// open batches bounds what it holds.
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
  /// Batch-sized allocations made: the pool's prefetch_batches + 2 slots, all at the
  /// first batch, plus one per batch opened while every slot was still held by the
  /// caller (e.g. a test that keeps a whole epoch), or per batch when pinned.
  /// Steady-state training adds none.
  int64_t batch_allocations = 0;
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
  /// Bytes of one full batch (every crop group, labels and indices).
  int64_t BatchBytes() const;
  /// The most the reused pool holds: (prefetch_batches + 2) x BatchBytes(), the open
  /// batches plus the one the caller trains on and one it may still hold.
  int64_t BatchPoolBytes() const;
  const ViewRecipe& recipe() const { return recipe_; }

 private:
  // A batch being filled: its tensors (views of a pool slot) and which of its samples
  // are claimed and done.
  struct OpenBatch {
    Batch batch;
    std::vector<float*> group_data;
    int64_t* labels = nullptr;
    int64_t* indices = nullptr;
    int64_t size = 0;  ///< samples in this batch
    int64_t next_sample = 0;
    int64_t samples_done = 0;
    absl::Status status;  ///< the first sample's error, if any
  };
  // Memory for one full batch, handed out as views while the pool keeps the owners.
  struct Slot {
    std::vector<at::Tensor> groups;  ///< flat float storage per crop group
    at::Tensor labels_and_indices;   ///< int64 [2 * batch_size]
    bool InUse() const;
  };

  Loader(const ImageFolder& dataset, ViewRecipe recipe, LoaderOptions options);
  void StopWorkers();
  void WorkerLoop();
  // Opens batch `batch_index`: tensors from a free pool slot (or a new one). Needs mutex_.
  OpenBatch OpenBatchLocked(int64_t batch_index);
  Slot AllocateSlot() const;
  // Decodes and augments position `position` of the epoch into sample `p` of `open`.
  absl::Status FillSample(OpenBatch& open, int64_t p, int64_t position, Image* image,
                          FloatImage* scratch);
  // Decodes sample `index`, or the first decodable one after it (warning once per bad
  // file); returns the index used.
  absl::StatusOr<int64_t> DecodeWithFallback(int64_t index, Image* image);

  const ImageFolder& dataset_;
  const ViewRecipe recipe_;
  const LoaderOptions options_;
  const DistributedSampler sampler_;

  // Epoch state, guarded by mutex_.
  mutable std::mutex mutex_;
  std::condition_variable work_available_;  ///< workers wait here
  std::condition_variable batch_done_;      ///< Next() waits here
  std::vector<std::thread> workers_;
  bool stopping_ = false;
  int64_t epoch_ = 0;
  std::vector<int64_t> epoch_indices_;
  std::vector<int> epoch_copies_;  ///< repeat number of each position (repeated augmentation)
  int64_t num_batches_ = 0;
  int64_t next_to_open_ = 0;
  int64_t next_to_deliver_ = 0;
  // Open batches by index; std::map keeps each node in place while workers fill it.
  std::map<int64_t, OpenBatch> open_;
  std::vector<Slot> pool_;
  int64_t batch_allocations_ = 0;

  std::atomic<int64_t> images_loaded_{0};
  std::atomic<int64_t> decode_failures_{0};
  double wait_seconds_ = 0;
  std::mutex warned_mutex_;
  std::set<int64_t> warned_;
};

}  // namespace ssl::data

#endif  // SSL_DATA_LOADER_H_
