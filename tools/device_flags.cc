#include "tools/device_flags.h"

#include "ssl/distributed/process_group.h"
#include "ssl/nn/winograd_conv.h"

DEFINE_string(device, "auto",
              "Where to train or evaluate: auto (this process's GPU, LOCAL_RANK, when CUDA is "
              "available; else the CPU), cpu, cuda, or cuda:N.");
DEFINE_string(amp, "auto",
              "Mixed precision: auto (off on the CPU; on a GPU what this program's original "
              "trains with: fp16 for main_moco (moco-v3's main_moco.py) and finetune (DeiT); "
              "the config's MODEL.AMP_PARAMS.USE_AMP for run_distributed_engines (VISSL); off, "
              "i.e. fp32, for main_lincls (main_lincls.py), knn_eval and m2teacher_train "
              "(Momentum^2 Teacher has no AMP)), off, fp16 (autocast with a dynamic loss "
              "scaler, saved in the checkpoint's \"scaler\"; GPU only) or bf16 (autocast, no "
              "scaler; CPU or GPU).");
DEFINE_bool(channels_last, true,
            "Keep convolution weights and batches in channels-last order. On by default on a "
            "GPU (cuDNN's fast layout for ResNets/RegNets). On the CPU only when given "
            "explicitly (--channels_last): oneDNN's NHWC kernels made MoCo v3 ResNet-18 at "
            "64 px ~4% faster, but the rounding differs from the default layout's, so CPU "
            "runs and their recorded results keep that one unless asked.");
DEFINE_bool(deterministic, false,
            "On a GPU, deterministic algorithms instead of cuDNN's benchmark search: slower, "
            "but a resumed run then equals an uninterrupted one bitwise.");
DEFINE_bool(winograd, false,
            "On the CPU, faster algorithms for the ResNets' 3x3 convolutions (AVX-512 CPUs): "
            "stride-1 convolutions on 8x8 and larger maps through oneDNN's Winograd kernels "
            "(F(4x4,3x3): about half the multiplications, ~2x faster for those layers), and "
            "on smaller outputs (stride 1 or 2) weight gradients as one matrix product per "
            "kernel tap, which skips the padded taps (up to ~2x faster there). The same "
            "convolutions rounded differently (as cuDNN's benchmark mode may pick on a GPU); "
            "off by default so that CPU runs and their recorded results keep the direct "
            "algorithm's rounding.");

namespace ssl::tools {

absl::StatusOr<DeviceChoice> DeviceFromFlags(int local_rank, MixedPrecision amp_on_gpu) {
  DeviceChoice choice;
  absl::StatusOr<c10::Device> device = ResolveDevice(FLAGS_device, local_rank);
  if (!device.ok()) return device.status();
  choice.device = *device;
  absl::StatusOr<MixedPrecision> amp = ResolveAmp(FLAGS_amp, choice.device, amp_on_gpu);
  if (!amp.ok()) return amp.status();
  choice.amp = *amp;
  const bool given = !gflags::GetCommandLineFlagInfoOrDie("channels_last").is_default;
  choice.channels_last = FLAGS_channels_last && (choice.device.is_cuda() || given);
  choice.deterministic = FLAGS_deterministic;
  choice.winograd = FLAGS_winograd && choice.device.is_cpu();
  if (choice.winograd && !nn::WinogradConvolutionsAvailable()) {
    return absl::InvalidArgumentError(
        "--winograd needs oneDNN's Winograd kernels, which this CPU (they need AVX-512) or "
        "this build lacks");
  }
  nn::SetWinogradConvolutions(choice.winograd);
  PrepareDevice(choice.device, choice.deterministic);
  return choice;
}

std::string ResolveBackend(const std::string& backend, const DeviceChoice& choice) {
  if (backend != "auto") return backend;
  return choice.device.is_cuda() && distributed::BackendAvailable("nccl") ? "nccl" : "gloo";
}

}  // namespace ssl::tools
