// Image containers shared by decoding and the transforms.
#ifndef SSL_DATA_IMAGE_H_
#define SSL_DATA_IMAGE_H_

#include <cstdint>
#include <vector>

namespace ssl::data {

/// 8-bit RGB, row-major, channels interleaved (HWC): what decoders produce.
struct Image {
  int height = 0;
  int width = 0;
  std::vector<uint8_t> pixels;  // height * width * 3

  Image() = default;
  Image(int h, int w) : height(h), width(w), pixels(static_cast<size_t>(h) * w * 3) {}
  uint8_t& at(int y, int x, int c) { return pixels[(static_cast<size_t>(y) * width + x) * 3 + c]; }
  uint8_t at(int y, int x, int c) const {
    return pixels[(static_cast<size_t>(y) * width + x) * 3 + c];
  }
};

/// Float RGB in [0, 1], planar (CHW) as torchvision's tensors after ToTensor().
struct FloatImage {
  int height = 0;
  int width = 0;
  std::vector<float> data;  // 3 * height * width

  FloatImage() = default;
  FloatImage(int h, int w) { Resize(h, w); }
  void Resize(int h, int w) {
    height = h;
    width = w;
    data.resize(static_cast<size_t>(3) * h * w);
  }
  size_t plane_size() const { return static_cast<size_t>(height) * width; }
  float* plane(int c) { return data.data() + c * plane_size(); }
  const float* plane(int c) const { return data.data() + c * plane_size(); }
  float& at(int c, int y, int x) {
    return data[c * plane_size() + static_cast<size_t>(y) * width + x];
  }
  float at(int c, int y, int x) const {
    return data[c * plane_size() + static_cast<size_t>(y) * width + x];
  }
};

}  // namespace ssl::data

#endif  // SSL_DATA_IMAGE_H_
