#include "ssl/data/loader.h"

#include <ATen/Context.h>

#include <ATen/ops/empty.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "ssl/core/logging.h"
#include "ssl/core/random.h"
#include "ssl/data/image_io.h"

namespace ssl::data {
namespace {

// How many following samples to try before declaring the data unreadable.
constexpr int64_t kMaxFallbacks = 64;

}  // namespace

absl::StatusOr<std::unique_ptr<Loader>> Loader::Create(const ImageFolder& dataset,
                                                       ViewRecipe recipe, LoaderOptions options) {
  if (absl::Status s = recipe.Validate(); !s.ok()) return s;
  if (options.batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch size must be >= 1, got ", options.batch_size));
  }
  if (options.num_workers < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("number of loader workers must be >= 1, got ", options.num_workers));
  }
  if (options.prefetch_batches < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("prefetch must be >= 1 batch, got ", options.prefetch_batches));
  }
  if (options.repeated_augmentations < 1) {
    return absl::InvalidArgumentError(absl::StrCat("repeated augmentations must be >= 1, got ",
                                                   options.repeated_augmentations));
  }
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", options.rank, " is not in a world of size ", options.world_size));
  }
  const int64_t per_rank = dataset.size() / options.world_size;
  if (options.drop_last && per_rank < options.batch_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dataset ", dataset.root(), " has ", dataset.size(), " images, ", per_rank,
        " per process, fewer than one batch of ", options.batch_size, "; lower the batch size"));
  }
  if (options.pin_memory && !at::hasCUDA()) {
    return absl::InvalidArgumentError("pinned batches need a CUDA LibTorch (pin_memory)");
  }
  return std::unique_ptr<Loader>(new Loader(dataset, std::move(recipe), options));
}

Loader::Loader(const ImageFolder& dataset, ViewRecipe recipe, LoaderOptions options)
    : dataset_(dataset),
      recipe_(std::move(recipe)),
      options_(options),
      sampler_(dataset.size(), options.world_size, options.rank, options.shuffle, options.seed,
               std::max(1, options.repeated_augmentations)) {}

Loader::~Loader() { StopWorkers(); }

int64_t Loader::BatchesPerEpoch() const {
  const int64_t n = sampler_.num_samples();
  return options_.drop_last ? n / options_.batch_size
                            : (n + options_.batch_size - 1) / options_.batch_size;
}

int64_t Loader::BatchBytes() const {
  int64_t bytes = 2 * options_.batch_size * static_cast<int64_t>(sizeof(int64_t));
  for (const CropGroup& group : recipe_.groups) {
    const int64_t s = group.augmentation.size;
    bytes += group.count * options_.batch_size * 3 * s * s * static_cast<int64_t>(sizeof(float));
  }
  return bytes;
}

int64_t Loader::BatchPoolBytes() const { return (options_.prefetch_batches + 2) * BatchBytes(); }

bool Loader::Slot::InUse() const {
  // The pool owns each tensor once; every batch handed out holds views of its storage.
  const auto held = [](const at::Tensor& t) {
    return t.use_count() > 1 || t.storage().use_count() > 1;
  };
  if (held(labels_and_indices)) return true;
  for (const at::Tensor& group : groups) {
    if (held(group)) return true;
  }
  return false;
}

Loader::Slot Loader::AllocateSlot() const {
  const at::TensorOptions pixels = at::TensorOptions(at::kFloat).pinned_memory(options_.pin_memory);
  Slot slot;
  for (const CropGroup& group : recipe_.groups) {
    const int64_t s = group.augmentation.size;
    slot.groups.push_back(at::empty({group.count * options_.batch_size * 3 * s * s}, pixels));
  }
  slot.labels_and_indices = at::empty({2 * options_.batch_size}, at::kLong);
  return slot;
}

void Loader::StopWorkers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_available_.notify_all();
  for (std::thread& worker : workers_) worker.join();
  workers_.clear();
}

