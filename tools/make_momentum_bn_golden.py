#!/usr/bin/python3
"""Golden values of Momentum^2 Teacher's own MomentumBatchNorm{1,2}d for
ssl/nn/momentum_batch_norm_test: two training steps of the two-view protocol (view 2
then view 1, as the teacher sees them) with total_iters 4, from non-trivial weights and
running statistics, on inputs filled by a formula the C++ test reproduces.

The module comes from a checkout of zengarden/momentum2-teacher given by path (read,
never copied into this project). Rerun with Debian's python3-torch:

    /usr/bin/python3 tools/make_momentum_bn_golden.py /path/to/momentum2-teacher ssl/nn/testdata
"""
import importlib.util
import sys

import torch


def fill(shape, phase):
    i = torch.arange(torch.Size(shape).numel(), dtype=torch.float64)
    return (torch.sin(0.37 * i + phase) * 2.0 + 0.3 * torch.cos(1.7 * i)).reshape(shape).float()


def run(module, shape, out):
    c = shape[1]
    with torch.no_grad():
        module.weight.copy_(1.0 + 0.1 * torch.arange(c, dtype=torch.float32))
        module.bias.copy_(0.05 * torch.arange(c, dtype=torch.float32) - 0.1)
        module.running_mean.copy_(0.2 * torch.arange(c, dtype=torch.float32))
        module.running_var.copy_(1.0 + 0.3 * torch.arange(c, dtype=torch.float32))
    module.total_iters = 4
    for step in range(2):
        for view in (2, 1):
            x = fill(shape, 10 * step + view)
            y = module(x)
            out.write(f"step{step}_view{view}_out " + " ".join(f"{v:.9e}" for v in y.flatten().tolist()) + "\n")
        out.write(f"step{step}_running_mean " + " ".join(f"{v:.9e}" for v in module.running_mean.tolist()) + "\n")
        out.write(f"step{step}_running_var " + " ".join(f"{v:.9e}" for v in module.running_var.tolist()) + "\n")
        out.write(f"step{step}_momentum_after {module.momentum:.12e}\n")


def main(checkout, out_dir):
    spec = importlib.util.spec_from_file_location(
        "resnet_mbn", f"{checkout}/momentum_teacher/models/resnet_mbn.py")
    resnet_mbn = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(resnet_mbn)
    for name, module, shape in [
        ("2d", resnet_mbn.MomentumBatchNorm2d(3), (4, 3, 2, 3)),
        ("1d", resnet_mbn.MomentumBatchNorm1d(5), (6, 5)),
    ]:
        with open(f"{out_dir}/momentum_bn_{name}.txt", "w") as out:
            out.write(f"# momentum2-teacher MomentumBatchNorm{name}, torch {torch.__version__}, "
                      f"input shape {' '.join(map(str, shape))}\n")
            run(module, shape, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ".")
