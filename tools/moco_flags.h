// MoCo v3 pretraining flags (main_moco.py's names and the ResNet-50 100-epoch defaults),
// defined once for every program that pretrains (main_moco, run_experiment).
#ifndef TOOLS_MOCO_FLAGS_H_
#define TOOLS_MOCO_FLAGS_H_

#include <gflags/gflags.h>

#include <string>

#include "ssl/methods/mocov3.h"
#include "ssl/train/pretrain.h"
#include "tools/cli_util.h"

DECLARE_string(arch);
DECLARE_bool(cifar_stem);
DECLARE_bool(stop_grad_conv1);
DECLARE_int64(batch_size);
DECLARE_double(lr);
DECLARE_int32(epochs);
DECLARE_int32(image_size);
DECLARE_uint64(seed);
DECLARE_int32(workers);
DECLARE_int32(threads);
DECLARE_int32(print_freq);

namespace ssl::tools {

/// MoCo v3's method options from the flags.
methods::MocoV3Options MocoV3OptionsFromFlags();

/// The engine's options from the flags (main_moco.py's schedule: linear warmup, then a
/// half cosine, per iteration, peak lr * batch / 256); data, output_dir and resume are
/// left to the caller.
train::PretrainOptions PretrainOptionsFromFlags();

/// One sentence for flag values the method and engine do not check themselves.
absl::Status ValidateMocoFlags();

/// Applies --threads (when > 0) to LibTorch's intra-op pool.
void ApplyThreadsFlag();

}  // namespace ssl::tools

#endif  // TOOLS_MOCO_FLAGS_H_
