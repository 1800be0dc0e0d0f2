#include "ssl/data/image_io.h"

#include <algorithm>
#include <atomic>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <mutex>
#include <thread>
#include <vector>

// jpeglib.h needs FILE and size_t declared first.
#include <jerror.h>
#include <jpeglib.h>

// SSL_NO_OPENCV: JPEG only (libjpeg-turbo), for the GPU machine's CMake build, where
// OpenCV's 140 shared libraries cannot be carried (tools/gpu/README.md).
#ifndef SSL_NO_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgcodecs.hpp>
#endif

#include "absl/strings/str_cat.h"
#include "ssl/core/file.h"
#include "ssl/core/status_macros.h"

namespace ssl::data {
namespace {

std::atomic<int64_t> max_image_pixels{kDefaultMaxImagePixels};

absl::Status CheckPixelCount(const char* format, const std::string& name, int64_t width,
                             int64_t height) {
  const int64_t limit = MaxImagePixels();
  if (width * height <= limit) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(format, " ", name, " claims ", width, " x ",
                                                 height, " pixels, more than the limit of ", limit,
                                                 " (--max_image_pixels); refused before decoding"));
}

uint32_t BigEndian32(std::string_view bytes, size_t at) {
  uint32_t value = 0;
  for (size_t i = 0; i < 4; ++i) value = (value << 8) | static_cast<uint8_t>(bytes[at + i]);
  return value;
}

int32_t LittleEndian32(std::string_view bytes, size_t at) {
  uint32_t value = 0;
  for (size_t i = 0; i < 4; ++i)
    value |= static_cast<uint32_t>(static_cast<uint8_t>(bytes[at + i])) << (8 * i);
  return static_cast<int32_t>(value);
}

// The size PNG (IHDR) and BMP (BITMAPINFOHEADER) headers claim, checked before OpenCV
// allocates the image.
absl::Status CheckHeaderSize(std::string_view bytes, const std::string& name) {
  static constexpr char kPng[] = "\x89PNG\r\n\x1a\n";
  if (bytes.size() >= 24 && bytes.substr(0, 8) == std::string_view(kPng, 8) &&
      bytes.substr(12, 4) == "IHDR") {
    SSL_RETURN_IF_ERROR(
        CheckPixelCount("PNG", name, BigEndian32(bytes, 16), BigEndian32(bytes, 20)));
    // Every chunk must be whole up to IEND: libpng reports short files on stderr itself.
    for (size_t at = 8; at + 8 <= bytes.size();) {
      const uint64_t length = static_cast<uint32_t>(BigEndian32(bytes, at));
      if (at + 12 + length > bytes.size()) break;
      if (bytes.substr(at + 4, 4) == "IEND") return absl::OkStatus();
      at += 12 + length;
    }
    return absl::InvalidArgumentError(absl::StrCat("PNG ", name, " is truncated"));
  }
  if (bytes.size() >= 26 && bytes.substr(0, 2) == "BM") {
    const int64_t width = LittleEndian32(bytes, 18);
    const int64_t height = LittleEndian32(bytes, 22);
    if (absl::Status claimed =
            CheckPixelCount("BMP", name, width < 0 ? -width : width, height < 0 ? -height : height);
        !claimed.ok()) {
      return claimed;
    }
    // Fields OpenCV asserts on while reading the header, printing the failure to stderr
    // itself (found by fuzzing): refused here in one sentence instead.
    if (bytes.size() < 34 || LittleEndian32(bytes, 14) < 40) {
      return absl::InvalidArgumentError(
          absl::StrCat("BMP ", name, " is truncated or has an unsupported header"));
    }
    {
      const int bits = static_cast<uint8_t>(bytes[28]) | static_cast<uint8_t>(bytes[29]) << 8;
      const int64_t compression = LittleEndian32(bytes, 30);
      if (compression < 0 || compression > 3 ||
          (bits != 1 && bits != 4 && bits != 8 && bits != 16 && bits != 24 && bits != 32)) {
        return absl::InvalidArgumentError(absl::StrCat("BMP ", name, " has an unsupported header (",
                                                       bits, " bits, compression ", compression,
                                                       ")"));
      }
      // Uncompressed rows must all be there; OpenCV reports short files on stderr.
      const int64_t data_offset = static_cast<uint32_t>(LittleEndian32(bytes, 10));
      const int64_t row_bytes = (std::abs(width) * bits + 31) / 32 * 4;
      if ((compression == 0 || compression == 3) && std::abs(height) <= (int64_t{1} << 31) &&
          data_offset + row_bytes * std::abs(height) > static_cast<int64_t>(bytes.size())) {
        return absl::InvalidArgumentError(absl::StrCat("BMP ", name, " is truncated"));
      }
    }
    return absl::OkStatus();
  }
  return absl::OkStatus();
}

struct JpegErrorManager {
  jpeg_error_mgr base;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX] = {0};
  bool truncated = false;
};

