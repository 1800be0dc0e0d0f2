#include "ssl/nn/max_pool.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/max_pool2d.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

namespace ssl::nn {
namespace {

struct Geometry {
  int64_t planes, height, width, out_height, out_width, kernel, stride, padding;
  int64_t plane_size() const { return height * width; }
  int64_t out_plane_size() const { return out_height * out_width; }
};

// The window's winner as LibTorch picks it: scanning in row-major order, a value takes
// over if it is greater than the best so far or NaN (so the first maximum wins, or the
// last NaN), starting from -infinity at the first position inside the map.
inline void Consider(float value, int64_t offset, float& best, int64_t& best_offset) {
  if (value > best || std::isnan(value)) {
    best = value;
    best_offset = offset;
  }
}

// Any window geometry, one output at a time; windows are clipped to the map, so the
// padding never wins.
template <bool kArgmax>
void PoolPlane(const Geometry& g, const float* in, float* out, int32_t* arg) {
  for (int64_t oy = 0; oy < g.out_height; ++oy) {
    const int64_t y_start = oy * g.stride - g.padding;
    const int64_t y_end = std::min(y_start + g.kernel, g.height);
    const int64_t y_begin = std::max<int64_t>(y_start, 0);
    for (int64_t ox = 0; ox < g.out_width; ++ox) {
      const int64_t x_start = ox * g.stride - g.padding;
      const int64_t x_end = std::min(x_start + g.kernel, g.width);
      const int64_t x_begin = std::max<int64_t>(x_start, 0);
      float best = -std::numeric_limits<float>::infinity();
      int64_t best_index = y_begin * g.width + x_begin;
      for (int64_t y = y_begin; y < y_end; ++y) {
        for (int64_t x = x_begin; x < x_end; ++x) {
          Consider(in[y * g.width + x], y * g.width + x, best, best_index);
        }
      }
      out[oy * g.out_width + ox] = best;
      if (kArgmax) arg[oy * g.out_width + ox] = static_cast<int32_t>(best_index);
    }
  }
}

#ifdef __SSE2__
// The ResNet stem's pooling (3x3, stride 2, padding 1), four outputs of a row at once.
// Output x reads input columns 2x - 1, 2x and 2x + 1: with each input row split into
// three column arrays (left, middle, right), every tap is a contiguous vector over the
// outputs. Positions outside the map hold -infinity: never greater, never NaN, so they
// never take over, as LibTorch's clipped windows never visit them.
class StemPooler {
 public:
  explicit StemPooler(const Geometry& g) : g_(g), lanes_((g.out_width + 3) / 4 * 4) {
    buffer_.resize(5 * lanes_);
  }

