// Data pipeline throughput: read + decode + MoCo v3's two augmented 224 views, or
// SwAV's 2x224 + 6x96 multi-crop views.
//
//   bazel run //ssl/data:pipeline_benchmark -- --data=/path/to/imagenette/train
//
// Without --data it draws a synthetic 224 px ImageFolder in a temporary directory.
// tools/benchmark_pipeline.sh runs this and the torchvision + PIL baseline together and
// prints the ratio.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ssl/data/image_folder.h"
#include "ssl/data/image_io.h"
#include "ssl/data/loader.h"
#include "ssl/data/synthetic.h"
#include "ssl/data/views.h"

namespace ssl::data {
namespace {

std::string& DataRoot() {
  static std::string root;
  return root;
}

const ImageFolder& Dataset() {
  static const ImageFolder* folder = [] {
    absl::StatusOr<ImageFolder> opened = ImageFolder::Open(DataRoot());
    if (!opened.ok()) {
      std::cerr << opened.status().message() << "\n";
      std::exit(1);
    }
    return new ImageFolder(*std::move(opened));
  }();
  return *folder;
}

// The index-th image of a walk that spreads consecutive iterations across classes;
// false (with the benchmark marked failed) when it cannot be read.
bool ReadSpreadSample(benchmark::State& state, int64_t index, int64_t* sample, Image* image) {
  const ImageFolder& folder = Dataset();
  *sample = (index * 7919) % folder.size();
  absl::StatusOr<Image> read = ReadImageFile(folder.samples()[*sample].path);
  if (!read.ok()) {
    state.SkipWithError(std::string(read.status().message()).c_str());
    return false;
  }
  *image = *std::move(read);
  return true;
}

void ReportImagesPerCore(benchmark::State& state, int64_t images, int threads = 1) {
  state.SetItemsProcessed(images);
  state.counters["images_per_s_per_core"] =
      benchmark::Counter(static_cast<double>(images) / threads, benchmark::Counter::kIsRate);
}

// One core: read and decode only, the floor under both pipelines (libjpeg-turbo here,
// PIL's libjpeg-turbo in the baseline): the views can at best be free.
void BM_ReadAndDecodeOneThread(benchmark::State& state) {
  Image image;
  int64_t index = 0;
  for (auto _ : state) {
    int64_t sample;
    if (!ReadSpreadSample(state, index, &sample, &image)) break;
    benchmark::DoNotOptimize(image.pixels.data());
    ++index;
  }
  ReportImagesPerCore(state, index);
}
BENCHMARK(BM_ReadAndDecodeOneThread)->Unit(benchmark::kMillisecond)->MinTime(5.0)->UseRealTime();

// One core: each iteration reads, decodes and makes both views of one image.
void BM_MocoV3TwoViewsOneThread(benchmark::State& state) {
  Image image;
  const ViewRecipe recipe = MocoV3Views(224, 0.2);
  FloatImage scratch;
  std::vector<float> out(3 * 224 * 224);
  int64_t index = 0;
  for (auto _ : state) {
    int64_t sample;
    if (!ReadSpreadSample(state, index, &sample, &image)) break;
    for (int view = 0; view < 2; ++view) {
      Rng rng = Rng::ForSample(0, 0, sample, view);
      AugmentView(image, recipe.groups[view].augmentation, rng, &scratch, out.data());
    }
    benchmark::DoNotOptimize(out.data());
    ++index;
  }
  ReportImagesPerCore(state, index);
}
BENCHMARK(BM_MocoV3TwoViewsOneThread)->Unit(benchmark::kMillisecond)->MinTime(5.0)->UseRealTime();

// One core: read, decode and SwAV's 2x224 + 6x96 multi-crop views of one image
// (VISSL's ImgPilToMultiCrop, flip, colour distortion of strength 1, blur p 0.5).
void BM_SwavMultiCropOneThread(benchmark::State& state) {
  Image image;
  const ViewRecipe recipe = MultiCropViews(MultiCropOptions());
  FloatImage scratch;
  std::vector<float> out(3 * 224 * 224);
  int64_t index = 0;
  for (auto _ : state) {
    int64_t sample;
    if (!ReadSpreadSample(state, index, &sample, &image)) break;
    int view = 0;
    for (const CropGroup& group : recipe.groups) {
      for (int k = 0; k < group.count; ++k, ++view) {
        Rng rng = Rng::ForSample(0, 0, sample, view);
        AugmentView(image, group.augmentation, rng, &scratch, out.data());
      }
    }
    benchmark::DoNotOptimize(out.data());
    ++index;
  }
  ReportImagesPerCore(state, index);
}
BENCHMARK(BM_SwavMultiCropOneThread)->Unit(benchmark::kMillisecond)->MinTime(5.0)->UseRealTime();

// The threaded loader producing batches of 64 of `recipe` with `workers` threads while
// the consumer only waits; its per-worker rate against the one-thread rows above (the
// same views of the same images) is the loader's overhead. The loader is built and
// warmed up outside the timed loop, and the prefetch is fixed at 2 batches so that every
// worker count holds the same memory.
void RunLoader(benchmark::State& state, const ViewRecipe& recipe) {
  const ImageFolder& folder = Dataset();
  LoaderOptions options;
  options.batch_size = 64;
  options.num_workers = static_cast<int>(state.range(0));
  options.prefetch_batches = 2;
  auto loader = Loader::Create(folder, recipe, options);
  if (!loader.ok()) {
    state.SkipWithError(std::string(loader.status().message()).c_str());
    return;
  }
  int64_t epoch = 0, images = 0;
  Batch batch;
  const auto next = [&]() -> bool {
    absl::StatusOr<bool> more = (*loader)->Next(&batch);
    if (more.ok() && !*more) {
      (*loader)->StartEpoch(++epoch);
      more = (*loader)->Next(&batch);
    }
    if (!more.ok()) state.SkipWithError(std::string(more.status().message()).c_str());
    return more.ok();
  };
  // Steady state: every pool slot written once (their first page faults) before timing.
  (*loader)->StartEpoch(epoch);
  for (int warm = 0; warm < options.prefetch_batches + 2; ++warm) {
    if (!next()) return;
  }
  for (auto _ : state) {
    if (!next()) break;
    images += batch.labels.size(0);
  }
  ReportImagesPerCore(state, images, options.num_workers);
  state.counters["batch_allocations"] = static_cast<double>((*loader)->stats().batch_allocations);
}

// The loader rows, for 1, 2, 4, ... workers up to this machine's core count (1 and 2 on a
// 2-core machine, up to 16 on a 16-core GPU host).
void RegisterLoaderBenchmarks() {
  const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const auto add = [cores](const char* name, ViewRecipe (*recipe)()) {
    benchmark::internal::Benchmark* rows = benchmark::RegisterBenchmark(
        name, [recipe](benchmark::State& state) { RunLoader(state, recipe()); });
    for (int workers = 1; workers <= std::max(2, cores); workers *= 2) rows->Arg(workers);
    rows->Unit(benchmark::kMillisecond)->MinTime(5.0)->UseRealTime();
  };
  add("BM_MocoV3Loader", [] { return MocoV3Views(224, 0.2); });
  add("BM_SwavMultiCropLoader", [] { return MultiCropViews(MultiCropOptions()); });
}

}  // namespace
}  // namespace ssl::data

