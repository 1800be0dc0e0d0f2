#!/usr/bin/python3
"""Measures two candidate speed-ups of MoCo v3's CPU backward on Debian's python3-torch
(the same LibTorch kernels main_moco runs): channels-last convolutions, and one batched
pass of both views instead of two. ResNet-18, 64 px, 2 threads, forward + backward.

    OPENBLAS_CORETYPE=Haswell /usr/bin/python3 tools/probe_backward_options.py [threads]
"""
import sys
import time

import torch
import torchvision


def seconds_per_step(step, repeats=8):
    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats


def main():
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    both_views = torch.randn(64, 3, 64, 64)
    view = torch.randn(32, 3, 64, 64)
    contiguous = seconds_per_step(lambda: model(both_views).sum().backward())
    last = torchvision.models.resnet18().to(memory_format=torch.channels_last)
    both_last = both_views.to(memory_format=torch.channels_last)
    channels_last = seconds_per_step(lambda: last(both_last).sum().backward())
    two_passes = seconds_per_step(lambda: (model(view).sum() + model(view).sum()).backward())
    print(f"ResNet-18 64 px forward+backward, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}: batch 64 contiguous {contiguous * 1e3:.0f} ms, channels-last "
          f"{channels_last * 1e3:.0f} ms ({contiguous / channels_last:.2f}x); two passes of 32 "
          f"{two_passes * 1e3:.0f} ms, one of 64 {contiguous * 1e3:.0f} ms "
          f"({two_passes / contiguous:.2f}x)")


if __name__ == "__main__":
    main()
