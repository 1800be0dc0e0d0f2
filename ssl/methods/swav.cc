#include "ssl/methods/swav.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/bincount.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/log_softmax.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ssl/core/device.h"
#include "ssl/methods/sinkhorn.h"
#include "ssl/nn/batch_norm.h"

namespace ssl::methods {
namespace fs = std::filesystem;

absl::StatusOr<std::shared_ptr<SwavImpl>> SwavImpl::Create(
    const SwavOptions& options, std::shared_ptr<distributed::Communicator> communicator) {
  absl::StatusOr<int64_t> width = backbones::BackboneFeatureDim(options.arch);
  if (!width.ok()) return width.status();
  const std::vector<int64_t>& dims = options.head.dims();
  if (dims.empty() || dims[0] != *width) {
    return absl::InvalidArgumentError(absl::StrCat(
        "swav_head dims start with ", dims.empty() ? 0 : dims[0], " but the trunk ", options.arch,
        " gives ", *width, " features; the first dim must equal the trunk's width"));
  }
  for (int64_t k : options.head.num_clusters()) {
    if (k < 1) {
      return absl::InvalidArgumentError(absl::StrCat("num_clusters must be >= 1, got ", k));
    }
  }
  if (options.head.num_clusters().empty()) {
    return absl::InvalidArgumentError("SwAV needs at least one prototype layer (num_clusters)");
  }
  int crops = 0;
  for (int count : options.crops.counts) crops += count;
  if (crops < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("SwAV needs at least 2 crops per image, got ", crops));
  }
  if (options.crops_for_assign.empty()) {
    return absl::InvalidArgumentError("crops_for_assign is empty");
  }
  for (int crop : options.crops_for_assign) {
    if (crop < 0 || crop >= crops) {
      return absl::InvalidArgumentError(absl::StrCat("crops_for_assign holds crop ", crop,
                                                     ", outside the ", crops, " crops [0, ",
                                                     crops - 1, "]"));
    }
  }
  if (!(options.temperature > 0) || !(options.epsilon > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("temperature and epsilon must be > 0, got ",
                                                   options.temperature, " and ", options.epsilon));
  }
  if (options.num_iters < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_iters must be >= 0, got ", options.num_iters));
  }
  if (options.queue_length < 0 || options.queue_length % communicator->world_size() != 0) {
    return absl::InvalidArgumentError(absl::StrCat("queue_length ", options.queue_length,
                                                   " must be >= 0 and split evenly over the ",
                                                   communicator->world_size(), " processes"));
  }
  return std::shared_ptr<SwavImpl>(new SwavImpl(options, std::move(communicator)));
}

SwavImpl::SwavImpl(const SwavOptions& options,
                   std::shared_ptr<distributed::Communicator> communicator)
    : options_(options), communicator_(std::move(communicator)) {
  backbones::BackboneOptions trunk_options;
  trunk_options.cifar_stem = options.cifar_stem;
  trunk_options.zero_init_residual = options.zero_init_residual;
  backbone_ = *backbones::CreateBackbone(options.arch, trunk_options);
  // VISSL's names: trunk._feature_blocks.<trunk>, heads.0.<head>.
  auto trunk = register_module("trunk", std::make_shared<torch::nn::Module>());
  trunk->register_module("_feature_blocks", backbone_);
  head = nn::SwavHead(options.head);
  register_module("heads", torch::nn::ModuleList(head));
  local_queue_length_ = options.queue_length / communicator_->world_size();
  if (local_queue_length_ > 0) {
    const int64_t dim = options.head.dims().back();
    const std::vector<int64_t> shape = {static_cast<int64_t>(options.crops_for_assign.size()),
                                        local_queue_length_, dim};
    if (options.queue_rule == SwavOptions::QueueRule::kVissl) {
      // VISSL's initialize_queue: uniform in +-stdv, stdv = 1 / sqrt(dim / 3).
      const double stdv = 1.0 / std::sqrt(dim / 3.0);
      queue_ = at::rand(shape).mul_(2 * stdv).add_(-stdv);
      queue_filled_ = local_queue_length_;
    } else {
      queue_ = at::zeros(shape);
    }
  }
}

