// --max_image_pixels for every program that reads images: linked in (alwayslink), it
// needs no code in the programs; the validator hands the value to the decoder.
#include <gflags/gflags.h>

#include <cstdint>
#include <cstdio>

#include "ssl/data/image_io.h"

DEFINE_int64(max_image_pixels, ssl::data::kDefaultMaxImagePixels,
             "Images whose header claims more pixels (width x height) are refused before "
             "decoding and counted as unreadable, as PIL refuses decompression bombs.");

namespace {

bool ApplyMaxImagePixels(const char* flag, int64_t value) {
  if (value <= 0) {
    std::fprintf(stderr, "--%s must be positive, got %lld\n", flag, static_cast<long long>(value));
    return false;
  }
  ssl::data::SetMaxImagePixels(value);
  return true;
}

}  // namespace

DEFINE_validator(max_image_pixels, &ApplyMaxImagePixels);
