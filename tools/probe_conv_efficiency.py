#!/usr/bin/python3
"""How close MoCo v3's CPU step already is to the machine's arithmetic ceiling.

Runs one MoCo v3 iteration's network work for ResNet-18 at 64 px, batch 32 per view
(the configuration of tools/benchmark_moco_step.sh): forward + backward of each view
through the base encoder and a no-grad forward of each view through the momentum encoder,
on Debian's python3-torch, whose LibTorch kernels main_moco runs too. It counts the
convolutions' multiply-adds, times them with the autograd profiler, and compares their
rate with a large fp32 matrix product on the same threads (the best this CPU and BLAS
reach). It prints the convolutions' share of the step, their rate against the GEMM rate,
and the step time that would remain with every other operator free: the limit on what
any fp32 implementation calling these convolutions can gain over another.

    OPENBLAS_CORETYPE=Haswell /usr/bin/python3 tools/probe_conv_efficiency.py [threads]
"""
import sys
import time

import torch
import torchvision


def conv_multiply_adds(model, images):
    """Multiply-adds of every Conv2d for one forward of `images`."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        kernel = module.weight.shape[1] * module.weight.shape[2] * module.weight.shape[3]
        total += output.numel() * kernel

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    return total


def gemm_flops_per_second(size=2048, repeats=6):
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(2):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def main():
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    torch.manual_seed(0)
    base = torchvision.models.resnet18()
    momentum = torchvision.models.resnet18()
    views = [torch.randn(32, 3, 64, 64) for _ in range(2)]

    def iteration():
        for view in views:
            base(view).sum().backward()
        with torch.no_grad():
            for view in views:
                momentum(view)

    for _ in range(3):
        iteration()
    repeats = 6
    with torch.autograd.profiler.profile() as profile:
        start = time.perf_counter()
        for _ in range(repeats):
            iteration()
        step_seconds = (time.perf_counter() - start) / repeats
    self_seconds = {e.key: e.self_cpu_time_total / 1e6 / repeats for e in profile.key_averages()}
    forward_seconds = self_seconds.get("aten::mkldnn_convolution", 0.0)
    backward_seconds = self_seconds.get("aten::convolution_backward", 0.0)
    macs = conv_multiply_adds(base, views[0])
    stem = base.conv1
    stem_macs = conv_multiply_adds(torch.nn.Sequential(stem), views[0])
    # Four forwards (two views, two encoders); backward computes weight gradients of every
    # convolution and input gradients of all but the stem (the images need none).
    forward_flops = 2 * macs * 4
    backward_flops = 2 * (2 * macs - stem_macs) * 2
    gemm = gemm_flops_per_second()
    conv_seconds = forward_seconds + backward_seconds
    print(f"ResNet-18 64 px, batch 32 per view, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}: one MoCo v3 iteration's network work {step_seconds * 1e3:.0f} ms "
          f"(profiled)")
    print(f"  convolutions: {conv_seconds * 1e3:.0f} ms = {conv_seconds / step_seconds:.0%} of it; "
          f"forward {forward_flops / forward_seconds / 1e9:.0f} GFLOP/s, backward "
          f"{backward_flops / backward_seconds / 1e9:.0f} GFLOP/s; a 2048^3 fp32 GEMM "
          f"{gemm / 1e9:.0f} GFLOP/s")
    print(f"  with every other operator free the step would take {conv_seconds * 1e3:.0f} ms: "
          f"at most {step_seconds / conv_seconds:.2f}x faster; with the convolutions at the GEMM "
          f"rate too, {(forward_flops + backward_flops) / gemm * 1e3:.0f} ms "
          f"({step_seconds * gemm / (forward_flops + backward_flops):.2f}x)")


if __name__ == "__main__":
    main()
