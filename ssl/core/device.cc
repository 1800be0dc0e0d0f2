#include "ssl/core/device.h"

#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/version.h>

#include <algorithm>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

// PyTorch 2.4 made the autocast state per device type; 1.13 has one call per device.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define SSL_AUTOCAST_BY_DEVICE_TYPE 1
#endif

namespace ssl {
namespace {

bool AutocastEnabled(c10::DeviceType type) {
#ifdef SSL_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::is_autocast_enabled(type);
#else
  return type == c10::DeviceType::CUDA ? at::autocast::is_enabled()
                                       : at::autocast::is_cpu_enabled();
#endif
}

void SetAutocastEnabled(c10::DeviceType type, bool enabled) {
#ifdef SSL_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_enabled(type, enabled);
#else
  if (type == c10::DeviceType::CUDA) {
    at::autocast::set_enabled(enabled);
  } else {
    at::autocast::set_cpu_enabled(enabled);
  }
#endif
}

at::ScalarType AutocastDtype(c10::DeviceType type) {
#ifdef SSL_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::get_autocast_dtype(type);
#else
  return type == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype()
                                       : at::autocast::get_autocast_cpu_dtype();
#endif
}

void SetAutocastDtype(c10::DeviceType type, at::ScalarType dtype) {
#ifdef SSL_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_dtype(type, dtype);
#else
  if (type == c10::DeviceType::CUDA) {
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
#endif
}

// Through the device-guard registry, which LibTorch 1.13 and 2.x both keep: the CUDA
// entry exists only when a CUDA LibTorch is loaded.
int CudaDeviceCount() {
  if (!at::hasCUDA() || !c10::impl::hasDeviceGuardImpl(c10::kCUDA)) return 0;
  return c10::impl::getDeviceGuardImpl(c10::kCUDA)->deviceCount();
}

}  // namespace

bool CudaAvailable() { return CudaDeviceCount() > 0; }

int VisibleCudaDevices() { return CudaDeviceCount(); }

int GpuForLocalRank(int local_rank, int visible) {
  if (visible == 1) return 0;
  const int index = std::max(0, local_rank);
  return index < visible ? index : -1;
}

absl::StatusOr<c10::Device> ResolveDevice(const std::string& spec, int local_rank) {
  if (spec == "cpu") return c10::Device(c10::kCPU);
  if (spec == "auto" && !CudaAvailable()) return c10::Device(c10::kCPU);
  if (spec != "auto" && spec != "cuda" && !absl::StartsWith(spec, "cuda:")) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown device \"", spec, "\" (use auto, cpu, cuda or cuda:N)"));
  }
  const int count = CudaDeviceCount();
  if (count == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--device=", spec, " needs a CUDA GPU, but ",
                     at::hasCUDA() ? "none is visible" : "this build's LibTorch has no CUDA",
                     " (use --device=cpu)"));
  }
  if (!absl::StartsWith(spec, "cuda:")) {
    const int index = GpuForLocalRank(local_rank, count);
    if (index < 0) {
      return absl::InvalidArgumentError(absl::StrCat("local rank ", local_rank,
                                                     " has no GPU of its own (", count,
                                                     " visible); one process per GPU"));
    }
    return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  int index = 0;
  if (!absl::SimpleAtoi(absl::StripPrefix(spec, "cuda:"), &index)) {
    return absl::InvalidArgumentError(absl::StrCat("bad device index in \"", spec, "\""));
  }
  if (index < 0 || index >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("GPU ", index, " does not exist (", count, " visible); one process per GPU"));
  }
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
}

absl::StatusOr<MixedPrecision> ResolveAmp(const std::string& spec, c10::Device device,
                                          MixedPrecision gpu_default) {
  if (spec == "auto") return device.is_cuda() ? gpu_default : MixedPrecision::kOff;
  if (spec == "off") return MixedPrecision::kOff;
  if (spec == "bf16") return MixedPrecision::kBFloat16;
  if (spec == "fp16") {
    if (!device.is_cuda()) {
      return absl::InvalidArgumentError(
          "--amp=fp16 needs --device=cuda: CPU autocast has no fp16 (use --amp=bf16 or off)");
    }
    return MixedPrecision::kFloat16;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown --amp \"", spec, "\" (use auto, off, fp16 or bf16)"));
}

