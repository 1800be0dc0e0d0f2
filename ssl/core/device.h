// Where training runs and in which precision: the device (CPU, or the CUDA GPU of this
// process's LOCAL_RANK), autocast scopes that work with Debian's LibTorch 1.13 and with
// PyTorch 2.x's device-generic API, cuDNN settings, channels-last conversion, and moving
// checkpoint contents back to the host. Everything here compiles without CUDA; the CUDA
// paths are taken only when a CUDA LibTorch reports a GPU at run time.
#ifndef SSL_CORE_DEVICE_H_
#define SSL_CORE_DEVICE_H_

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>
#include <c10/core/Device.h>
#include <torch/nn/module.h>

#include <string>

#include "absl/status/statusor.h"

namespace ssl {

/// Mixed precision as the originals use it (torch.cuda.amp): autocast for the forward
/// passes, with a dynamic loss scaler for fp16 and none for bf16.
enum class MixedPrecision { kOff, kFloat16, kBFloat16 };

/// Whether this LibTorch was built with CUDA and sees at least one GPU.
bool CudaAvailable();
/// GPUs this process sees (0 without a CUDA LibTorch).
int VisibleCudaDevices();
/// The GPU index of local rank `local_rank` among `visible` GPUs: its own, or the only
/// one when each process sees one GPU (CUDA_VISIBLE_DEVICES per rank, SLURM's
/// --gpus-per-task=1). -1 when the machine has fewer GPUs than local ranks.
int GpuForLocalRank(int local_rank, int visible);

/// "auto" (the GPU of this process when CUDA is available, else the CPU), "cpu", "cuda"
/// (GpuForLocalRank: one process per GPU as torchrun starts them) or "cuda:N".
absl::StatusOr<c10::Device> ResolveDevice(const std::string& spec, int local_rank);

/// "auto" (on CUDA `gpu_default`, what the program's original trains with; off on the
/// CPU), "off", "fp16" (CUDA only: CPU autocast has no fp16) or "bf16".
absl::StatusOr<MixedPrecision> ResolveAmp(const std::string& spec, c10::Device device,
                                          MixedPrecision gpu_default = MixedPrecision::kFloat16);
std::string AmpName(MixedPrecision amp);

/// Makes `device` this thread's current CUDA device and picks the convolution
/// algorithms: cuDNN's benchmark search, or deterministic algorithms only (exact
/// resume on a GPU; needs CUBLAS_WORKSPACE_CONFIG, which this sets when unset). No-op
/// on the CPU.
void PrepareDevice(c10::Device device, bool deterministic);

/// Autocast on `device`'s type with `amp`'s dtype for the scope (a no-op for kOff), as
/// `with torch.autocast(...)`: the previous state comes back on exit and the cast cache
/// is cleared when the outermost scope ends.
class AutocastScope {
 public:
  AutocastScope(c10::Device device, MixedPrecision amp);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  c10::DeviceType type_ = c10::DeviceType::CPU;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kBFloat16;
};

/// Autocast off on every device for the scope (`autocast(enabled=False)`): the parts the
/// originals keep in fp32 (SwAV's Sinkhorn).
class AutocastDisabled {
 public:
  AutocastDisabled();
  ~AutocastDisabled();
  AutocastDisabled(const AutocastDisabled&) = delete;
  AutocastDisabled& operator=(const AutocastDisabled&) = delete;

 private:
  bool previous_cpu_ = false;
  bool previous_cuda_ = false;
};

/// fp16 or bf16: what autocast produces, and what the fp32 parts convert back from.
inline bool IsHalfPrecision(at::ScalarType type) {
  return type == at::kHalf || type == at::kBFloat16;
}

/// Whether an autocast scope is active on any device.
bool AutocastActive();

/// Stores every 4-D parameter and buffer of `module` (convolution weights) in
/// channels-last order, as `model.to(memory_format=torch.channels_last)`.
void ToChannelsLast(torch::nn::Module& module);

/// A copy of `value` with every tensor it holds (in dicts, lists, tuples) on the CPU,
/// for the checkpoint writer; CPU tensors are shared, not copied.
c10::IValue ToCpu(const c10::IValue& value);

}  // namespace ssl

#endif  // SSL_CORE_DEVICE_H_