int SwavImpl::num_crops() const {
  int crops = 0;
  for (int count : options_.crops.counts) crops += count;
  return crops;
}

data::ViewRecipe SwavImpl::Views() const { return data::MultiCropViews(options_.crops); }

void SwavImpl::BeforeStep(const StepContext& step) {
  if (options_.normalize_last_layer) head->NormalizePrototypes();
  queue_active_ = local_queue_length_ > 0 && step.global_step >= options_.queue_start_iter;
  // VISSL's queue counts as full from the start (random rows).
  use_queue_ = queue_active_ && queue_filled_ >= local_queue_length_;
}

at::Tensor SwavImpl::SwappedPredictionLoss(const at::Tensor& scores,
                                           const std::vector<at::Tensor>& queue_scores,
                                           bool hard_assignment) {
  const int crops = num_crops();
  TORCH_CHECK(scores.size(0) % crops == 0, "SwAV scores of ", scores.size(0),
              " rows do not split into ", crops, " crops");
  const int64_t b = scores.size(0) / crops;
  SinkhornOptions sinkhorn;
  sinkhorn.num_iters = options_.num_iters;
  sinkhorn.epsilon = options_.epsilon;
  sinkhorn.double_precision = options_.use_double_precision;
  sinkhorn.hard_assignment = hard_assignment;
  last_codes_.clear();
  at::Tensor total;
  for (size_t i = 0; i < options_.crops_for_assign.size(); ++i) {
    const int assign = options_.crops_for_assign[i];
    at::Tensor codes;
    {
      c10::AutoGradMode no_grad(false);
      at::Tensor assign_scores = scores.narrow(0, b * assign, b).detach();
      if (!queue_scores.empty()) assign_scores = at::cat({assign_scores, queue_scores[i]});
      codes = DistributedSinkhorn(assign_scores, sinkhorn, *communicator_, b);
    }
    last_codes_.push_back(codes);
    at::Tensor subloss;
    for (int crop = 0; crop < crops; ++crop) {
      if (crop == assign) continue;
      at::Tensor predicted = scores.narrow(0, b * crop, b);
      if (options_.use_double_precision) {
        predicted = predicted.to(at::kDouble);
      } else if (IsHalfPrecision(predicted.scalar_type())) {
        predicted = predicted.to(at::kFloat);  // log-softmax in fp32, as autocast runs it
      }
      const at::Tensor log_probs = at::log_softmax(predicted / options_.temperature, 1);
      // Summed in the codes' type (float32 in training), as VISSL does.
      const at::Tensor term = (codes * log_probs).sum(1, false, codes.scalar_type()).mean().neg();
      subloss = subloss.defined() ? subloss + term : term;
    }
    subloss = subloss / (crops - 1);
    total = total.defined() ? total + subloss : subloss;
  }
  return total / static_cast<double>(options_.crops_for_assign.size());
}

