#!/usr/bin/python3
"""Accuracy parity with the original SwAV code: the SwAV repository's own training step
(main_swav.py's train() and distributed_sinkhorn, src/multicropdataset.py's
MultiCropDataset, src/resnet50.py's ResNet narrowed to this project's CPU trunk), from a
checkout given by path and never copied into this project, trained on CPU with Debian's
python3-torch; then kNN (k=20, T=0.07) of the trunk's pooled features, before training
(the random-init control) and after.

What had to change to run it here, and nothing else:
- apex is absent: its LARC rule (trust ratio 0.001 x ||p|| / (||g|| + wd ||p|| + eps),
  weight decay folded into the gradient first, no clipping) is written out below;
- pandas is absent: src/logger.py imports it for a statistics table train() never uses;
- the ResNet moves its input to CUDA: Tensor.cuda is the identity here;
- BasicBlock refuses base widths other than 64 (which it uses for nothing else), so the
  narrow trunk (width_per_group 16: resnet18w0.25) passes it 64;
- a single-process gloo group stands in for the NCCL one (distributed_sinkhorn
  all-reduces);
- the recipe's softer views: get_color_distortion's strength and PILRandomGaussianBlur's
  radius range are set from --color_strength and --blur_max (the originals' defaults are
  1.0 and 2.0, made for 224 px crops).

    /usr/bin/python3 tools/swav_reference.py /path/to/swav ../shared/datasets/imagenette \
        --config configs/config/ssl_cpu/swav_imagenette_64px.yaml --seed 0

--config reads the recipe from this project's VISSL-format config (crops, views, head,
prototypes, Sinkhorn, LARC, warmup and cosine, frozen prototypes, queue, epochs), so both
sides of tools/swav_parity.sh train the same recipe; the flags below override it.

Prints one JSON line: kNN top-1 before and after, the last epoch's loss, training time.
"""
import argparse
import json
import math
import os
import sys
import time
import types

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torchvision
import torchvision.transforms as T


class Larc:
    """apex.parallel.LARC with clip=False, as main_swav.py builds it."""

    def __init__(self, optimizer, trust_coefficient=0.001, clip=False, eps=1e-8):
        self.optim = optimizer
        self.trust_coefficient = trust_coefficient
        self.clip = clip
        self.eps = eps

    @property
    def param_groups(self):
        return self.optim.param_groups

    def zero_grad(self):
        self.optim.zero_grad()

    def step(self):
        decays = []
        with torch.no_grad():
            for group in self.optim.param_groups:
                decay = group.get("weight_decay", 0)
                decays.append(decay)
                group["weight_decay"] = 0
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    weight_norm, grad_norm = torch.norm(p.data), torch.norm(p.grad.data)
                    if weight_norm != 0 and grad_norm != 0:
                        scale = self.trust_coefficient * weight_norm / (
                            grad_norm + weight_norm * decay + self.eps)
                        if self.clip:
                            scale = min(scale / group["lr"], 1)
                        p.grad.data += decay * p.data
                        p.grad.data *= scale
        self.optim.step()
        for group, decay in zip(self.optim.param_groups, decays):
            group["weight_decay"] = decay


def import_original(checkout):
    apex = types.ModuleType("apex")
    apex.parallel = types.ModuleType("apex.parallel")
    apex.parallel.LARC = types.ModuleType("apex.parallel.LARC")
    apex.parallel.LARC.LARC = Larc
    for name, module in (("apex", apex), ("apex.parallel", apex.parallel),
                         ("apex.parallel.LARC", apex.parallel.LARC)):
        sys.modules[name] = module
    sys.modules.setdefault("pandas", types.ModuleType("pandas"))
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    sys.path.insert(0, checkout)
    import main_swav
    from src import multicropdataset, resnet50
    return main_swav, multicropdataset, resnet50