  template <bool kArgmax>
  void Plane(const float* in, float* out, int32_t* arg) {
    float* const left = buffer_.data();
    float* const middle = left + lanes_;
    float* const right = middle + lanes_;
    float* const best_row = right + lanes_;
    int32_t* const index_row = reinterpret_cast<int32_t*>(best_row + lanes_);
    const float lowest = -std::numeric_limits<float>::infinity();
    for (int64_t oy = 0; oy < g_.out_height; ++oy) {
      const int64_t y_begin = std::max<int64_t>(2 * oy - 1, 0);
      const int64_t y_end = std::min<int64_t>(2 * oy + 2, g_.height);
      for (int64_t x = 0; x < lanes_; ++x) {
        best_row[x] = lowest;  // each window starts at its first position in the map
        index_row[x] = static_cast<int32_t>(y_begin * g_.width + std::max<int64_t>(2 * x - 1, 0));
      }
      for (int64_t y = y_begin; y < y_end; ++y) {
        const float* row = in + y * g_.width;
        for (int64_t x = 0; x < lanes_; ++x) {
          const int64_t c = 2 * x;
          left[x] = c >= 1 && c - 1 < g_.width ? row[c - 1] : lowest;
          middle[x] = c < g_.width ? row[c] : lowest;
          right[x] = c + 1 < g_.width ? row[c + 1] : lowest;
        }
        const __m128i row_start = _mm_set1_epi32(static_cast<int32_t>(y * g_.width));
        for (int64_t x = 0; x < lanes_; x += 4) {
          __m128 best = _mm_loadu_ps(best_row + x);
          __m128i index = _mm_loadu_si128(reinterpret_cast<const __m128i*>(index_row + x));
          // Input column of the left tap, per lane: 2x - 1.
          const __m128i column = _mm_add_epi32(_mm_set1_epi32(static_cast<int32_t>(2 * x - 1)),
                                               _mm_setr_epi32(0, 2, 4, 6));
          const __m128i position = _mm_add_epi32(row_start, column);
          Take(_mm_loadu_ps(left + x), position, best, index);
          Take(_mm_loadu_ps(middle + x), _mm_add_epi32(position, _mm_set1_epi32(1)), best, index);
          Take(_mm_loadu_ps(right + x), _mm_add_epi32(position, _mm_set1_epi32(2)), best, index);
          _mm_storeu_ps(best_row + x, best);
          if (kArgmax) _mm_storeu_si128(reinterpret_cast<__m128i*>(index_row + x), index);
        }
      }
      std::copy(best_row, best_row + g_.out_width, out + oy * g_.out_width);
      if (kArgmax) std::copy(index_row, index_row + g_.out_width, arg + oy * g_.out_width);
    }
  }

 private:
  // Consider() for four lanes: value > best or value is NaN.
  static void Take(__m128 value, __m128i position, __m128& best, __m128i& index) {
    const __m128 takes = _mm_or_ps(_mm_cmpgt_ps(value, best), _mm_cmpunord_ps(value, value));
    best = _mm_or_ps(_mm_and_ps(takes, value), _mm_andnot_ps(takes, best));
    const __m128i takes_bits = _mm_castps_si128(takes);
    index = _mm_or_si128(_mm_and_si128(takes_bits, position), _mm_andnot_si128(takes_bits, index));
  }

  const Geometry& g_;
  const int64_t lanes_;
  std::vector<float> buffer_;  // three column arrays, then the row's bests and indices
};
#endif  // __SSE2__

// Enough planes per parallel task for about 16K outputs, so that small maps do not pay
// a task's overhead per plane.
int64_t PlanesPerTask(const Geometry& g) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, g.out_plane_size()));
}

template <bool kArgmax>
void PoolForward(const Geometry& g, const float* input, float* output, int32_t* argmax) {
  const int64_t grain = PlanesPerTask(g);
#ifdef __SSE2__
  const bool stem = g.kernel == 3 && g.stride == 2 && g.padding == 1;
#else
  const bool stem = false;
#endif
  at::parallel_for(0, g.planes, grain, [&](int64_t begin, int64_t end) {
#ifdef __SSE2__
    StemPooler stem_pooler(g);
#endif
    for (int64_t plane = begin; plane < end; ++plane) {
      const float* in = input + plane * g.plane_size();
      float* out = output + plane * g.out_plane_size();
      int32_t* arg = kArgmax ? argmax + plane * g.out_plane_size() : nullptr;
#ifdef __SSE2__
      if (stem) {
        stem_pooler.Plane<kArgmax>(in, out, arg);
        continue;
      }
#endif
      PoolPlane<kArgmax>(g, in, out, arg);
    }
  });
}