at::Tensor SwavImpl::Loss(const std::vector<at::Tensor>& crop_groups, const StepContext& step) {
  // The trunk once per resolution group; the head (and its BatchNorm) on all crops.
  std::vector<at::Tensor> features;
  for (const at::Tensor& group : crop_groups) features.push_back(backbone_->Features(group));
  const at::Tensor all = features.size() == 1 ? features[0] : at::cat(features);
  const nn::SwavHeadOutput out = head->forward(all);
  const int64_t b = all.size(0) / num_crops();
  // The queue is not a module buffer (VISSL keeps it in the loss): follow the model's
  // device, and its precision when that changed (fp32 under mixed precision, as VISSL's
  // float buffer stays).
  const at::ScalarType queue_type =
      IsHalfPrecision(out.embedding.scalar_type()) ? at::kFloat : out.embedding.scalar_type();
  if (queue_.defined() &&
      (queue_.scalar_type() != queue_type || queue_.device() != out.embedding.device())) {
    queue_ = queue_.to(out.embedding.device(), queue_type);
  }
  const bool hard = step.global_step < options_.temp_hard_assignment_iters;
  at::Tensor loss;
  std::vector<at::Tensor> first_layer_codes;
  for (size_t h = 0; h < out.scores.size(); ++h) {
    std::vector<at::Tensor> queue_scores;
    if (use_queue_) {
      // Past embeddings scored with the current (normalized) prototypes.
      c10::AutoGradMode no_grad(false);
      for (int64_t i = 0; i < queue_.size(0); ++i) {
        queue_scores.push_back(head->prototypes[h]->forward(queue_[i]));
      }
    }
    const at::Tensor head_loss = SwappedPredictionLoss(out.scores[h], queue_scores, hard);
    if (h == 0) {
      last_scores_ = out.scores[0].detach();
      first_layer_codes = last_codes_;
    }
    loss = loss.defined() ? loss + head_loss : head_loss;
  }
  loss = loss / static_cast<double>(out.scores.size());
  last_codes_ = first_layer_codes;
  last_embedding_ = out.embedding.detach();
  last_loss_ = loss.detach();
  if (queue_active_) Enqueue(out.embedding.detach(), b);
  iterations_done_ = step.global_step + 1;
  return loss;
}

void SwavImpl::Enqueue(const at::Tensor& embedding, int64_t batch) {
  TORCH_CHECK(local_queue_length_ % batch == 0, "the SwAV queue of ", local_queue_length_,
              " embeddings per process is not a multiple of the batch of ", batch,
              " per process; round queue_length to a multiple of the global batch");
  c10::AutoGradMode no_grad(false);
  for (size_t i = 0; i < options_.crops_for_assign.size(); ++i) {
    at::Tensor queue = queue_[static_cast<int64_t>(i)];
    const int64_t crop = options_.crops_for_assign[i];
    // Newest first: shift by one batch, then write this batch at the front.
    queue.narrow(0, batch, local_queue_length_ - batch)
        .copy_(queue.narrow(0, 0, local_queue_length_ - batch).clone());
    queue.narrow(0, 0, batch).copy_(embedding.narrow(0, crop * batch, batch));
  }
  queue_filled_ = std::min(local_queue_length_, queue_filled_ + batch);
}

std::vector<ParameterGroup> SwavImpl::ParameterGroups() {
  // VISSL's default groups: trunk and head, each regularized or not (BN and biases
  // when regularize_bn / regularize_bias are off); the frozen prototypes apart.
  ParameterGroup trunk_regularized{"trunk_regularized"};
  ParameterGroup trunk_unregularized{"trunk_unregularized"};
  trunk_unregularized.no_weight_decay = true;
  ParameterGroup head_regularized{"head_regularized"};
  ParameterGroup head_unregularized{"head_unregularized"};
  head_unregularized.no_weight_decay = true;
  ParameterGroup prototypes{"prototypes"};
  prototypes.frozen_iterations = options_.prototypes_frozen_iters;
  // non_regularized_parameters: VISSL matches substrings of the parameter names.
  const auto named_unregularized = [this](const std::string& name) {
    for (const std::string& part : options_.non_regularized_parameters) {
      if (name.find(part) != std::string::npos) return true;
    }
    return false;
  };
  for (const auto& item : named_modules("", /*include_self=*/false)) {
    const bool in_head = item.key().rfind("heads", 0) == 0;
    ParameterGroup& regularized = in_head ? head_regularized : trunk_regularized;
    ParameterGroup& unregularized = in_head ? head_unregularized : trunk_unregularized;
    // Where a parameter goes by its kind, unless its name opts it out of weight decay.
    const auto add = [&](const at::Tensor& parameter, const char* suffix, bool decayed) {
      const bool by_name = named_unregularized(item.key() + "." + suffix);
      (decayed && !by_name ? regularized : unregularized).parameters.push_back(parameter);
    };
    const std::shared_ptr<torch::nn::Module>& module = item.value();
    if (auto* linear = module->as<torch::nn::Linear>()) {
      if (item.key().find("prototypes") != std::string::npos) {
        prototypes.parameters.push_back(linear->weight);
        if (named_unregularized(item.key() + ".weight")) prototypes.no_weight_decay = true;
      } else {
        add(linear->weight, "weight", true);
      }
      if (linear->bias.defined()) add(linear->bias, "bias", options_.regularize_bias);
    } else if (auto* conv = module->as<torch::nn::Conv2d>()) {
      add(conv->weight, "weight", true);
      if (conv->bias.defined()) add(conv->bias, "bias", options_.regularize_bias);
    } else if (auto* bn = module->as<nn::BatchNorm>()) {
      if (bn->weight.defined()) add(bn->weight, "weight", options_.regularize_bn);
      if (bn->bias.defined()) {
        add(bn->bias, "bias", options_.regularize_bn && options_.regularize_bias);
      }
    }
  }
  std::vector<ParameterGroup> groups;
  for (ParameterGroup* group : {&trunk_regularized, &trunk_unregularized, &head_regularized,
                                &head_unregularized, &prototypes}) {
    if (!group->parameters.empty()) groups.push_back(std::move(*group));
  }
  return groups;
}

