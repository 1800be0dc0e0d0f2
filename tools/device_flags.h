// --device, --amp, --channels_last, --deterministic and --winograd, shared by the pretraining and
// evaluation programs, and the c10d backend that goes with the device.
#ifndef TOOLS_DEVICE_FLAGS_H_
#define TOOLS_DEVICE_FLAGS_H_

#include <gflags/gflags.h>

#include <string>

#include "absl/status/statusor.h"
#include "ssl/core/device.h"

DECLARE_string(device);
DECLARE_string(amp);
DECLARE_bool(channels_last);
DECLARE_bool(deterministic);
DECLARE_bool(winograd);

namespace ssl::tools {

struct DeviceChoice {
  c10::Device device = c10::kCPU;
  MixedPrecision amp = MixedPrecision::kOff;
  bool channels_last = false;  ///< only ever true on a GPU
  bool deterministic = false;
  bool winograd = false;  ///< CPU only; also switched on process-wide
};

/// The flags resolved for this process (the GPU of `local_rank` for --device=cuda or
/// auto), with the device made current, so that NCCL and cuDNN start on it.
/// `amp_on_gpu`: what --amp=auto means on a GPU for this program, as its original trains
/// (moco-v3's main_moco and DeiT fp16; main_lincls and Momentum^2 Teacher fp32; VISSL
/// the config's AMP_PARAMS.USE_AMP).
absl::StatusOr<DeviceChoice> DeviceFromFlags(int local_rank, MixedPrecision amp_on_gpu);

/// "auto" becomes nccl on a GPU with a NCCL-enabled LibTorch, gloo otherwise; other
/// names are kept (and checked when the process group is created).
std::string ResolveBackend(const std::string& backend, const DeviceChoice& choice);

}  // namespace ssl::tools

#endif  // TOOLS_DEVICE_FLAGS_H_
