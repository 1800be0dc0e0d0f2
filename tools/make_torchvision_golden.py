#!/usr/bin/python3
"""Writes golden data from torchvision's own ResNets and RegNetY for ssl/backbones tests.

For each architecture: every state_dict key with its shape (in order), and the logits
of the model in eval mode on a fixed input, after filling every tensor with a formula
that the C++ test reproduces (so no weights need to be stored). Rerun with Debian's
python3-torch and python3-torchvision:

    /usr/bin/python3 tools/make_torchvision_golden.py ssl/backbones/testdata
"""
import math
import sys

import torch
import torchvision


def fill_deterministically(model):
    """Key k's i-th element is a sinusoid of (i, k), scaled like a sane init."""
    with torch.no_grad():
        for k, (name, tensor) in enumerate(model.state_dict().items()):
            if name.endswith("num_batches_tracked"):
                continue
            i = torch.arange(tensor.numel(), dtype=torch.float64)
            wave = torch.sin(0.1 * i + k)
            if name.endswith("running_var"):
                values = 1.0 + 0.5 * wave * wave
            elif tensor.dim() > 1:
                fan_in = tensor.numel() // tensor.shape[0]
                values = wave * math.sqrt(3.0 / fan_in)
            elif name.endswith("weight"):  # BatchNorm gamma
                values = 1.0 + 0.1 * wave
            else:
                values = 0.1 * wave
            tensor.copy_(values.reshape(tensor.shape).to(tensor.dtype))


def fixed_input():
    i = torch.arange(2 * 3 * 64 * 64, dtype=torch.float64)
    return torch.sin(0.05 * i).reshape(2, 3, 64, 64).float()


def main(out_dir):
    for arch in ["resnet18", "resnet50", "regnet_y_400mf"]:
        model = getattr(torchvision.models, arch)()
        fill_deterministically(model)
        model.eval()
        with torch.no_grad():
            logits = model(fixed_input())
        with open(f"{out_dir}/torchvision_{arch}.txt", "w") as f:
            f.write(f"# torchvision {torchvision.__version__} {arch}: keys, then logits\n")
            for name, tensor in model.state_dict().items():
                f.write(f"key {name} {' '.join(str(s) for s in tensor.shape)}\n")
            for row in logits:
                f.write("logits " + " ".join(f"{v:.8e}" for v in row.tolist()) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