c10::impl::GenericDict SwavImpl::ExtraState() {
  c10::impl::GenericDict state = NewStateDict();
  state.insert("swav_criterion.num_iteration", at::full({1}, iterations_done_, at::kLong));
  if (local_queue_length_ == 0) return state;
  // VISSL's entries hold one process's queue; ours also keep every process's.
  state.insert("swav_criterion.local_emb_queue", queue_.clone());
  {
    c10::AutoGradMode no_grad(false);
    for (size_t h = 0; h < head->prototypes.size(); ++h) {
      std::vector<at::Tensor> scores;
      for (int64_t i = 0; i < queue_.size(0); ++i) {
        scores.push_back(head->prototypes[h]->forward(queue_[i]).unsqueeze(0));
      }
      state.insert(absl::StrCat("swav_criterion.local_queue", h), at::cat(scores));
    }
  }
  state.insert("ssl_queue_by_rank", communicator_->AllGather(queue_.unsqueeze(0)));
  state.insert("ssl_queue_filled", queue_filled_);
  return state;
}

absl::Status SwavImpl::LoadExtraState(const c10::impl::GenericDict& state) {
  if (local_queue_length_ == 0) return absl::OkStatus();
  if (!state.contains("ssl_queue_by_rank") || !state.contains("ssl_queue_filled")) {
    // VISSL's own files keep one process's queue, newest rows first: restorable exactly
    // for a single process.
    if (state.contains("swav_criterion.local_emb_queue") && communicator_->world_size() == 1) {
      const at::Tensor saved = state.at("swav_criterion.local_emb_queue").toTensor();
      if (saved.sizes() != queue_.sizes()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "the checkpoint's SwAV queue has shape ", c10::str(saved.sizes()), "; this run needs ",
            c10::str(queue_.sizes()), " (crops_for_assign, queue_length, head)"));
      }
      queue_.copy_(saved);
      queue_filled_ = 0;
      if (options_.queue_rule == SwavOptions::QueueRule::kVissl) {
        queue_filled_ = local_queue_length_;  // random rows count as full
      } else {
        // The SwAV repo's rule: zeros where it has not been filled yet.
        const at::Tensor filled_rows = saved[0].ne(0).any(1);
        while (queue_filled_ < local_queue_length_ && filled_rows[queue_filled_].item<bool>()) {
          ++queue_filled_;
        }
      }
      return absl::OkStatus();
    }
    // Otherwise (written before the queue started, or without one): the queue as this run
    // built it (random rows, or empty under the SwAV repo's rule).
    return absl::OkStatus();
  }
  const at::Tensor by_rank = state.at("ssl_queue_by_rank").toTensor();
  const std::vector<int64_t> expected = {communicator_->world_size(), queue_.size(0),
                                         queue_.size(1), queue_.size(2)};
  if (by_rank.sizes().vec() != expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the checkpoint's SwAV queues have shape ", c10::str(by_rank.sizes()),
        "; this run needs [processes, crops_for_assign, local length, dim] = ",
        c10::str(at::IntArrayRef(expected)), " (same processes, queue_length and head)"));
  }
  queue_.copy_(by_rank[communicator_->rank()]);
  queue_filled_ = state.at("ssl_queue_filled").toInt();
  return absl::OkStatus();
}

