#include <ATen/ops/allclose.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/isnan.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/max_pool2d.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/linear.h>

#include "ssl/nn/batch_norm.h"
#include "ssl/nn/max_pool.h"
#include "ssl/nn/mlp.h"
#include "ssl/nn/state_dict.h"

namespace ssl::nn {
namespace {

std::vector<std::string> Keys(const NamedTensors& state) {
  std::vector<std::string> keys;
  for (const auto& [key, tensor] : state) keys.push_back(key);
  return keys;
}

TEST(MlpTest, ProjectorKeysAndShapesMatchMocoV3) {
  // MoCo v3 ResNet-50 projector: 2 layers 2048-4096-256 with last BN.
  Mlp projector = BuildMlp(MlpOptions());
  const NamedTensors state = StateDict(*projector, "fc.");
  EXPECT_EQ(Keys(state), (std::vector<std::string>{
                             "fc.0.weight", "fc.1.weight", "fc.1.bias", "fc.1.running_mean",
                             "fc.1.running_var", "fc.1.num_batches_tracked", "fc.3.weight",
                             "fc.4.running_mean", "fc.4.running_var", "fc.4.num_batches_tracked"}));
  EXPECT_EQ(state[0].second.sizes(), (at::IntArrayRef{4096, 2048}));
  EXPECT_EQ(state[6].second.sizes(), (at::IntArrayRef{256, 4096}));
  // The last BN has no affine parameters: 2 Linear weights + BN gamma/beta.
  EXPECT_EQ(Parameters(*projector).size(), 4u);
}

TEST(MlpTest, PredictorHasNoLastBn) {
  Mlp predictor = BuildMlp(MlpOptions().input_dim(256).output_dim(256).last_bn(false));
  EXPECT_EQ(Keys(StateDict(*predictor)).back(), "3.weight");
  EXPECT_EQ(predictor->size(), 4u);
}

TEST(MlpTest, TrainForwardMatchesAHandWrittenComposition) {
  Mlp mlp = BuildMlp(MlpOptions().num_layers(3).input_dim(5).hidden_dim(7).output_dim(3));
  mlp->train();
  const at::Tensor x = at::randn({6, 5});
  const at::Tensor y = mlp->forward(x);
  // Reference: Linear (no bias), batch-stat BN (biased variance, eps 1e-5), ReLU.
  auto batch_norm = [](const at::Tensor& h, const at::Tensor& gamma, const at::Tensor& beta) {
    const at::Tensor mean = h.mean(0, true);
    const at::Tensor var = (h - mean).pow(2).mean(0, true);
    at::Tensor out = (h - mean) / (var + 1e-5).sqrt();
    return gamma.defined() ? out * gamma + beta : out;
  };
  torch::NoGradGuard no_grad;
  at::Tensor h = x;
  for (int layer = 0; layer < 3; ++layer) {
    const int base = layer * 3;
    h = at::matmul(h, mlp[base]->as<torch::nn::Linear>()->weight.t());
    auto* bn = mlp[base + 1]->as<ssl::nn::BatchNorm>();
    h = batch_norm(h, bn->weight, bn->bias);
    if (layer < 2) h = at::relu(h);
  }
  EXPECT_TRUE(at::allclose(y, h, 1e-4, 1e-5));
  // Last BN without affine: every output column has mean 0 and (biased) variance 1.
  EXPECT_LT(y.mean(0).abs().max().item<float>(), 1e-5);
  EXPECT_NEAR(y.var(0, false).mean().item<float>(), 1.0f, 1e-3);
  for (const auto& [key, tensor] : StateDict(*mlp)) EXPECT_TRUE(tensor.defined()) << key;
}

// Copies the affine parameters of a torch BN into ours (both start at 1 / 0).
void CopyAffine(const torch::nn::BatchNorm2d& from, BatchNorm& to) {
  torch::NoGradGuard no_grad;
  to->weight.copy_(from->weight);
  to->bias.copy_(from->bias);
}

torch::nn::BatchNorm2d RandomTorchBatchNorm(int64_t channels) {
  torch::nn::BatchNorm2d bn(channels);
  torch::NoGradGuard no_grad;
  bn->weight.uniform_(0.5, 1.5);
  bn->bias.uniform_(-0.5, 0.5);
  return bn;
}

TEST(BatchNormTest, LocalModeIsBitIdenticalToTorchBatchNorm) {
  torch::nn::BatchNorm2d reference = RandomTorchBatchNorm(4);
  BatchNorm ours = BatchNorm2d(4);
  CopyAffine(reference, ours);
  const auto ours_state = StateDict(*ours);
  const auto reference_state = StateDict(*reference);
  ASSERT_EQ(ours_state.size(), reference_state.size());
  for (size_t i = 0; i < ours_state.size(); ++i) {
    EXPECT_EQ(ours_state[i].first, reference_state[i].first);
  }
  for (int step = 0; step < 2; ++step) {
    const at::Tensor x = at::randn({3, 4, 5, 5}).requires_grad_();
    const at::Tensor x2 = x.detach().clone().requires_grad_();
    const at::Tensor upstream = at::randn({3, 4, 5, 5});
    const at::Tensor y_ref = reference->forward(x);
    const at::Tensor y = ours->forward(x2);
    EXPECT_TRUE(at::equal(y, y_ref));
    (y_ref * upstream).sum().backward();
    (y * upstream).sum().backward();
    EXPECT_TRUE(at::equal(x2.grad(), x.grad()));
  }
  EXPECT_TRUE(at::equal(ours->weight.grad(), reference->weight.grad()));
  EXPECT_TRUE(at::equal(ours->running_mean, reference->running_mean));
  EXPECT_TRUE(at::equal(ours->running_var, reference->running_var));
  EXPECT_EQ(ours->num_batches_tracked.item<int64_t>(), 2);
  ours->eval();
  reference->eval();
  const at::Tensor x = at::randn({2, 4, 3, 3});
  EXPECT_TRUE(at::equal(ours->forward(x), reference->forward(x)));
}

TEST(BatchNormTest, SyncModeOnOneProcessIsLocalBatchNorm) {
  absl::StatusOr<BatchNormSetting> setting =
      MakeBatchNormSetting("sync", 0, 1, distributed::MakeLocalCommunicator());
  ASSERT_TRUE(setting.ok()) << setting.status();
  BatchNorm synced = BatchNorm1d(6);
  BatchNorm local = BatchNorm1d(6);
  EXPECT_EQ(ConfigureBatchNorm(*synced, *setting), 1);
  const at::Tensor x = at::randn({5, 6});
  EXPECT_TRUE(at::equal(synced->forward(x), local->forward(x)));
  EXPECT_TRUE(at::equal(synced->running_var, local->running_var));
}

TEST(BatchNormTest, SplitModeNormalizesEachInterleavedSubBatchOnItsOwn) {
  torch::nn::BatchNorm2d reference = RandomTorchBatchNorm(3);
  BatchNorm split = BatchNorm2d(3);
  CopyAffine(reference, split);
  ConfigureBatchNorm(*split, *MakeBatchNormSetting("split", 0, 2, nullptr));
  const at::Tensor x = at::randn({6, 3, 4, 4}).requires_grad_();
  const at::Tensor upstream = at::randn({6, 3, 4, 4});
  const at::Tensor y = split->forward(x);
  (y * upstream).sum().backward();
  // Reference: samples {0, 2, 4} and {1, 3, 5}, each through its own copy of the BN.
  at::Tensor mean_sum = at::zeros({3}), var_sum = at::zeros({3}), weight_grad = at::zeros({3});
  for (int64_t j = 0; j < 2; ++j) {
    torch::nn::BatchNorm2d copy(3);
    {
      torch::NoGradGuard no_grad;
      copy->weight.copy_(reference->weight);
      copy->bias.copy_(reference->bias);
    }
    const at::Tensor index = at::arange(j, 6, 2, at::kLong);
    const at::Tensor xj = x.detach().index_select(0, index).requires_grad_();
    const at::Tensor yj = copy->forward(xj);
    EXPECT_TRUE(at::allclose(y.detach().index_select(0, index), yj.detach(), 1e-5, 1e-6));
    (yj * upstream.index_select(0, index)).sum().backward();
    EXPECT_TRUE(at::allclose(x.grad().index_select(0, index), xj.grad(), 1e-4, 1e-6));
    mean_sum += copy->running_mean;
    var_sum += copy->running_var;
    weight_grad += copy->weight.grad();
  }
  EXPECT_TRUE(at::allclose(split->running_mean, mean_sum / 2, 1e-5, 1e-7));
  EXPECT_TRUE(at::allclose(split->running_var, var_sum / 2, 1e-5, 1e-7));
  EXPECT_TRUE(at::allclose(split->weight.grad(), weight_grad, 1e-4, 1e-5));
  // Eval mode uses the pooled running statistics like any BN.
  split->eval();
  EXPECT_EQ(split->forward(at::randn({1, 3, 2, 2})).size(0), 1);
}

// One call on interleaved views equals one torch.nn.BatchNorm call per view: outputs,
// gradients, running statistics (updated view after view) and the batch count, for 2d
// and 1d layers, with a momentum and with the cumulative average (momentum None).
TEST(BatchNormTest, InterleavedViewsEqualOneCallPerView) {
  for (const bool cumulative : {false, true}) {
    for (const int spatial_dims : {1, 2}) {
      SCOPED_TRACE(std::string(cumulative ? "momentum None, " : "momentum 0.1, ") +
                   (spatial_dims == 2 ? "2d" : "1d"));
      auto options = torch::nn::BatchNormOptions(3);
      if (cumulative) options.momentum(c10::nullopt);
      BatchNorm ours(options, spatial_dims);
      BatchNorm reference(options, spatial_dims);
      {
        torch::NoGradGuard no_grad;
        ours->weight.uniform_(0.5, 1.5);
        ours->bias.uniform_(-0.5, 0.5);
        reference->weight.copy_(ours->weight);
        reference->bias.copy_(ours->bias);
      }
      const std::vector<int64_t> shape =
          spatial_dims == 2 ? std::vector<int64_t>{4, 3, 5, 5} : std::vector<int64_t>{4, 3};
      for (int step = 0; step < 2; ++step) {
        const at::Tensor view1 = at::randn(shape) + 1.0, view2 = at::randn(shape) * 2.0;
        const at::Tensor up1 = at::randn(shape), up2 = at::randn(shape);
        // Reference: one call per view.
        const at::Tensor x1 = view1.clone().requires_grad_(), x2 = view2.clone().requires_grad_();
        const at::Tensor y1 = reference->forward(x1), y2 = reference->forward(x2);
        ((y1 * up1).sum() + (y2 * up2).sum()).backward();
        // Ours: the views interleaved (sample 2i of view 1, 2i + 1 of view 2).
        const at::Tensor both = at::stack({view1, view2}, 1).flatten(0, 1).requires_grad_();
        at::Tensor y;
        {
          InterleavedViewsScope per_view(2);
          y = ours->forward(both);
        }
        EXPECT_EQ(InterleavedViewsScope::Current(), 1);
        (y * at::stack({up1, up2}, 1).flatten(0, 1)).sum().backward();
        const at::Tensor y_views = y.detach().unflatten(0, {-1, 2});
        const at::Tensor grad_views = both.grad().unflatten(0, {-1, 2});
        EXPECT_TRUE(at::allclose(y_views.select(1, 0), y1.detach(), 1e-5, 1e-6));
        EXPECT_TRUE(at::allclose(y_views.select(1, 1), y2.detach(), 1e-5, 1e-6));
        EXPECT_TRUE(at::allclose(grad_views.select(1, 0), x1.grad(), 1e-4, 1e-6));
        EXPECT_TRUE(at::allclose(grad_views.select(1, 1), x2.grad(), 1e-4, 1e-6));
        EXPECT_TRUE(at::allclose(ours->running_mean, reference->running_mean, 1e-5, 1e-7));
        EXPECT_TRUE(at::allclose(ours->running_var, reference->running_var, 1e-5, 1e-7));
        EXPECT_EQ(ours->num_batches_tracked.item<int64_t>(),
                  reference->num_batches_tracked.item<int64_t>());
      }
      EXPECT_EQ(ours->num_batches_tracked.item<int64_t>(), 4);
      EXPECT_TRUE(at::allclose(ours->weight.grad(), reference->weight.grad(), 1e-4, 1e-5));
      EXPECT_TRUE(at::allclose(ours->bias.grad(), reference->bias.grad(), 1e-4, 1e-5));
      // Eval mode ignores the scope.
      ours->eval();
      reference->eval();
      InterleavedViewsScope per_view(2);
      const at::Tensor x = at::randn(shape);
      EXPECT_TRUE(at::allclose(ours->forward(x), reference->forward(x), 1e-5, 1e-6));
    }
  }
  // Layers that pool statistics over processes or split the batch cannot take views.
  BatchNorm split = BatchNorm2d(3);
  ConfigureBatchNorm(*split, *MakeBatchNormSetting("split", 0, 2, nullptr));
  InterleavedViewsScope per_view(2);
  try {
    split->forward(at::randn({4, 3, 2, 2}));
    ADD_FAILURE() << "split BN under interleaved views must throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(),
                 "one batch of several views needs per-process BatchNorm statistics, but this "
                 "layer's are split");
  }
  BatchNorm odd = BatchNorm1d(3);
  EXPECT_THROW(odd->forward(at::randn({5, 3})), std::invalid_argument);
}

TEST(BatchNormTest, BadSettingsAndInputsGiveOneClearError) {
  auto local = distributed::MakeLocalCommunicator();
  absl::StatusOr<BatchNormSetting> bad_mode = MakeBatchNormSetting("batch", 0, 1, local);
  ASSERT_FALSE(bad_mode.ok());
  EXPECT_EQ(std::string(bad_mode.status().message()),
            "BatchNorm mode must be local, sync or split, got \"batch\"");
  absl::StatusOr<BatchNormSetting> too_big = MakeBatchNormSetting("sync", 2, 1, local);
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(std::string(too_big.status().message()),
            "SyncBN group size 2 does not divide the world size 1");
  EXPECT_FALSE(MakeBatchNormSetting("sync", -2, 1, local).ok());
  EXPECT_FALSE(MakeBatchNormSetting("split", 0, 0, local).ok());

  BatchNorm bn = BatchNorm2d(3);
  try {
    bn->forward(at::randn({4, 3}));
    ADD_FAILURE() << "a 2-D input to BatchNorm2d must throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(),
                 "BatchNorm2d of 3 channels got an input of 2 dimensions with 3 channels");
  }
  ConfigureBatchNorm(*bn, *MakeBatchNormSetting("split", 0, 4, local));
  try {
    bn->forward(at::randn({6, 3, 2, 2}));
    ADD_FAILURE() << "a batch of 6 cannot split into 4";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "split BatchNorm: a batch of 6 does not divide into 4 splits");
  }
}

