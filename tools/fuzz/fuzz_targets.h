// Fuzz targets for the readers of untrusted input. Each returns normally for any input:
// errors are statuses, never crashes, hangs or unbounded allocations. run_fuzzers.sh
// builds each with libFuzzer (one binary per target, SSL_FUZZ_TARGET naming it);
// fuzz_targets_test replays seeds and deterministic mutations through all of them.
#ifndef TOOLS_FUZZ_FUZZ_TARGETS_H_
#define TOOLS_FUZZ_FUZZ_TARGETS_H_

#include <cstddef>
#include <cstdint>

namespace ssl::fuzz {

/// JPEG (RGB, grayscale, CMYK), PNG (8/16-bit), BMP and anything else OpenCV sniffs.
int DecodeImageTarget(const uint8_t* data, size_t size);
/// torch.save files, zip and legacy.
int TorchFileTarget(const uint8_t* data, size_t size);
/// A VISSL YAML config composed and read as SwAV's recipe.
int VisslConfigTarget(const uint8_t* data, size_t size);
/// The transfer datasets' files: Python pickles (CIFAR batches and meta) and MATLAB v5
/// files (Flowers-102), each input read as both.
int TransferFilesTarget(const uint8_t* data, size_t size);

}  // namespace ssl::fuzz

#endif  // TOOLS_FUZZ_FUZZ_TARGETS_H_
