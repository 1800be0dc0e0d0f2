#!/usr/bin/python3
"""Times moco-v3's own training loop on CPU, for tools/benchmark_moco_step.sh.

    mocov3_reference_step.py <moco-v3 checkout> <ImageFolder> --arch resnet18 --size 64
        --batch 32 --threads 2 --workers 2

Uses the checkout's moco/builder.py (MoCo_ResNet, the loss, the momentum update),
moco/loader.py (TwoCropsTransform, GaussianBlur, Solarize) and moco/optimizer.py (LARS)
as they are, except builder.py's one CUDA-only line (the labels' .cuda()), which is made
CPU when the module is loaded; nothing of the checkout is copied into this project.
The loop follows main_moco.py's train(): per-iteration lr (warmup + cosine) and
momentum (cosine) schedules, the model call, zero_grad, backward, step; one epoch over
the folder on one process (gloo, world size 1). Prints one JSON line: images/s over
the whole epoch (from the DataLoader's start) and the time spent waiting for data, in
the model call (forward and momentum update), in backward and in the optimizer step.
"""
import argparse
import json
import math
import sys
import time
import types
from functools import partial

import torch
import torch.distributed as dist
import torchvision
import torchvision.transforms as T


def load_moco(checkout):
    package = types.ModuleType("moco")
    package.__path__ = [f"{checkout}/moco"]
    sys.modules["moco"] = package
    source = open(f"{checkout}/moco/builder.py").read()
    cuda_line = "* torch.distributed.get_rank()).cuda()"
    assert source.count(cuda_line) == 1, "unexpected builder.py: its CUDA-only line moved"
    builder = types.ModuleType("moco.builder")
    exec(compile(source.replace(cuda_line, "* torch.distributed.get_rank())"),
                 f"{checkout}/moco/builder.py", "exec"), builder.__dict__)
    sys.modules["moco.builder"] = builder
    import moco.loader
    import moco.optimizer
    return builder, moco.loader, moco.optimizer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("checkout")
    parser.add_argument("data")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.6)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--crop_min", type=float, default=0.2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    builder, loader, optimizer_module = load_moco(args.checkout)
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:29531", world_size=1, rank=0)

    model = builder.MoCo_ResNet(
        partial(torchvision.models.__dict__[args.arch], zero_init_residual=True), 256, 4096, 1.0)
    lr = args.lr * args.batch / 256
    optimizer = optimizer_module.LARS(model.parameters(), lr, weight_decay=1e-6, momentum=0.9)

    normalize = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    def views(blur, solarize):
        steps = [T.RandomResizedCrop(args.size, scale=(args.crop_min, 1.0)),
                 T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
                 T.RandomGrayscale(p=0.2),
                 T.RandomApply([loader.GaussianBlur([0.1, 2.0])], p=blur)]
        if solarize:
            steps.append(T.RandomApply([loader.Solarize()], p=solarize))
        return T.Compose(steps + [T.RandomHorizontalFlip(), T.ToTensor(), normalize])
    dataset = torchvision.datasets.ImageFolder(
        args.data, loader.TwoCropsTransform(views(1.0, 0.0), views(0.1, 0.2)))
    data = torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=True,
                                       num_workers=args.workers, drop_last=True)

    iters = len(data)
    times = {"data": 0.0, "model": 0.0, "backward": 0.0, "optimizer": 0.0}
    model.train()
    start = time.perf_counter()
    mark = start
    for i, (images, _) in enumerate(data):
        now = time.perf_counter()
        times["data"] += now - mark
        epoch = i / iters  # epoch 0 of the run
        warmup = 10
        step_lr = lr * epoch / warmup if epoch < warmup else \
            lr * 0.5 * (1. + math.cos(math.pi * (epoch - warmup) / (args.epochs - warmup)))
        for group in optimizer.param_groups:
            group["lr"] = step_lr
        momentum = 1. - 0.5 * (1. + math.cos(math.pi * epoch / args.epochs)) * (1. - 0.99)
        loss = model(images[0], images[1], momentum)
        after_model = time.perf_counter()
        optimizer.zero_grad()
        loss.backward()
        after_backward = time.perf_counter()
        optimizer.step()
        mark = time.perf_counter()
        times["model"] += after_model - now
        times["backward"] += after_backward - after_model
        times["optimizer"] += mark - after_backward
    seconds = time.perf_counter() - start
    print(json.dumps({"images_per_second": iters * args.batch / seconds, "seconds": seconds,
                      "iterations": iters, "torch": torch.__version__,
                      "seconds_by_phase": times, "final_loss": loss.item()}))


if __name__ == "__main__":
    main()