// Small integers after a ReLU: most windows hold several equal maxima (zeros above all),
// so the choice among them, which decides where gradients go, is exercised.
at::Tensor TiedMaps(at::IntArrayRef sizes) {
  return at::relu(at::randint(-4, 4, sizes)).to(at::kFloat);
}

TEST(MaxPoolTest, OutputsAndGradientsEqualLibTorchBitForBit) {
  torch::manual_seed(3);
  struct Case {
    std::vector<int64_t> sizes;
    int64_t kernel, stride, padding;
  };
  for (const Case& c : std::vector<Case>{{{4, 5, 32, 32}, 3, 2, 1},
                                         {{2, 3, 9, 11}, 3, 2, 1},
                                         {{2, 3, 10, 13}, 3, 2, 1},
                                         {{1, 2, 1, 2}, 3, 2, 1},
                                         {{2, 3, 7, 6}, 2, 2, 0},
                                         {{1, 4, 8, 5}, 3, 1, 1},
                                         {{3, 2, 10, 9}, 5, 3, 2}}) {
    SCOPED_TRACE(::testing::Message() << "sizes " << at::IntArrayRef(c.sizes) << " kernel "
                                      << c.kernel << " stride " << c.stride);
    const at::Tensor values = TiedMaps(c.sizes).add(at::randn(c.sizes).mul(0.01).round());
    const at::Tensor ours_input = values.clone().requires_grad_();
    const at::Tensor their_input = values.clone().requires_grad_();
    ASSERT_TRUE(UsesOwnMaxPoolKernel(ours_input));
    const at::Tensor ours = MaxPool2d(ours_input, c.kernel, c.stride, c.padding);
    const at::Tensor theirs = at::max_pool2d(their_input, {c.kernel, c.kernel},
                                             {c.stride, c.stride}, {c.padding, c.padding});
    ASSERT_EQ(ours.sizes(), theirs.sizes());
    EXPECT_TRUE(at::equal(ours, theirs));
    // Overlapping windows add several gradients into one position: same order, same sums.
    const at::Tensor upstream = at::randn(theirs.sizes());
    ours.backward(upstream);
    theirs.backward(upstream);
    EXPECT_TRUE(at::equal(ours_input.grad(), their_input.grad()));
    EXPECT_GT(ours_input.grad().ne(0).sum().item<int64_t>(), 0);
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(at::equal(MaxPool2d(values, c.kernel, c.stride, c.padding), theirs));
  }
}

