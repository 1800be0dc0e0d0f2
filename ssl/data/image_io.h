// Decoding and encoding of image files. JPEG goes through libjpeg-turbo directly, so a
// truncated or corrupt file is an error (not a half-grey image) and CMYK/YCCK decode to
// RGB; PNG, BMP and the rest go through OpenCV.
#ifndef SSL_DATA_IMAGE_IO_H_
#define SSL_DATA_IMAGE_IO_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "ssl/data/image.h"

namespace ssl::data {

/// PIL's DecompressionBombError threshold (2 x Image.MAX_IMAGE_PIXELS).
inline constexpr int64_t kDefaultMaxImagePixels = 178956970;

/// Process-wide limit on width x height: JPEG, PNG and BMP files that claim more are
/// refused from their header, before any pixel memory is allocated (a 12 KB JPEG can
/// claim 60000 x 60000); other formats are bounded by OpenCV's own limit. The
/// programs set it from --max_image_pixels.
void SetMaxImagePixels(int64_t max_pixels);
int64_t MaxImagePixels();

/// Decodes an encoded image (JPEG, PNG, ...) to 8-bit RGB. Grayscale, palette, 16-bit,
/// alpha (dropped, as PIL's convert("RGB")) and CMYK inputs all become RGB. Corrupt or
/// truncated data is an InvalidArgument error; `name` is used in messages.
absl::StatusOr<Image> DecodeImage(std::string_view encoded, std::string_view name = "image");

/// Reads and decodes one file; NotFound when it cannot be read.
absl::StatusOr<Image> ReadImageFile(const std::string& path);

/// Baseline JPEG at `quality` (1-100), 4:2:0 chroma subsampling.
std::string EncodeJpeg(const Image& image, int quality = 90);
/// Single-channel (JCS_GRAYSCALE) JPEG of the image's luma.
std::string EncodeGrayscaleJpeg(const Image& image, int quality = 90);
/// Adobe-style CMYK JPEG (inverted values, as Photoshop writes them), for tests of
/// the CMYK decode path.
std::string EncodeCmykJpeg(const Image& image, int quality = 90);
/// Lossless PNG.
std::string EncodePng(const Image& image);

}  // namespace ssl::data

#endif  // SSL_DATA_IMAGE_IO_H_
