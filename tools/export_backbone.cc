// A pretrained backbone out of any checkpoint the framework reads, as the files other
// code loads: a torchvision state dict (`torchvision.models.resnet50().load_state_dict`
// takes it, only `fc.*` missing) or DeiT's `{'model': state dict}` as moco-v3's
// convert_to_deit.py writes it (the head left out).
//
//   bazel run //tools:export_backbone -- --pretrained=checkpoint_0099.pth.tar
//       --output=r50_backbone.pth [--format=torchvision|deit] [--backbone=momentum]
#include <ATen/core/Dict.h>
#include <gflags/gflags.h>

#include <iostream>

#include "ssl/train/checkpoint.h"
#include "ssl/train/pretrained.h"
#include "tools/cli_util.h"

DEFINE_string(pretrained, "", "Checkpoint to read (this framework's or an original's), required.");
DEFINE_string(output, "", "File to write, required.");
DEFINE_string(format, "torchvision",
              "torchvision: the backbone's state dict; deit: {'model': state dict}, as "
              "convert_to_deit.py writes it.");
DEFINE_string(backbone, "",
              "Which backbone of the checkpoint: empty for the method's evaluation backbone "
              "(MoCo v3: base, SwAV: trunk, Momentum^2 Teacher: teacher), or e.g. momentum.");

int main(int argc, char** argv) {
  ssl::tools::ParseProgramFlags(
      &argc, &argv,
      "export_backbone --pretrained=<checkpoint> --output=<file> [--format=torchvision|deit]: "
      "a pretrained backbone as torchvision's or DeiT's state dict file");
  const auto fail = [](const absl::Status& s) {
    std::cerr << "export_backbone: " << s.message() << "\n";
    return 1;
  };
  FLAGS_pretrained = ssl::tools::UserPath(FLAGS_pretrained);
  FLAGS_output = ssl::tools::UserPath(FLAGS_output);
  if (FLAGS_pretrained.empty() || FLAGS_output.empty()) {
    return fail(absl::InvalidArgumentError("--pretrained and --output are required"));
  }
  auto exported =
      ssl::train::ExportBackbone(FLAGS_pretrained, FLAGS_backbone, FLAGS_format, FLAGS_output);
  if (!exported.ok()) return fail(exported.status());
  const auto& [config, tensors] = *exported;
  std::cout << "wrote the " << config.backbone << " backbone (" << config.arch << ", " << tensors
            << " tensors, epoch " << config.epoch << ") of " << FLAGS_pretrained
            << " to " << FLAGS_output << " as " << FLAGS_format << "\n";
  return 0;
}
