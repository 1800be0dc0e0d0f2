#include "ssl/nn/winograd_conv.h"

#include <ATen/ops/conv2d.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/randn_like.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/conv.h>

#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

namespace ssl::nn {
namespace {

// Largest |a - b| relative to the largest |b|.
double RelativeError(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

class WinogradConvTest : public testing::Test {
 protected:
  void SetUp() override {
    if (!WinogradConvolutionsAvailable()) GTEST_SKIP() << "no oneDNN Winograd kernels here";
  }
  void TearDown() override { SetWinogradConvolutions(false); }
};

TEST_F(WinogradConvTest, ForwardAndGradientsEqualTheDirectConvolution) {
  at::manual_seed(3);
  // Map sizes that are not multiples of the 4x4 output tile, a batch of 3.
  for (const auto& [channels, filters, height, width] :
       {std::tuple{16, 32, 8, 8}, std::tuple{32, 16, 11, 9}, std::tuple{64, 64, 16, 16}}) {
    SCOPED_TRACE(std::to_string(channels) + "->" + std::to_string(filters) + " at " +
                 std::to_string(height) + "x" + std::to_string(width));
    const at::Tensor input = at::randn({3, channels, height, width}).requires_grad_();
    const at::Tensor weight = at::randn({filters, channels, 3, 3}).requires_grad_();
    const at::Tensor upstream = at::randn({3, filters, height, width});

    const at::Tensor direct = at::conv2d(input, weight, {}, 1, 1);
    direct.backward(upstream);
    const at::Tensor direct_input_grad = input.grad().clone();
    const at::Tensor direct_weight_grad = weight.grad().clone();
    input.mutable_grad().zero_();
    weight.mutable_grad().zero_();

    const at::Tensor winograd = WinogradConv3x3(input, weight);
    ASSERT_EQ(winograd.sizes(), direct.sizes());
    winograd.backward(upstream);
    EXPECT_LT(RelativeError(winograd, direct), 1e-5);
    EXPECT_LT(RelativeError(input.grad(), direct_input_grad), 1e-5);
    EXPECT_LT(RelativeError(weight.grad(), direct_weight_grad), 1e-5);
    // A different algorithm: the sums are rounded differently, not computed elsewhere.
    EXPECT_FALSE(winograd.equal(direct));
  }
}

TEST_F(WinogradConvTest, OnlyTheInputGradientWhenTheWeightIsFrozen) {
  at::manual_seed(4);
  const at::Tensor input = at::randn({2, 16, 8, 8}).requires_grad_();
  const at::Tensor weight = at::randn({16, 16, 3, 3});
  WinogradConv3x3(input, weight).sum().backward();
  const at::Tensor expected_input = input.detach().clone().requires_grad_();
  at::conv2d(expected_input, weight, {}, 1, 1).sum().backward();
  EXPECT_LT(RelativeError(input.grad(), expected_input.grad()), 1e-5);
  EXPECT_FALSE(weight.grad().defined());
}

TEST_F(WinogradConvTest, ChannelsLastTensorsGiveTheSameResultsInTheirOwnLayout) {
  at::manual_seed(5);
  const auto last = at::MemoryFormat::ChannelsLast;
  const at::Tensor input = at::randn({2, 32, 12, 10});
  const at::Tensor weight = at::randn({16, 32, 3, 3});
  const at::Tensor upstream = at::randn({2, 16, 12, 10});
  const at::Tensor plain_input = input.clone().requires_grad_();
  const at::Tensor plain_weight = weight.clone().requires_grad_();
  const at::Tensor plain = WinogradConv3x3(plain_input, plain_weight);
  plain.backward(upstream);
  const at::Tensor nhwc_input = input.contiguous(last).requires_grad_();
  const at::Tensor nhwc_weight = weight.contiguous(last).requires_grad_();
  const at::Tensor nhwc = WinogradConv3x3(nhwc_input, nhwc_weight);
  nhwc.backward(upstream.contiguous(last));
  EXPECT_TRUE(nhwc.is_contiguous(last));
  EXPECT_TRUE(nhwc_input.grad().is_contiguous(last));
  EXPECT_TRUE(nhwc_weight.grad().is_contiguous(last));
  EXPECT_LT(RelativeError(nhwc, plain), 1e-6);
  EXPECT_LT(RelativeError(nhwc_input.grad(), plain_input.grad()), 1e-6);
  EXPECT_LT(RelativeError(nhwc_weight.grad(), plain_weight.grad()), 1e-6);
}

TEST_F(WinogradConvTest, TakesOnlyEligibleConvolutionsAndOnlyWhenSwitchedOn) {
  using torch::nn::Conv2d;
  using torch::nn::Conv2dOptions;
  Conv2d conv(Conv2dOptions(16, 32, 3).padding(1).bias(false));
  const at::Tensor input = at::randn({2, 16, 8, 8});
  EXPECT_FALSE(UsesWinograd(*conv, input));
  SetWinogradConvolutions(true);
  EXPECT_TRUE(UsesWinograd(*conv, input));
  EXPECT_LT(RelativeError(Conv2dForward(*conv, input), conv->forward(input)), 1e-5);

  EXPECT_FALSE(UsesWinograd(*conv, at::randn({2, 16, 4, 4}))) << "maps under 8x8";
  EXPECT_FALSE(UsesWinograd(*conv, input.to(at::kDouble))) << "float64";
  EXPECT_FALSE(UsesWinograd(*conv, at::randn({2, 16, 16, 16}).transpose(2, 3)))
      << "neither NCHW nor NHWC";
  EXPECT_TRUE(UsesWinograd(*conv, input.contiguous(at::MemoryFormat::ChannelsLast)));
  EXPECT_FALSE(
      UsesWinograd(*Conv2d(Conv2dOptions(16, 32, 3).padding(1).stride(2).bias(false)), input))
      << "stride 2";
  EXPECT_FALSE(UsesWinograd(*Conv2d(Conv2dOptions(16, 32, 3).padding(1)), input)) << "bias";
  EXPECT_FALSE(UsesWinograd(*Conv2d(Conv2dOptions(16, 32, 3).padding(0).bias(false)), input))
      << "no padding";
  EXPECT_FALSE(UsesWinograd(*Conv2d(Conv2dOptions(16, 32, 1).bias(false)), input)) << "1x1";
  EXPECT_FALSE(UsesWinograd(*Conv2d(Conv2dOptions(16, 24, 3).padding(1).bias(false)), input))
      << "24 filters";
  EXPECT_FALSE(
      UsesWinograd(*Conv2d(Conv2dOptions(16, 32, 3).padding(1).groups(2).bias(false)), input))
      << "groups";

  // Off again: exactly LibTorch's convolution.
  SetWinogradConvolutions(false);
  EXPECT_TRUE(Conv2dForward(*conv, input).equal(conv->forward(input)));
}

// Smaller maps. Outputs of at most 2x2: the whole convolution as per-tap products;
// larger ones: LibTorch's forward and input gradient (bit for bit) with per-tap weight
// gradients. Equal to the direct convolution up to rounding. Includes maps where some taps
// never meet the image (1x1, 1xN) and odd sizes with stride 2.
TEST_F(WinogradConvTest, TapProductsEqualTheDirectConvolutionOnSmallMaps) {
  using torch::nn::Conv2d;
  using torch::nn::Conv2dOptions;
  at::manual_seed(6);
  for (const auto& [channels, filters, height, width, stride] :
       {std::tuple{16, 24, 4, 4, 1}, std::tuple{32, 16, 2, 2, 1}, std::tuple{8, 8, 3, 5, 1},
        std::tuple{8, 8, 1, 1, 1}, std::tuple{8, 16, 1, 6, 1}, std::tuple{16, 32, 4, 4, 2},
        std::tuple{8, 16, 7, 7, 2}, std::tuple{8, 16, 3, 2, 2}, std::tuple{16, 16, 12, 9, 2},
        std::tuple{24, 16, 2, 1, 1}, std::tuple{16, 8, 3, 3, 2}}) {
    const bool whole = std::max((height - 1) / stride + 1, (width - 1) / stride + 1) <= 2;
    for (const bool channels_last : {false, true}) {
      SCOPED_TRACE(std::to_string(channels) + "->" + std::to_string(filters) + " at " +
                   std::to_string(height) + "x" + std::to_string(width) + ", stride " +
                   std::to_string(stride) + (channels_last ? ", channels-last" : ""));
      Conv2d conv(Conv2dOptions(channels, filters, 3).padding(1).stride(stride).bias(false));
      const auto format =
          channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
      conv->weight.set_data(conv->weight.contiguous(format));
      const at::Tensor input = at::randn({3, channels, height, width}).contiguous(format);
      const at::Tensor upstream = at::randn_like(conv->forward(input));
      auto run = [&](bool fast) {
        SetWinogradConvolutions(fast);
        EXPECT_EQ(UsesTapWeightGradient(*conv, input), fast && !whole);
        EXPECT_EQ(UsesTapConvolution(*conv, input), fast && whole);
        EXPECT_FALSE(UsesWinograd(*conv, input));
        const at::Tensor x = input.clone().requires_grad_();
        conv->weight.mutable_grad().reset();
        const at::Tensor output = Conv2dForward(*conv, x);
        output.backward(upstream);
        return std::vector<at::Tensor>{output, x.grad(), conv->weight.grad()};
      };
      const std::vector<at::Tensor> direct = run(false);
      const std::vector<at::Tensor> taps = run(true);
      if (whole) {
        EXPECT_LT(RelativeError(taps[0], direct[0]), 1e-5) << "output";
        EXPECT_LT(RelativeError(taps[1], direct[1]), 1e-5) << "input gradient";
      } else {
        EXPECT_TRUE(taps[0].equal(direct[0])) << "output";
        EXPECT_TRUE(taps[1].equal(direct[1])) << "input gradient";
      }
      EXPECT_LT(RelativeError(taps[2], direct[2]), 1e-5) << "weight gradient";
      // Each result in the layout LibTorch gives it.
      for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(taps[i].sizes(), direct[i].sizes()) << i;
        EXPECT_EQ(taps[i].is_contiguous(), direct[i].is_contiguous()) << i;
      }
      EXPECT_EQ(taps[2].is_contiguous(at::MemoryFormat::ChannelsLast) && !taps[2].is_contiguous(),
                channels_last);
    }
  }
  // Without a weight gradient (a frozen layer): the input gradient alone.
  SetWinogradConvolutions(true);
  Conv2d frozen(Conv2dOptions(16, 16, 3).padding(1).bias(false));
  frozen->weight.set_requires_grad(false);
  const at::Tensor x = at::randn({2, 16, 2, 2}).requires_grad_();
  ASSERT_TRUE(UsesTapConvolution(*frozen, x));
  const at::Tensor upstream = at::randn({2, 16, 2, 2});
  Conv2dForward(*frozen, x).backward(upstream);
  const at::Tensor reference = x.detach().clone().requires_grad_();
  frozen->forward(reference).backward(upstream);
  EXPECT_LT(RelativeError(x.grad(), reference.grad()), 1e-5);
  EXPECT_FALSE(frozen->weight.grad().defined());

  // Not taken: maps of 8x8 and more at stride 2, other strides, and 1x1 kernels.
  SetWinogradConvolutions(true);
  EXPECT_FALSE(
      UsesTapWeightGradient(*Conv2d(Conv2dOptions(16, 16, 3).padding(1).stride(2).bias(false)),
                            at::randn({1, 16, 16, 16})));
  EXPECT_FALSE(
      UsesTapWeightGradient(*Conv2d(Conv2dOptions(16, 16, 3).padding(1).stride(3).bias(false)),
                            at::randn({1, 16, 4, 4})));
  EXPECT_FALSE(UsesTapWeightGradient(*Conv2d(Conv2dOptions(16, 16, 1).stride(2).bias(false)),
                                     at::randn({1, 16, 4, 4})));
  EXPECT_TRUE(
      UsesTapWeightGradient(*Conv2d(Conv2dOptions(16, 16, 3).padding(1).stride(2).bias(false)),
                            at::randn({1, 16, 14, 14})));
}

TEST_F(WinogradConvTest, RejectsWhatItCannotTakeInOneSentence) {
  try {
    WinogradConv3x3(at::randn({1, 16, 8, 8}, at::kDouble), at::randn({16, 16, 3, 3}));
    FAIL() << "float64 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("float32"), std::string::npos) << e.what();
  }
  EXPECT_THROW(WinogradConv3x3(at::randn({1, 16, 8, 8}), at::randn({16, 16, 5, 5})),
               std::invalid_argument);
}

}  // namespace
}  // namespace ssl::nn