[[noreturn]] void OnJpegError(j_common_ptr cinfo) {
  auto* manager = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, manager->message);
  std::longjmp(manager->jump, 1);
}

// Warnings (level -1) are mostly benign ("extraneous bytes before marker"), and PIL
// decodes through them too; running out of data is not: PIL refuses truncated files.
void OnJpegMessage(j_common_ptr cinfo, int level) {
  if (level >= 0) return;
  if (cinfo->err->msg_code == JWRN_JPEG_EOF) {
    auto* manager = reinterpret_cast<JpegErrorManager*>(cinfo->err);
    manager->truncated = true;
  }
}

bool IsJpeg(std::string_view bytes) {
  return bytes.size() >= 3 && static_cast<uint8_t>(bytes[0]) == 0xFF &&
         static_cast<uint8_t>(bytes[1]) == 0xD8 && static_cast<uint8_t>(bytes[2]) == 0xFF;
}

// libjpeg reports errors by longjmp, after which locals changed since setjmp hold
// indeterminate values: a local Image assigned after setjmp leaked its pixels on every
// corrupt JPEG (found by fuzzing: 1.2 GB after ~6,000 bad files). The buffers live in
// the caller and are reached through pointers that never change.
absl::Status DecodeJpegInto(std::string_view encoded, const std::string& name, Image* image,
                            std::vector<uint8_t>* cmyk_row) {
  jpeg_decompress_struct cinfo;
  JpegErrorManager errors;
  cinfo.err = jpeg_std_error(&errors.base);
  errors.base.error_exit = OnJpegError;
  errors.base.emit_message = OnJpegMessage;
  if (setjmp(errors.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return absl::InvalidArgumentError(
        absl::StrCat("cannot decode JPEG ", name, ": ", errors.message));
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, reinterpret_cast<const unsigned char*>(encoded.data()),
               static_cast<unsigned long>(encoded.size()));
  if (jpeg_read_header(&cinfo, TRUE) != JPEG_HEADER_OK || errors.truncated) {
    jpeg_destroy_decompress(&cinfo);
    return absl::InvalidArgumentError(absl::StrCat("JPEG ", name, " is truncated"));
  }
  if (absl::Status size = CheckPixelCount("JPEG", name, cinfo.image_width, cinfo.image_height);
      !size.ok()) {
    jpeg_destroy_decompress(&cinfo);
    return size;
  }
  const bool is_cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  cinfo.out_color_space = is_cmyk ? JCS_CMYK : JCS_RGB;  // libjpeg-turbo expands gray
  jpeg_start_decompress(&cinfo);
  *image = Image(cinfo.output_height, cinfo.output_width);
  if (is_cmyk) cmyk_row->resize(static_cast<size_t>(cinfo.output_width) * 4);
  // Adobe writes CMYK inverted (stored = 255 - ink), as PIL's "CMYK;I" mode assumes.
  const bool inverted = cinfo.saw_Adobe_marker;
  while (cinfo.output_scanline < cinfo.output_height) {
    const int y = cinfo.output_scanline;
    uint8_t* row = image->pixels.data() + static_cast<size_t>(y) * image->width * 3;
    JSAMPROW target = is_cmyk ? cmyk_row->data() : row;
    jpeg_read_scanlines(&cinfo, &target, 1);
    if (!is_cmyk) continue;
    for (int x = 0; x < image->width; ++x) {
      const uint8_t* in = cmyk_row->data() + x * 4;
      // PIL's cmyk2rgb: channel = (255 - ink) * (255 - black) / 255.
      const int not_black = inverted ? in[3] : 255 - in[3];
      for (int c = 0; c < 3; ++c) {
        const int not_ink = inverted ? in[c] : 255 - in[c];
        row[x * 3 + c] = static_cast<uint8_t>((not_ink * not_black + 127) / 255);
      }
    }
  }
  if (errors.truncated) {
    jpeg_destroy_decompress(&cinfo);
    return absl::InvalidArgumentError(absl::StrCat("JPEG ", name, " is truncated"));
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return absl::OkStatus();
}

absl::StatusOr<Image> DecodeJpeg(std::string_view encoded, const std::string& name) {
  Image image;
  std::vector<uint8_t> cmyk_row;
  if (absl::Status status = DecodeJpegInto(encoded, name, &image, &cmyk_row); !status.ok()) {
    return status;
  }
  return image;
}

#ifndef SSL_NO_OPENCV
// OpenCV 4.6's decoders report failures themselves: through its logger, and, for
// formats whose reader throws (e.g. truncated TIFFs), with an unconditional
// "imdecode_(...): can't read data" line on std::cerr. The caller reports them in one
// sentence, so the logger is silenced and std::cerr gets a filter, installed once for
// the process, that drops those lines (and the blank line after each) and passes
// everything else through unchanged.
class DropOpencvDecodeLines : public std::streambuf {
 public:
  explicit DropOpencvDecodeLines(std::streambuf* target) : target_(target) {}

 protected:
  int overflow(int c) override {
    if (c == traits_type::eof()) return traits_type::not_eof(c);
    const char ch = static_cast<char>(c);
    xsputn(&ch, 1);
    return c;
  }
  std::streamsize xsputn(const char* text, std::streamsize n) override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (std::streamsize i = 0; i < n; ++i) {
      line_.push_back(text[i]);
      if (text[i] == '\n') EmitLine();
    }
    return n;
  }
  int sync() override {
    std::lock_guard<std::mutex> lock(mutex_);
    // A partial line goes out on flush unless it may still become a dropped one.
    if (!line_.empty() && !IsDecodeLine()) {
      target_->sputn(line_.data(), static_cast<std::streamsize>(line_.size()));
      line_.clear();
      drop_blank_ = false;
    }
    return target_->pubsync();
  }

 private:
  bool IsDecodeLine() const { return line_.rfind("imdecode_(", 0) == 0; }
  void EmitLine() {
    const bool drop = IsDecodeLine() || (drop_blank_ && line_ == "\n");
    drop_blank_ = IsDecodeLine();
    if (!drop) target_->sputn(line_.data(), static_cast<std::streamsize>(line_.size()));
    line_.clear();
  }

  std::streambuf* target_;
  std::mutex mutex_;
  std::string line_;
  bool drop_blank_ = false;
};

void QuietOpencvOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
    static DropOpencvDecodeLines* filter = new DropOpencvDecodeLines(std::cerr.rdbuf());
    std::cerr.rdbuf(filter);
  });
}