TEST(MaxPoolTest, NanWinsItsWindowAsInLibTorch) {
  at::Tensor values = at::randn({1, 2, 6, 6});
  values[0][0][2][3] = std::nan("");
  values[0][1][0][0] = std::nan("");
  const at::Tensor ours = MaxPool2d(values, 3, 2, 1);
  const at::Tensor theirs = at::max_pool2d(values, {3, 3}, {2, 2}, {1, 1});
  EXPECT_TRUE(at::equal(at::isnan(ours), at::isnan(theirs)));
  EXPECT_EQ(at::isnan(ours).sum().item<int64_t>(), 3);  // one NaN in two windows, one in one
  EXPECT_TRUE(at::equal(ours.nan_to_num(0), theirs.nan_to_num(0)));
}

TEST(MaxPoolTest, OtherLayoutsAndBadSettingsGoToLibTorch) {
  const at::Tensor channels_last =
      at::randn({2, 3, 8, 8}).contiguous(at::MemoryFormat::ChannelsLast);
  EXPECT_FALSE(UsesOwnMaxPoolKernel(channels_last));
  EXPECT_TRUE(at::equal(MaxPool2d(channels_last, 3, 2, 1),
                        at::max_pool2d(channels_last, {3, 3}, {2, 2}, {1, 1})));
  EXPECT_FALSE(UsesOwnMaxPoolKernel(at::randn({2, 3, 8, 8}, at::kDouble)));
  // LibTorch's own message for padding over half the kernel.
  EXPECT_THROW(MaxPool2d(at::randn({1, 1, 8, 8}), 3, 2, 2), c10::Error);
}

}  // namespace
}  // namespace ssl::nn
