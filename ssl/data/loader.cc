#include "ssl/data/loader.h"

#include <ATen/Context.h>

#include <ATen/ops/empty.h>

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

void Loader::StopWorkers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
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
    next_to_claim_ = next_to_deliver_ = std::min(first_batch, num_batches_);
    ready_.clear();
  }
  for (int i = 0; i < options_.num_workers; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

void Loader::WorkerLoop() {
  while (true) {
    int64_t batch_index;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [this] {
        return stopping_ || (next_to_claim_ < num_batches_ &&
                             next_to_claim_ < next_to_deliver_ + options_.prefetch_batches);
      });
      if (stopping_) return;
      batch_index = next_to_claim_++;
    }
    absl::StatusOr<Batch> batch = BuildBatch(batch_index);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.emplace(batch_index, std::move(batch));
    }
    changed_.notify_all();
  }
}

absl::StatusOr<bool> Loader::Next(Batch* batch) {
  std::unique_lock<std::mutex> lock(mutex_);
  CHECK(!workers_.empty()) << "call StartEpoch() before Next()";
  if (next_to_deliver_ >= num_batches_) return false;
  const auto start = std::chrono::steady_clock::now();
  changed_.wait(lock, [this] { return ready_.count(next_to_deliver_) > 0; });
  wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto node = ready_.extract(next_to_deliver_);
  ++next_to_deliver_;
  lock.unlock();
  changed_.notify_all();
  if (!node.mapped().ok()) return node.mapped().status();
  *batch = std::move(node.mapped()).value();
  return true;
}

LoaderStats Loader::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {images_loaded_.load(), decode_failures_.load(), wait_seconds_};
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

absl::StatusOr<Batch> Loader::BuildBatch(int64_t batch_index) {
  const int64_t begin = batch_index * options_.batch_size;
  const int64_t b =
      std::min<int64_t>(options_.batch_size, static_cast<int64_t>(epoch_indices_.size()) - begin);
  Batch batch;
  batch.epoch = epoch_;
  batch.iteration = batch_index;
  std::vector<float*> group_data;
  const at::TensorOptions pixels = at::TensorOptions(at::kFloat).pinned_memory(options_.pin_memory);
  for (const CropGroup& group : recipe_.groups) {
    const int s = group.augmentation.size;
    batch.groups.push_back(at::empty({group.count * b, 3, s, s}, pixels));
    group_data.push_back(batch.groups.back().data_ptr<float>());
  }
  batch.labels = at::empty({b}, at::kLong);
  batch.indices = at::empty({b}, at::kLong);
  int64_t* labels = batch.labels.data_ptr<int64_t>();
  int64_t* indices = batch.indices.data_ptr<int64_t>();
  Image image;
  FloatImage scratch;
  for (int64_t p = 0; p < b; ++p) {
    const int64_t requested = epoch_indices_[begin + p];
    absl::StatusOr<int64_t> used = DecodeWithFallback(requested, &image);
    if (!used.ok()) return used.status();
    labels[p] = dataset_.samples()[*used].label;
    indices[p] = *used;
    int view = 0;
    for (size_t g = 0; g < recipe_.groups.size(); ++g) {
      const CropGroup& group = recipe_.groups[g];
      const int64_t crop_floats = 3LL * group.augmentation.size * group.augmentation.size;
      for (int k = 0; k < group.count; ++k, ++view) {
        // Repeats of one image (repeated augmentation) draw their own crops.
        Rng rng = Rng::ForSample(options_.seed, epoch_, requested,
                                 view + 1000 * epoch_copies_[begin + p]);
        AugmentView(image, group.augmentation, rng, &scratch,
                    group_data[g] + (k * b + p) * crop_floats);
      }
    }
  }
  for (size_t g = 0; g < recipe_.groups.size(); ++g) {
    for (int k = 0; k < recipe_.groups[g].count; ++k) {
      batch.views.push_back(batch.groups[g].narrow(0, k * b, b));
    }
  }
  return batch;
}

}  // namespace ssl::data