absl::StatusOr<Image> DecodeWithOpencv(std::string_view encoded, const std::string& name) {
  if (encoded.empty()) return absl::InvalidArgumentError(absl::StrCat(name, " is empty"));
  if (absl::Status size = CheckHeaderSize(encoded, name); !size.ok()) return size;
  const cv::Mat buffer(1, static_cast<int>(encoded.size()), CV_8UC1,
                       const_cast<char*>(encoded.data()));
  cv::Mat bgr;
  QuietOpencvOnce();
  try {
    bgr = cv::imdecode(buffer, cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("cannot decode ", name, ": ", e.what()));
  }
  if (bgr.empty() || bgr.type() != CV_8UC3) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot decode ", name, ": not a supported image or corrupt"));
  }
  Image image(bgr.rows, bgr.cols);
  for (int y = 0; y < bgr.rows; ++y) {
    const uint8_t* in = bgr.ptr<uint8_t>(y);
    uint8_t* out = image.pixels.data() + static_cast<size_t>(y) * image.width * 3;
    for (int x = 0; x < bgr.cols; ++x) {
      out[3 * x] = in[3 * x + 2];
      out[3 * x + 1] = in[3 * x + 1];
      out[3 * x + 2] = in[3 * x];
    }
  }
  return image;
}
#else
absl::StatusOr<Image> DecodeWithOpencv(std::string_view encoded, const std::string& name) {
  return absl::InvalidArgumentError(absl::StrCat(
      "cannot decode ", name, ": this build reads JPEG files only (built without OpenCV)"));
}
#endif  // SSL_NO_OPENCV