int main(int argc, char** argv) {
  // Our one flag; the rest go to Google Benchmark.
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--data=", 7) == 0) {
      std::filesystem::path root = argv[i] + 7;
      const char* cwd = std::getenv("BUILD_WORKING_DIRECTORY");  // set by bazel run
      if (root.is_relative() && cwd != nullptr) root = std::filesystem::path(cwd) / root;
      ssl::data::DataRoot() = root.string();
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (ssl::data::DataRoot().empty()) {
    const std::string root =
        (std::filesystem::temp_directory_path() / "ssl_pipeline_benchmark_data").string();
    ssl::data::SyntheticDatasetOptions options;
    options.image_size = 224;
    options.train_per_class = 50;
    options.val_per_class = 1;
    std::cerr << "no --data given: using synthetic 224 px images in " << root << "\n";
    if (absl::Status s = ssl::data::WriteSyntheticImageFolder(options, root); !s.ok()) {
      std::cerr << s.message() << "\n";
      return 1;
    }
    ssl::data::DataRoot() = root + "/train";
  }
  std::cerr << "images from " << ssl::data::DataRoot() << "\n";
  int rest_argc = static_cast<int>(rest.size());
  ssl::data::RegisterLoaderBenchmarks();
  benchmark::Initialize(&rest_argc, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