void Loader::StartEpoch(int64_t epoch, int64_t first_batch) {
  StopWorkers();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = false;
    epoch_ = epoch;
    epoch_indices_ = sampler_.EpochIndices(epoch, &epoch_copies_);
    num_batches_ = BatchesPerEpoch();
    next_to_open_ = next_to_deliver_ = std::min(first_batch, num_batches_);
    open_.clear();
  }
  for (int i = 0; i < options_.num_workers; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

Loader::OpenBatch Loader::OpenBatchLocked(int64_t batch_index) {
  const int64_t begin = batch_index * options_.batch_size;
  const int64_t b =
      std::min<int64_t>(options_.batch_size, static_cast<int64_t>(epoch_indices_.size()) - begin);
  // Pinned memory is left to the caching host allocator, which fences reuse on the
  // copies' streams; plain memory is reused here once no batch holds a view of it.
  const Slot* slot = nullptr;
  Slot one_off;
  if (!options_.pin_memory && pool_.empty()) {
    // The whole pool at once: its size, not how the first epoch's timing happened to
    // grow it, bounds the memory, and no later batch allocates while a slot is free.
    const int64_t pool_size = options_.prefetch_batches + 2;
    for (int64_t i = 0; i < pool_size; ++i) pool_.push_back(AllocateSlot());
    batch_allocations_ += pool_size;
  }
  if (!options_.pin_memory) {
    for (const Slot& candidate : pool_) {
      if (!candidate.InUse()) {
        slot = &candidate;
        break;
      }
    }
  }
  if (slot == nullptr) {
    ++batch_allocations_;
    one_off = AllocateSlot();
    slot = &one_off;
  }
  OpenBatch open;
  open.size = b;
  open.batch.epoch = epoch_;
  open.batch.iteration = batch_index;
  for (size_t g = 0; g < recipe_.groups.size(); ++g) {
    const CropGroup& group = recipe_.groups[g];
    const int64_t s = group.augmentation.size;
    at::Tensor pixels = slot->groups[g].narrow(0, 0, group.count * b * 3 * s * s);
    open.batch.groups.push_back(pixels.view({group.count * b, 3, s, s}));
    open.group_data.push_back(open.batch.groups.back().data_ptr<float>());
  }
  open.batch.labels = slot->labels_and_indices.narrow(0, 0, b);
  open.batch.indices = slot->labels_and_indices.narrow(0, options_.batch_size, b);
  open.labels = open.batch.labels.data_ptr<int64_t>();
  open.indices = open.batch.indices.data_ptr<int64_t>();
  for (size_t g = 0; g < recipe_.groups.size(); ++g) {
    for (int k = 0; k < recipe_.groups[g].count; ++k) {
      open.batch.views.push_back(open.batch.groups[g].narrow(0, k * b, b));
    }
  }
  return open;
}

void Loader::WorkerLoop() {
  // Per-worker buffers, reused across samples.
  Image image;
  FloatImage scratch;
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    // The earliest open batch with samples left, else a new batch within the prefetch.
    int64_t batch_index = -1;
    OpenBatch* target = nullptr;
    for (auto& [index, open] : open_) {
      if (open.next_sample < open.size) {
        batch_index = index;
        target = &open;
        break;
      }
    }
    if (target == nullptr && next_to_open_ < num_batches_ &&
        next_to_open_ < next_to_deliver_ + options_.prefetch_batches) {
      batch_index = next_to_open_++;
      target = &open_.emplace(batch_index, OpenBatchLocked(batch_index)).first->second;
    }
    if (target == nullptr) {
      work_available_.wait(lock);
      continue;
    }
    const int64_t p = target->next_sample++;
    const bool failed_already = !target->status.ok();
    lock.unlock();
    absl::Status status;
    if (!failed_already) {
      status = FillSample(*target, p, batch_index * options_.batch_size + p, &image, &scratch);
    }
    lock.lock();
    if (!status.ok() && target->status.ok()) target->status = std::move(status);
    if (++target->samples_done == target->size) batch_done_.notify_all();
  }
}

absl::StatusOr<bool> Loader::Next(Batch* batch) {
  std::unique_lock<std::mutex> lock(mutex_);
  CHECK(!workers_.empty()) << "call StartEpoch() before Next()";
  if (next_to_deliver_ >= num_batches_) return false;
  const auto start = std::chrono::steady_clock::now();
  batch_done_.wait(lock, [this] {
    const auto it = open_.find(next_to_deliver_);
    return it != open_.end() && it->second.samples_done == it->second.size;
  });
  wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto node = open_.extract(next_to_deliver_);
  ++next_to_deliver_;
  lock.unlock();
  work_available_.notify_all();
  if (!node.mapped().status.ok()) return node.mapped().status;
  *batch = std::move(node.mapped().batch);
  return true;
}

LoaderStats Loader::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {images_loaded_.load(), decode_failures_.load(), wait_seconds_, batch_allocations_};
}

absl::StatusOr<int64_t> Loader::DecodeWithFallback(int64_t index, Image* image) {
  const int64_t n = dataset_.size();
  for (int64_t attempt = 0; attempt < std::min(kMaxFallbacks, n); ++attempt) {
    const int64_t candidate = (index + attempt) % n;
    const std::string& path = dataset_.samples()[candidate].path;
    absl::StatusOr<Image> decoded = ReadImageFile(path);
    if (decoded.ok()) {
      *image = std::move(decoded).value();
      ++images_loaded_;
      return candidate;
    }
    ++decode_failures_;
    std::lock_guard<std::mutex> lock(warned_mutex_);
    if (warned_.insert(candidate).second) {
      LOG(WARNING) << "skipping unreadable image (" << decoded.status().message() << "); sample "
                   << index << " uses the next readable one instead";
    }
  }
  return absl::DataLossError(absl::StrCat("no readable image among ", std::min(kMaxFallbacks, n),
                                          " consecutive samples from ",
                                          dataset_.samples()[index].path));
}

absl::Status Loader::FillSample(OpenBatch& open, int64_t p, int64_t position, Image* image,
                                FloatImage* scratch) {
  const int64_t requested = epoch_indices_[position];
  absl::StatusOr<int64_t> used = DecodeWithFallback(requested, image);
  if (!used.ok()) return used.status();
  open.labels[p] = dataset_.samples()[*used].label;
  open.indices[p] = *used;
  int view = 0;
  for (size_t g = 0; g < recipe_.groups.size(); ++g) {
    const CropGroup& group = recipe_.groups[g];
    const int64_t crop_floats = 3LL * group.augmentation.size * group.augmentation.size;
    for (int k = 0; k < group.count; ++k, ++view) {
      // Repeats of one image (repeated augmentation) draw their own crops.
      Rng rng =
          Rng::ForSample(options_.seed, epoch_, requested, view + 1000 * epoch_copies_[position]);
      AugmentView(*image, group.augmentation, rng, scratch,
                  open.group_data[g] + (k * open.size + p) * crop_floats);
    }
  }
  return absl::OkStatus();
}

}  // namespace ssl::data