// Each output's gradient added to its maximum's position, outputs in row-major order
// (the order, and so the rounding, of LibTorch's own backward).
at::Tensor PoolBackward(const Geometry& g, const at::Tensor& grad_output, const at::Tensor& argmax,
                        at::IntArrayRef input_sizes) {
  const at::Tensor grad = grad_output.contiguous();
  at::Tensor grad_input = at::zeros(input_sizes, grad.options());
  const float* grad_out = grad.data_ptr<float>();
  const int32_t* arg = argmax.data_ptr<int32_t>();
  float* grad_in = grad_input.data_ptr<float>();
  const int64_t grain = PlanesPerTask(g);
  at::parallel_for(0, g.planes, grain, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const float* go = grad_out + plane * g.out_plane_size();
      const int32_t* a = arg + plane * g.out_plane_size();
      float* gi = grad_in + plane * g.plane_size();
      for (int64_t i = 0; i < g.out_plane_size(); ++i) gi[a[i]] += go[i];
    }
  });
  return grad_input;
}

Geometry MakeGeometry(const at::Tensor& input, int64_t kernel, int64_t stride, int64_t padding) {
  Geometry g;
  g.planes = input.size(0) * input.size(1);
  g.height = input.size(2);
  g.width = input.size(3);
  g.kernel = kernel;
  g.stride = stride;
  g.padding = padding;
  g.out_height = (g.height + 2 * padding - kernel) / stride + 1;
  g.out_width = (g.width + 2 * padding - kernel) / stride + 1;
  return g;
}

class MaxPoolFunction : public torch::autograd::Function<MaxPoolFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input,
                            int64_t kernel, int64_t stride, int64_t padding) {
    const Geometry g = MakeGeometry(input, kernel, stride, padding);
    at::Tensor output =
        at::empty({input.size(0), input.size(1), g.out_height, g.out_width}, input.options());
    at::Tensor argmax = at::empty(output.sizes(), input.options().dtype(at::kInt));
    PoolForward<true>(g, input.data_ptr<float>(), output.data_ptr<float>(),
                      argmax.data_ptr<int32_t>());
    ctx->save_for_backward({argmax});
    ctx->saved_data["input_sizes"] = input.sizes();
    ctx->saved_data["geometry"] = std::vector<int64_t>{g.planes,    g.height, g.width, g.out_height,
                                                       g.out_width, kernel,   stride,  padding};
    return output;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor argmax = ctx->get_saved_variables()[0];
    const std::vector<int64_t> sizes = ctx->saved_data["input_sizes"].toIntVector();
    const std::vector<int64_t> v = ctx->saved_data["geometry"].toIntVector();
    const Geometry g{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]};
    return {PoolBackward(g, grads[0], argmax, sizes), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// Settings LibTorch accepts (it reports bad ones itself) that give a non-empty output
// small enough for 32-bit positions.
bool SupportedSettings(const at::Tensor& input, int64_t kernel, int64_t stride, int64_t padding) {
  return kernel >= 1 && stride >= 1 && padding >= 0 && 2 * padding <= kernel &&
         input.size(2) + 2 * padding >= kernel && input.size(3) + 2 * padding >= kernel &&
         input.size(2) * input.size(3) < std::numeric_limits<int32_t>::max();
}

}  // namespace

bool UsesOwnMaxPoolKernel(const at::Tensor& input) {
  return input.defined() && input.dim() == 4 && input.device().is_cpu() &&
         input.scalar_type() == at::kFloat && input.is_contiguous() && input.numel() > 0;
}

at::Tensor MaxPool2d(const at::Tensor& input, int64_t kernel, int64_t stride, int64_t padding) {
  if (!UsesOwnMaxPoolKernel(input) || !SupportedSettings(input, kernel, stride, padding)) {
    return at::max_pool2d(input, {kernel, kernel}, {stride, stride}, {padding, padding});
  }
  if (c10::GradMode::is_enabled() && input.requires_grad()) {
    return MaxPoolFunction::apply(input, kernel, stride, padding);
  }
  const Geometry g = MakeGeometry(input, kernel, stride, padding);
  at::Tensor output =
      at::empty({input.size(0), input.size(1), g.out_height, g.out_width}, input.options());
  PoolForward<false>(g, input.data_ptr<float>(), output.data_ptr<float>(), nullptr);
  return output;
}

}  // namespace ssl::nn
