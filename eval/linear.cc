#include "eval/linear.h"

#include <ATen/Context.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/randperm.h>
#include <ATen/ops/topk.h>
#include <c10/core/GradMode.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/linear.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "eval/features.h"
#include "ssl/core/constants.h"
#include "ssl/core/logging.h"
#include "ssl/data/loader.h"
#include "ssl/data/views.h"
#include "ssl/nn/batch_norm.h"
#include "ssl/nn/state_dict.h"
#include "ssl/optim/optimizer.h"
#include "ssl/optim/schedules.h"

namespace ssl::eval {
namespace {

struct Accuracy {
  double top1 = 0, top5 = 0;
};

// Linear, optionally followed by BatchNorm1d (train mode while training, eval mode
// for validation).
struct Classifier {
  torch::nn::Linear linear{nullptr};
  nn::BatchNorm bn{nullptr};
  at::Tensor operator()(const at::Tensor& x) { return bn ? bn->forward(linear(x)) : linear(x); }
  std::vector<at::Tensor> parameters() const {
    std::vector<at::Tensor> params = linear->parameters();
    if (bn) {
      for (const at::Tensor& p : bn->parameters()) params.push_back(p);
    }
    return params;
  }
  void to(c10::Device device) {
    linear->to(device);
    if (bn) bn->to(device);
  }
  void train(bool on) {
    if (bn) bn->train(on);
  }
};

double ScheduledLr(const LinearEvalOptions& options, double peak_lr, int epoch, int64_t step,
                   int64_t total_steps) {
  if (options.schedule == "cos_iter") {
    return peak_lr * 0.5 * (1.0 + std::cos(kPi * step / total_steps));
  }
  if (options.schedule == "multistep") {
    double lr = peak_lr;
    for (int milestone : options.milestones) {
      if (epoch >= milestone) lr *= 0.1;
    }
    return lr;
  }
  return optim::CosineLearningRate(peak_lr, options.epochs, epoch);
}

Accuracy Evaluate(Classifier& classifier, const at::Tensor& features, const at::Tensor& labels) {
  c10::AutoGradMode no_grad(false);
  classifier.train(false);
  const at::Tensor logits = classifier(features);
  classifier.train(true);
  const int top = std::min<int64_t>(5, logits.size(1));
  const at::Tensor hits = std::get<1>(at::topk(logits, top, 1)).eq(labels.unsqueeze(1));
  const double n = static_cast<double>(labels.size(0));
  return {100.0 * hits.narrow(1, 0, 1).sum().item<int64_t>() / n,
          100.0 * hits.sum().item<int64_t>() / n};
}

}  // namespace

nlohmann::json LinearEvalResult::ToJson() const {
  return {{"top1", top1},
          {"top5", top5},
          {"best_top1", best_top1},
          {"best_top5", best_top5},
          {"best_epoch", best_epoch},
          {"epochs", epochs},
          {"train_loss", train_loss},
          {"mode", mode},
          {"frozen_weights_unchanged", frozen_weights_unchanged}};
}

absl::StatusOr<LinearEvalResult> RunLinearEval(backbones::Backbone& backbone,
                                               const data::ImageFolder& train,
                                               const data::ImageFolder& val,
                                               const LinearEvalOptions& options) {
  if (options.schedule != "cos_epoch" && options.schedule != "cos_iter" &&
      options.schedule != "multistep") {
    return absl::InvalidArgumentError(
        absl::StrCat("linear schedule must be cos_epoch, cos_iter or multistep, got \"",
                     options.schedule, "\""));
  }
  if (options.epochs < 1 || options.batch_size < 1 || !(options.base_lr > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("linear evaluation needs epochs >= 1, batch size >= 1 and lr > 0, got ",
                     options.epochs, ", ", options.batch_size, ", ", options.base_lr));
  }
  if (train.classes() != val.classes()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the class folders of ", train.root(), " and ", val.root(), " differ"));
  }
  // Frozen backbone: no gradients, eval mode throughout, and a snapshot to verify it.
  backbone.eval();
  for (at::Tensor& p : backbone.parameters()) p.set_requires_grad(false);
  std::vector<at::Tensor> snapshot;
  for (const auto& [key, tensor] : nn::StateDict(backbone)) snapshot.push_back(tensor.clone());

  const bool grouped_bn = options.classifier_bn && options.classifier_bn_samples > 0;
  if (grouped_bn && (options.batch_size % options.classifier_bn_samples != 0 ||
                     options.batch_size > static_cast<int64_t>(train.size()))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the classifier's BatchNorm groups of ", options.classifier_bn_samples,
        " samples need a batch that is a multiple of it and at most the ", train.size(),
        " training images, got ", options.batch_size));
  }
  at::manual_seed(options.seed);
  Classifier classifier;
  classifier.linear = torch::nn::Linear(backbone.feature_dim(), train.num_classes());
  if (options.classifier_bn) classifier.bn = nn::BatchNorm1d(train.num_classes());
  if (grouped_bn && options.batch_size > options.classifier_bn_samples) {
    nn::BatchNormSetting groups;
    groups.mode = nn::BatchNormMode::kSplit;
    groups.splits = static_cast<int>(options.batch_size / options.classifier_bn_samples);
    nn::ConfigureBatchNorm(*classifier.bn, groups);
  }
  {
    c10::AutoGradMode no_grad(false);
    torch::nn::init::normal_(classifier.linear->weight, 0.0, 0.01);
    torch::nn::init::zeros_(classifier.linear->bias);
  }
  // The classifier trains where the backbone's weights are (a GPU when the caller put
  // the backbone there); features and labels follow it batch by batch.
  const std::vector<at::Tensor> backbone_weights = backbone.parameters();
  const c10::Device device =
      backbone_weights.empty() ? c10::Device(c10::kCPU) : backbone_weights.front().device();
  classifier.to(device);
  optim::OptimizerOptions hyper;
  hyper.momentum = options.momentum;
  hyper.weight_decay = options.weight_decay;
  std::unique_ptr<optim::Optimizer> sgd = optim::MakeSgd(classifier.parameters(), hyper);
  const double peak_lr = optim::ScaledLearningRate(options.base_lr, options.batch_size);

  ExtractOptions extract;
  extract.batch_size = 256;
  extract.workers = options.workers;
  const data::ViewRecipe eval_views = data::EvalViews(options.image_size, options.resize);
  absl::StatusOr<FeatureSet> val_features = ExtractFeatures(backbone, val, eval_views, extract);
  if (!val_features.ok()) return val_features.status();
  FeatureSet train_features;
  std::unique_ptr<data::Loader> loader;
  int64_t batches_per_epoch = 0;
  if (options.cached_features) {
    absl::StatusOr<FeatureSet> extracted = ExtractFeatures(backbone, train, eval_views, extract);
    if (!extracted.ok()) return extracted.status();
    train_features = *std::move(extracted);
    batches_per_epoch = grouped_bn ? train.size() / options.batch_size
                                   : (train.size() + options.batch_size - 1) / options.batch_size;
  } else {
    data::LoaderOptions loader_options;
    loader_options.batch_size = std::min<int64_t>(options.batch_size, train.size());
    loader_options.num_workers = options.workers;
    loader_options.seed = options.seed;
    loader_options.drop_last = grouped_bn;
    loader_options.pin_memory = device.is_cuda();
    absl::StatusOr<std::unique_ptr<data::Loader>> created =
        data::Loader::Create(train, data::ClassifierTrainViews(options.image_size), loader_options);
    if (!created.ok()) return created.status();
    loader = *std::move(created);
    batches_per_epoch = loader->BatchesPerEpoch();
  }

  LinearEvalResult result;
  result.mode = options.cached_features ? "cached-features" : "augmented";
  result.epochs = options.epochs;
  const int64_t total_steps = static_cast<int64_t>(options.epochs) * batches_per_epoch;
  int64_t step = 0;
  for (int epoch = 0; epoch < options.epochs; ++epoch) {
    double loss_sum = 0;
    if (options.cached_features) {
      const at::Tensor order = at::randperm(train_features.labels.size(0), at::kLong);
      for (int64_t b = 0; b < batches_per_epoch; ++b) {
        const int64_t start = b * options.batch_size;
        const int64_t rows = std::min<int64_t>(options.batch_size, order.size(0) - start);
        const at::Tensor index = order.narrow(0, start, rows);
        sgd->set_lr(ScheduledLr(options, peak_lr, epoch, step++, total_steps));
        const at::Tensor loss = at::cross_entropy_loss(
            classifier(train_features.features.index_select(0, index).to(device)),
            train_features.labels.index_select(0, index).to(device));
        sgd->ZeroGrad();
        loss.backward();
        sgd->Step();
        loss_sum += loss.item<double>();
      }
    } else {
      loader->StartEpoch(epoch);
      data::Batch batch;
      while (true) {
        absl::StatusOr<bool> more = loader->Next(&batch);
        if (!more.ok()) return more.status();
        if (!*more) break;
        at::Tensor features;
        {
          c10::AutoGradMode no_grad(false);
          features = backbone.Features(batch.views[0].to(device, /*non_blocking=*/true));
        }
        sgd->set_lr(ScheduledLr(options, peak_lr, epoch, step++, total_steps));
        const at::Tensor loss =
            at::cross_entropy_loss(classifier(features), batch.labels.to(device));
        sgd->ZeroGrad();
        loss.backward();
        sgd->Step();
        loss_sum += loss.item<double>();
      }
    }
    result.train_loss = loss_sum / batches_per_epoch;
    if ((epoch + 1) % options.eval_every == 0 || epoch + 1 == options.epochs) {
      const Accuracy accuracy = Evaluate(classifier, val_features->features.to(device),
                                         val_features->labels.to(device));
      result.top1 = accuracy.top1;
      result.top5 = accuracy.top5;
      if (accuracy.top1 > result.best_top1) {
        result.best_top1 = accuracy.top1;
        result.best_top5 = accuracy.top5;
        result.best_epoch = epoch + 1;
      }
      if (options.verbose) {
        LOG(INFO) << absl::StrFormat("linear epoch %d/%d  loss %.4f  val top1 %.2f  top5 %.2f",
                                     epoch + 1, options.epochs, loss_sum / batches_per_epoch,
                                     accuracy.top1, accuracy.top5);
      }
    }
  }
  // MoCo v3's sanity check: the frozen part must be bit-identical.
  result.frozen_weights_unchanged = true;
  size_t i = 0;
  for (const auto& [key, tensor] : nn::StateDict(backbone)) {
    if (!tensor.equal(snapshot[i++])) {
      result.frozen_weights_unchanged = false;
      return absl::InternalError(absl::StrCat("sanity check failed: frozen weight ", key,
                                              " changed during linear classification"));
    }
  }
  return result;
}

}  // namespace ssl::eval
