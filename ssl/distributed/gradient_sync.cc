#include "ssl/distributed/gradient_sync.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <stdexcept>

namespace ssl::distributed {

// Runs after a parameter's AccumulateGrad node, when .grad() holds this backward's value.
class GradientAverager::ReadyHook : public torch::autograd::FunctionPostHook {
 public:
  ReadyHook(GradientAverager* owner, size_t parameter) : owner_(owner), parameter_(parameter) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override {
    owner_->OnGradientReady(parameter_);
    return outputs;
  }

 private:
  GradientAverager* owner_;
  size_t parameter_;
};

GradientAverager::GradientAverager(std::vector<at::Tensor> parameters,
                                   std::shared_ptr<Communicator> communicator, int64_t bucket_bytes,
                                   bool overlap)
    : communicator_(std::move(communicator)) {
  for (at::Tensor& p : parameters) {
    if (p.requires_grad()) parameters_.push_back(p);
  }
  if (communicator_->world_size() == 1) return;
  bucket_of_.resize(parameters_.size());
  ready_.assign(parameters_.size(), false);
  for (size_t i = parameters_.size(); i-- > 0;) {
    const int64_t bytes = parameters_[i].numel() * parameters_[i].element_size();
    if (buckets_.empty() ||
        (buckets_.back().numel * parameters_[i].element_size() + bytes > bucket_bytes &&
         !buckets_.back().parameters.empty())) {
      buckets_.emplace_back();
    }
    buckets_.back().parameters.push_back(i);
    buckets_.back().numel += parameters_[i].numel();
    bucket_of_[i] = buckets_.size() - 1;
  }
  for (Bucket& bucket : buckets_) bucket.remaining = static_cast<int>(bucket.parameters.size());
  if (!overlap) return;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    std::shared_ptr<torch::autograd::Node> accumulator =
        torch::autograd::impl::grad_accumulator(parameters_[i]);
    hook_keys_.push_back(accumulator->add_post_hook(std::make_unique<ReadyHook>(this, i)));
    accumulators_.push_back(std::move(accumulator));
  }
}

GradientAverager::~GradientAverager() {
  for (size_t i = 0; i < accumulators_.size(); ++i) accumulators_[i]->del_post_hook(hook_keys_[i]);
}

void GradientAverager::OnGradientReady(size_t parameter) {
  if (ready_[parameter]) {
    throw std::logic_error(
        "a parameter received two gradients before GradientAverager::Synchronize; call it "
        "after every backward");
  }
  ready_[parameter] = true;
  --buckets_[bucket_of_[parameter]].remaining;
  StartReadyBuckets();
}

void GradientAverager::StartReadyBuckets() {
  while (next_bucket_ < buckets_.size() && buckets_[next_bucket_].remaining == 0) {
    Start(buckets_[next_bucket_++]);
  }
}

void GradientAverager::Start(Bucket& bucket) {
  std::vector<at::Tensor> pieces;
  pieces.reserve(bucket.parameters.size());
  for (size_t i : bucket.parameters) {
    const at::Tensor& grad = parameters_[i].grad();
    // Flattened in the logical (NCHW) order whatever the layout: a channels-last
    // parameter's zeros_like is not viewable as 1-D.
    const at::Tensor& parameter = parameters_[i];
    pieces.push_back(grad.defined() ? grad.reshape({-1})
                                    : at::zeros({parameter.numel()}, parameter.options()));
  }
  bucket.flat = at::cat(pieces);
  bucket.reduction = communicator_->AllReduceSumAsync(bucket.flat);
}

void GradientAverager::Synchronize() {
  if (buckets_.empty()) return;
  overlapped_buckets_ = static_cast<int>(next_bucket_);
  while (next_bucket_ < buckets_.size()) Start(buckets_[next_bucket_++]);
  const double scale = 1.0 / communicator_->world_size();
  for (Bucket& bucket : buckets_) {
    bucket.reduction->Wait();
    bucket.flat.mul_(scale);
    int64_t offset = 0;
    for (size_t i : bucket.parameters) {
      at::Tensor& param = parameters_[i];
      const int64_t n = param.numel();
      const at::Tensor averaged = bucket.flat.narrow(0, offset, n).view(param.sizes());
      if (param.grad().defined()) {
        param.mutable_grad().copy_(averaged);
      } else {
        param.mutable_grad() = at::empty_like(param).copy_(averaged);  // the parameter's layout
      }
      offset += n;
    }
    bucket.reduction.reset();
    bucket.flat = at::Tensor();
    bucket.remaining = static_cast<int>(bucket.parameters.size());
  }
  std::fill(ready_.begin(), ready_.end(), false);
  next_bucket_ = 0;
}

}  // namespace ssl::distributed