std::vector<std::pair<std::string, BackboneLocation>> SwavImpl::Backbones() const {
  return {{"trunk", {options_.arch, options_.cifar_stem, "trunk._feature_blocks.", {}}}};
}

std::vector<std::pair<std::string, double>> SwavImpl::ScheduledValues() const {
  std::vector<std::pair<std::string, double>> values;
  if (local_queue_length_ > 0) values.emplace_back("queue_used", use_queue_ ? 1.0 : 0.0);
  return values;
}

std::vector<Indicator> SwavImpl::Indicators() const {
  if (!last_scores_.defined() || last_codes_.empty()) return {};
  c10::AutoGradMode no_grad(false);
  // The trivial loss: uniform predictions over every layer's prototypes.
  double ln_k = 0;
  for (int64_t k : options_.head.num_clusters()) ln_k += std::log(static_cast<double>(k));
  ln_k /= static_cast<double>(options_.head.num_clusters().size());
  const at::Tensor argmax = last_scores_.argmax(1);
  const int64_t used = at::bincount(argmax, {}, last_scores_.size(1)).gt(0).sum().item<int64_t>();
  return {{"codes_perplexity", MeanRowPerplexity(last_codes_[0])},
          {"codes_batch_perplexity", PerplexityOfMeanRow(last_codes_[0])},
          {"prediction_entropy", MeanSoftmaxEntropy(last_scores_ / options_.temperature)},
          {"prototypes_used", static_cast<double>(used)},
          {"embedding_spread", EmbeddingSpread(last_embedding_), true},
          {"loss_minus_ln_k", last_loss_.item<double>() - ln_k, true}};
}

std::vector<std::string> SwavImpl::DumpDiagnostics(const std::string& dir) {
  std::vector<std::string> written;
  auto save = [&written](const at::Tensor& tensor, const std::string& path) {
    if (!tensor.defined()) return;
    const std::vector<char> bytes = torch::jit::pickle_save(tensor);
    std::ofstream file(path, std::ios::binary);
    file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (file) written.push_back(path);
  };
  const std::string rank = absl::StrCat("rank", communicator_->rank());
  for (size_t i = 0; i < last_codes_.size(); ++i) {
    save(last_scores_, (fs::path(dir) / absl::StrCat(rank, "_scores", i, ".pth")).string());
    save(last_codes_[i], (fs::path(dir) / absl::StrCat(rank, "_assignments", i, ".pth")).string());
  }
  return written;
}

nlohmann::json SwavImpl::Config() const {
  const std::vector<int>& sizes = options_.crops.sizes;
  return {
      {"arch", options_.arch},
      {"cifar_stem", options_.cifar_stem},
      {"image_size", sizes.empty() ? 224 : *std::max_element(sizes.begin(), sizes.end())},
      {"head_dims", options_.head.dims()},
      {"num_prototypes", options_.head.num_clusters()},
      {"use_bn", options_.head.use_bn()},
      {"temperature", options_.temperature},
      {"epsilon", options_.epsilon},
      {"num_iters", options_.num_iters},
      {"use_double_precision", options_.use_double_precision},
      {"normalize_last_layer", options_.normalize_last_layer},
      {"crops_for_assign", options_.crops_for_assign},
      {"num_crops", options_.crops.counts},
      {"size_crops", options_.crops.sizes},
      {"queue_length", options_.queue_length},
      {"queue_start_iter", options_.queue_start_iter},
      {"queue_rule", options_.queue_rule == SwavOptions::QueueRule::kVissl ? "vissl" : "swav_repo"},
      {"non_regularized_parameters", options_.non_regularized_parameters},
      {"prototypes_frozen_iters", options_.prototypes_frozen_iters}};
}

}  // namespace ssl::methods