def knn_top1(backbone, data, size, val_split):
    """kNN k=20, T=0.07 on L2-normalized pooled features of center crops (as knn_eval)."""
    normalize = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    center = T.Compose([T.Resize(size * 8 // 7), T.CenterCrop(size), T.ToTensor(), normalize])

    def features(split):
        folder = torchvision.datasets.ImageFolder(os.path.join(data, split), center)
        out, labels = [], []
        with torch.no_grad():
            for images, target in torch.utils.data.DataLoader(folder, batch_size=256,
                                                              num_workers=2):
                out.append(nn.functional.normalize(backbone(images), dim=1))
                labels.append(target)
        return torch.cat(out), torch.cat(labels), len(folder.classes)

    bank, bank_labels, classes = features("train")
    queries, query_labels, _ = features(val_split)
    correct = 0
    for row in range(0, queries.shape[0], 500):
        sim = queries[row:row + 500] @ bank.t()
        top, index = sim.topk(20, dim=1)
        votes = torch.zeros(sim.shape[0], classes).scatter_add_(1, bank_labels[index],
                                                                (top / 0.07).exp())
        correct += (votes.argmax(1) == query_labels[row:row + 500]).sum().item()
    return 100.0 * correct / queries.shape[0]


def recipe_from_config(path):
    """The reference's arguments from a VISSL-format SwAV config of this project."""
    import yaml
    config = yaml.safe_load(open(path))["config"]
    transforms = {t["name"]: t for t in config["DATA"]["TRAIN"]["TRANSFORMS"]}
    crops = transforms["ImgPilToMultiCrop"]
    blur = transforms.get("ImgPilGaussianBlur", {"p": 0.0, "radius_max": 0.0})
    if blur.get("p", 0.5) != 0.5 or blur.get("radius_min", 0.1) != 0.1:
        sys.exit("swav_reference: the original's blur has p 0.5 and radius_min 0.1")
    head = config["MODEL"]["HEAD"]["PARAMS"][0][1]
    loss = config["LOSS"]["swav_loss"]
    optimizer = config["OPTIMIZER"]
    lr = optimizer["param_schedulers"]["lr"]
    if lr["name"] != "composite" or [s["name"] for s in lr["schedulers"]] != ["linear", "cosine"] \
            or lr.get("interval_scaling") != ["rescaled", "rescaled"]:
        sys.exit("swav_reference: main_swav.py's schedule is a linear warmup then a cosine, each "
                 "over its own length (composite, interval_scaling [rescaled, rescaled])")
    epochs = optimizer["num_epochs"]
    warmup = lr["lengths"][0] * epochs
    if abs(warmup - round(warmup)) > 0.01:
        sys.exit(f"swav_reference: the warmup covers {warmup} epochs; main_swav.py's is whole epochs")
    frozen = config["MODEL"].get("TEMP_FROZEN_PARAMS_ITER_MAP") or [[None, 0]]
    if loss.get("queue", {}).get("queue_length", 0) > 0:
        sys.exit("swav_reference: main_swav.py starts its queue at an epoch and uses it once "
                 "full; give the recipe queue.rule: swav_repo and this script --queue_length and "
                 "--epoch_queue_starts")
    return dict(
        epochs=epochs, batch=config["DATA"]["TRAIN"]["BATCHSIZE_PER_REPLICA"],
        seed=config.get("SEED_VALUE", 0),
        width_per_group=int(64 * config["MODEL"]["TRUNK"]["RESNETS"].get("WIDTH_MULTIPLIER", 1)),
        hidden_mlp=head["dims"][1], feat_dim=head["dims"][-1],
        nmb_prototypes=head["num_clusters"][0], nmb_crops=crops["num_crops"],
        size_crops=crops["size_crops"], min_scale_crops=[s[0] for s in crops["crop_scales"]],
        max_scale_crops=[s[1] for s in crops["crop_scales"]],
        color_strength=transforms["ImgPilColorDistortion"].get("strength", 1.0),
        blur_max=blur.get("radius_max", 2.0), epsilon=loss["epsilon"],
        temperature=loss["temperature"], sinkhorn_iterations=loss.get("num_iters", 3),
        base_lr=lr["schedulers"][1]["start_value"], final_lr=lr["schedulers"][1]["end_value"],
        start_warmup=lr["schedulers"][0]["start_value"], warmup_epochs=int(round(warmup)),
        wd=optimizer["weight_decay"], freeze_prototypes_niters=frozen[0][1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout")
    parser.add_argument("data", help="dataset root with train/ and val/")
    parser.add_argument("--val_split", default="val")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width_per_group", type=int, default=16, help="16: resnet18w0.25")
    parser.add_argument("--hidden_mlp", type=int, default=512)
    parser.add_argument("--feat_dim", type=int, default=128)
    parser.add_argument("--nmb_prototypes", type=int, default=512)
    parser.add_argument("--nmb_crops", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--size_crops", type=int, nargs="+", default=[64, 32])
    parser.add_argument("--min_scale_crops", type=float, nargs="+", default=[0.14, 0.05])
    parser.add_argument("--max_scale_crops", type=float, nargs="+", default=[1.0, 0.14])
    parser.add_argument("--color_strength", type=float, default=0.5)
    parser.add_argument("--blur_max", type=float, default=0.6)
    parser.add_argument("--epsilon", type=float, default=0.05)
    parser.add_argument("--temperature", type=float, default=0.1)
    parser.add_argument("--sinkhorn_iterations", type=int, default=3)
    parser.add_argument("--base_lr", type=float, default=2.4)
    parser.add_argument("--final_lr", type=float, default=0.0024)
    parser.add_argument("--start_warmup", type=float, default=0.0)
    parser.add_argument("--warmup_epochs", type=int, default=1)
    parser.add_argument("--wd", type=float, default=1e-6)
    parser.add_argument("--freeze_prototypes_niters", type=int, default=50)
    parser.add_argument("--queue_length", type=int, default=0)
    parser.add_argument("--epoch_queue_starts", type=int, default=0)
    parser.add_argument("--save_dir", help="also write random_init.pth and trained.pth there, "
                        "in main_swav.py's checkpoint layout, to evaluate with knn_eval")
    parser.add_argument("--config", help="a VISSL-format recipe (configs/config/ssl_cpu/...)")
    options = parser.parse_args()
    if options.config:
        recipe = recipe_from_config(options.config)
        # Flags given on the command line win over the config.
        given = {a.split("=")[0][2:] for a in sys.argv[1:] if a.startswith("--")}
        for key, value in recipe.items():
            if key not in given:
                setattr(options, key, value)

    torch.set_num_threads(options.threads)
    main_swav, multicropdataset, resnet50 = import_original(os.path.abspath(options.checkout))
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:%d" % (29600 + os.getpid() % 1000),
                            rank=0, world_size=1)
    # fix_random_seeds, as main() calls it.
    torch.manual_seed(options.seed)
    np.random.seed(options.seed)

    # The recipe's softer views (the only change to the original's transforms).
    original_distortion = multicropdataset.get_color_distortion
    multicropdataset.get_color_distortion = lambda s=1.0: original_distortion(options.color_strength)
    blur_init = multicropdataset.PILRandomGaussianBlur.__init__
    multicropdataset.PILRandomGaussianBlur.__init__ = (
        lambda self, p=0.5, radius_min=0.1, radius_max=2.0:
        blur_init(self, p, radius_min, options.blur_max))
    dataset = multicropdataset.MultiCropDataset(
        os.path.join(options.data, "train"), options.size_crops, options.nmb_crops,
        options.min_scale_crops, options.max_scale_crops)
    loader = torch.utils.data.DataLoader(dataset, shuffle=True, batch_size=options.batch,
                                         num_workers=2, drop_last=True)

    # The narrow trunk: BasicBlock refuses a base width other than 64, which it uses for
    # nothing else; its channels come from the ResNet's width_per_group.
    block_init = resnet50.BasicBlock.__init__
    def narrow_block_init(self, *args, **kwargs):
        if len(args) > 5:
            args = args[:5] + (64,) + args[6:]
        else:
            kwargs["base_width"] = 64
        block_init(self, *args, **kwargs)

    resnet50.BasicBlock.__init__ = narrow_block_init
    model = resnet50.ResNet(resnet50.BasicBlock, [2, 2, 2, 2], width_per_group=options.width_per_group,
                            normalize=True, hidden_mlp=options.hidden_mlp,
                            output_dim=options.feat_dim, nmb_prototypes=options.nmb_prototypes)
    size = max(options.size_crops)

    def trunk(images):
        return model.forward_backbone(images)

    def save(name, epoch):
        if options.save_dir:  # as main_swav.py saves its DistributedDataParallel model
            os.makedirs(options.save_dir, exist_ok=True)
            state = {"module." + k: v for k, v in model.state_dict().items()}
            torch.save({"epoch": epoch, "state_dict": state}, os.path.join(options.save_dir, name))

    model.eval()
    save("random_init.pth", 0)
    random_init_knn = knn_top1(trunk, options.data, size, options.val_split)

    # main(): SGD in LARC, warmup then cosine per iteration, the queue from its epoch.
    optimizer = Larc(torch.optim.SGD(model.parameters(), lr=options.base_lr, momentum=0.9,
                                     weight_decay=options.wd))
    iters = len(loader)
    warmup = np.linspace(options.start_warmup, options.base_lr, iters * options.warmup_epochs)
    decay_iters = iters * (options.epochs - options.warmup_epochs)
    cosine = np.array([options.final_lr + 0.5 * (options.base_lr - options.final_lr) *
                       (1 + math.cos(math.pi * t / decay_iters)) for t in range(decay_iters)])
    lr_schedule = np.concatenate((warmup, cosine))
    main_swav.args = argparse.Namespace(
        crops_for_assign=[0, 1], nmb_crops=options.nmb_crops, temperature=options.temperature,
        epsilon=options.epsilon, sinkhorn_iterations=options.sinkhorn_iterations, world_size=1,
        rank=0, freeze_prototypes_niters=options.freeze_prototypes_niters, use_fp16=False)

    class Replica(nn.Module):  # DistributedDataParallel's .module, without the wrapper
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, inputs):
            return self.module(inputs)

    replica = Replica(model)
    queue_length = options.queue_length - options.queue_length % options.batch
    queue = None
    start, losses = time.perf_counter(), []
    for epoch in range(options.epochs):
        if queue_length > 0 and epoch >= options.epoch_queue_starts and queue is None:
            queue = torch.zeros(2, queue_length, options.feat_dim)
        (_, loss), queue = main_swav.train(loader, replica, optimizer, epoch, lr_schedule, queue)
        losses.append(loss)
        print(f"epoch {epoch + 1}/{options.epochs} loss {loss:.4f} "
              f"{time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start

    model.eval()
    save("trained.pth", options.epochs)
    print(json.dumps({"knn_top1_k20": knn_top1(trunk, options.data, size, options.val_split),
                      "random_init_knn_top1_k20": random_init_knn,
                      "final_loss": losses[-1], "train_seconds": seconds,
                      "images_per_second": iters * options.epochs * options.batch / seconds,
                      "epochs": options.epochs, "batch": options.batch, "seed": options.seed,
                      "image_size": size,
                      "threads": options.threads, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