std::string AmpName(MixedPrecision amp) {
  switch (amp) {
    case MixedPrecision::kFloat16:
      return "fp16";
    case MixedPrecision::kBFloat16:
      return "bf16";
    default:
      return "off";
  }
}

void PrepareDevice(c10::Device device, bool deterministic) {
  if (!device.is_cuda()) return;
  if (deterministic) setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
  c10::impl::getDeviceGuardImpl(c10::kCUDA)->setDevice(device);
  at::globalContext().setBenchmarkCuDNN(!deterministic);
  at::globalContext().setDeterministicCuDNN(deterministic);
  at::globalContext().setDeterministicAlgorithms(deterministic, /*warn_only=*/false);
}

AutocastScope::AutocastScope(c10::Device device, MixedPrecision amp) {
  if (amp == MixedPrecision::kOff) return;
  active_ = true;
  type_ = device.type();
  previous_enabled_ = AutocastEnabled(type_);
  previous_dtype_ = AutocastDtype(type_);
  SetAutocastEnabled(type_, true);
  SetAutocastDtype(type_, amp == MixedPrecision::kFloat16 ? at::kHalf : at::kBFloat16);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  SetAutocastEnabled(type_, previous_enabled_);
  SetAutocastDtype(type_, previous_dtype_);
}

AutocastDisabled::AutocastDisabled()
    : previous_cpu_(AutocastEnabled(c10::DeviceType::CPU)),
      previous_cuda_(AutocastEnabled(c10::DeviceType::CUDA)) {
  SetAutocastEnabled(c10::DeviceType::CPU, false);
  SetAutocastEnabled(c10::DeviceType::CUDA, false);
}

AutocastDisabled::~AutocastDisabled() {
  SetAutocastEnabled(c10::DeviceType::CPU, previous_cpu_);
  SetAutocastEnabled(c10::DeviceType::CUDA, previous_cuda_);
}

bool AutocastActive() {
  return AutocastEnabled(c10::DeviceType::CPU) || AutocastEnabled(c10::DeviceType::CUDA);
}

void ToChannelsLast(torch::nn::Module& module) {
  c10::NoGradGuard no_grad;
  for (at::Tensor tensor : module.parameters()) {
    if (tensor.dim() == 4) tensor.set_data(tensor.contiguous(at::MemoryFormat::ChannelsLast));
  }
  for (at::Tensor tensor : module.buffers()) {
    if (tensor.dim() == 4) tensor.set_data(tensor.contiguous(at::MemoryFormat::ChannelsLast));
  }
}

c10::IValue ToCpu(const c10::IValue& value) {
  if (value.isTensor()) {
    const at::Tensor& tensor = value.toTensor();
    return tensor.defined() && !tensor.is_cpu() ? tensor.cpu() : tensor;
  }
  if (value.isGenericDict()) {
    const c10::impl::GenericDict dict = value.toGenericDict();
    c10::impl::GenericDict copy(dict.keyType(), dict.valueType());
    for (const auto& item : dict) copy.insert(item.key(), ToCpu(item.value()));
    return copy;
  }
  if (value.isList()) {
    const c10::impl::GenericList list = value.toList();
    c10::impl::GenericList copy(list.elementType());
    for (const c10::IValue& element : list) copy.push_back(ToCpu(element));
    return copy;
  }
  if (value.isTuple()) {
    std::vector<c10::IValue> elements;
    for (const c10::IValue& element : value.toTupleRef().elements()) {
      elements.push_back(ToCpu(element));
    }
    return c10::ivalue::Tuple::create(std::move(elements));
  }
  return value;
}

}  // namespace ssl