struct JpegDestination {
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
};

// Compresses `rows` of `components` bytes per pixel in `color_space`.
std::string CompressJpeg(int height, int width, int components, J_COLOR_SPACE color_space,
                         const std::vector<uint8_t>& data, int quality) {
  jpeg_compress_struct cinfo;
  jpeg_error_mgr jerr;
  cinfo.err = jpeg_std_error(&jerr);  // encoding our own buffers: errors are bugs
  jpeg_create_compress(&cinfo);
  JpegDestination destination;
  jpeg_mem_dest(&cinfo, &destination.buffer, &destination.size);
  cinfo.image_width = width;
  cinfo.image_height = height;
  cinfo.input_components = components;
  cinfo.in_color_space = color_space;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, std::clamp(quality, 1, 100), TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(data.data()) +
                   static_cast<size_t>(cinfo.next_scanline) * width * components;
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  std::string bytes(reinterpret_cast<char*>(destination.buffer), destination.size);
  jpeg_destroy_compress(&cinfo);
  free(destination.buffer);
  return bytes;
}

}  // namespace

void SetMaxImagePixels(int64_t max_pixels) { max_image_pixels.store(max_pixels); }

int64_t MaxImagePixels() { return max_image_pixels.load(); }

absl::StatusOr<Image> DecodeImage(std::string_view encoded, std::string_view name) {
  // Debian's absl has its own string_view type, which StrCat wants; a copy is cheap.
  const std::string label(name);
  if (IsJpeg(encoded)) return DecodeJpeg(encoded, label);
  return DecodeWithOpencv(encoded, label);
}

absl::StatusOr<Image> ReadImageFile(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadFileBytes(path);
  if (!bytes.ok()) return bytes.status();
  return DecodeImage(*bytes, path);
}

std::string EncodeJpeg(const Image& image, int quality) {
  return CompressJpeg(image.height, image.width, 3, JCS_RGB, image.pixels, quality);
}

std::string EncodeGrayscaleJpeg(const Image& image, int quality) {
  std::vector<uint8_t> luma(static_cast<size_t>(image.height) * image.width);
  for (size_t i = 0; i < luma.size(); ++i) {
    const uint8_t* p = &image.pixels[i * 3];
    luma[i] = static_cast<uint8_t>(std::lround(0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]));
  }
  return CompressJpeg(image.height, image.width, 1, JCS_GRAYSCALE, luma, quality);
}

std::string EncodeCmykJpeg(const Image& image, int quality) {
  // Choose inks so that PIL's conversion maps back to the RGB input: black carries the
  // brightest channel, the colour inks the rest. Stored inverted (Adobe).
  std::vector<uint8_t> cmyk(static_cast<size_t>(image.height) * image.width * 4);
  for (size_t i = 0; i < static_cast<size_t>(image.height) * image.width; ++i) {
    const uint8_t* p = &image.pixels[i * 3];
    const int brightest = std::max({p[0], p[1], p[2]});
    for (int c = 0; c < 3; ++c) {
      cmyk[i * 4 + c] =
          brightest == 0 ? 255 : static_cast<uint8_t>(std::lround(255.0 * p[c] / brightest));
    }
    cmyk[i * 4 + 3] = static_cast<uint8_t>(brightest);
  }
  return CompressJpeg(image.height, image.width, 4, JCS_CMYK, cmyk, quality);
}

#ifndef SSL_NO_OPENCV
std::string EncodePng(const Image& image) {
  cv::Mat bgr(image.height, image.width, CV_8UC3);
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) {
      for (int c = 0; c < 3; ++c) bgr.ptr<uint8_t>(y)[3 * x + c] = image.at(y, x, 2 - c);
    }
  }
  std::vector<uchar> bytes;
  cv::imencode(".png", bgr, bytes);
  return std::string(bytes.begin(), bytes.end());
}
#endif  // SSL_NO_OPENCV

}  // namespace ssl::data
