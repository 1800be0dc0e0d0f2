#!/usr/bin/python3
"""Accuracy parity with the original: Momentum^2 Teacher's own model code
(momentum_teacher/models/m2_teacher.py with resnet_mbn.py, from a checkout given by
path, never copied into this project) trained on CPU with Debian's python3-torch on a
small recipe, then the same kNN evaluation as //tools:knn_eval on the teacher, at random
init (before training, the same architecture in the same run) and after training.

The recipe follows the descriptions cpu/momentum2_teacher_resnet18_64px (--arch
resnet18) and cpu/momentum2_teacher_resnet18w025_64px (--arch resnet18w0.25) of
//tools:m2teacher_train: the original's M2Teacher with its resnet50 swapped for its own
resnet18 (for resnet18w0.25 its widths 64/128/256/512 divided by 4 when the module is
loaded: the stem and the four stages, as this framework's narrow ResNet-18) and BYOL
MLPs of the given widths, BYOL's two views as data/transforms.py composes them but at
64 px, SGD on the student (momentum 0.9), basic_lr_per_img x batch with tools/train.py's
warmcos per iteration, the loop of tools/train.py on one CPU process.

    /usr/bin/python3 tools/m2teacher_reference.py /path/to/momentum2-teacher \
        ../shared/datasets/imagenette [--epochs 2] [--arch resnet18w0.25] [--seed 0] ...

Prints one JSON line: kNN top-1 (k=20, T=0.07, 64 px center crops of 73 px) of the
teacher after training and at random init, the loss of the last epoch and the training
wall time. --stop_after_epochs N trains the first N epochs of the
--epochs schedule (as m2teacher_train --max_epochs_this_run). With --save_dir, also writes the trained model there as the original's
last_epoch_ckpt.pth.tar ({"model": state_dict}), for //tools:knn_eval.
"""
import argparse
import json
import math
import os
import random
import sys
import time
import types

import torch
import torchvision
import torchvision.transforms as T


def load_resnet_mbn(checkout, arch):
    """The original's resnet_mbn module; for resnet18w0.25 its widths divided by 4."""
    path = f"{checkout}/momentum_teacher/models/resnet_mbn.py"
    source = open(path).read()
    if arch == "resnet18w0.25":
        for wide, narrow in [("self.inplanes = 64", "self.inplanes = 16"),
                             ("self._make_layer(block, 64,", "self._make_layer(block, 16,"),
                             ("self._make_layer(block, 128,", "self._make_layer(block, 32,"),
                             ("self._make_layer(block, 256,", "self._make_layer(block, 64,"),
                             ("self._make_layer(block, 512,", "self._make_layer(block, 128,"),
                             ("nn.Linear(512 * block.expansion", "nn.Linear(128 * block.expansion")]:
            assert wide in source, f"unexpected resnet_mbn.py: {wide!r} moved"
            source = source.replace(wide, narrow)
    elif arch != "resnet18":
        raise SystemExit(f"--arch must be resnet18 or resnet18w0.25, got {arch}")
    module = types.ModuleType("momentum_teacher.models.resnet_mbn")
    module.__file__ = path
    exec(compile(source, path, "exec"), module.__dict__)
    sys.modules["momentum_teacher.models.resnet_mbn"] = module
    return module


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("checkout")
    parser.add_argument("data")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--hidden_dim", type=int, default=4096)
    parser.add_argument("--low_dim", type=int, default=256)
    parser.add_argument("--basic_lr_per_img", type=float, default=0.4 / 256)
    parser.add_argument("--warmup_epochs", type=int, default=1)
    parser.add_argument("--weight_decay", type=float, default=1e-4)
    parser.add_argument("--param_momentum", type=float, default=0.99)
    parser.add_argument("--val_split", default="val")
    parser.add_argument("--save_dir", default="")
    parser.add_argument("--stop_after_epochs", type=int, default=0,
                        help="train only the first N epochs of the --epochs schedule (0: all)")
    args = parser.parse_args()
    checkout, data, epochs, batch = args.checkout, args.data, args.epochs, args.batch
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    sys.path.insert(0, checkout)
    resnet_mbn = load_resnet_mbn(checkout, args.arch)
    from momentum_teacher.data.transforms import GaussianBlur, Solarization
    from momentum_teacher.models import m2_teacher
    assert m2_teacher.resnet is resnet_mbn

    def encoder(**kwargs):  # the small recipe's only change: resnet18 and the MLP widths
        kwargs.update(hidden_dim=args.hidden_dim, low_dim=args.low_dim)
        return resnet_mbn.resnet18(**kwargs)
    m2_teacher.resnet.resnet50 = encoder

    size = 64
    normalize = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    common = [T.RandomResizedCrop(size, scale=(0.08, 1.0)),
              T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8)]
    view1 = T.Compose(common + [T.RandomApply([GaussianBlur([0.1, 2.0])], p=1.0),
                                T.RandomGrayscale(p=0.2), T.RandomHorizontalFlip(),
                                T.ToTensor(), normalize])
    view2 = T.Compose(common + [T.RandomApply([GaussianBlur([0.1, 2.0])], p=0.1),
                                T.RandomGrayscale(p=0.2), T.RandomHorizontalFlip(),
                                T.RandomApply([Solarization()], p=0.2), T.ToTensor(), normalize])

    class TwoViews(torchvision.datasets.ImageFolder):
        def __getitem__(self, index):
            path, target = self.samples[index]
            image = self.loader(path).convert("RGB")
            return [view1(image), view2(image)], target

    train = TwoViews(os.path.join(data, "train"))
    loader = torch.utils.data.DataLoader(train, batch_size=batch, shuffle=True, drop_last=True,
                                         num_workers=2)
    iters = len(loader)
    model = m2_teacher.M2Teacher(param_momentum=args.param_momentum, total_iters=iters * epochs)
    center = T.Compose([T.Resize(size * 8 // 7), T.CenterCrop(size), T.ToTensor(), normalize])

    def knn_top1(teacher_state):
        # kNN on the teacher's pooled features (eval mode; the original's Momentum BN
        # layers ignore eval mode, so load the teacher into its plain-BN ResNet as eval.py does).
        trunk = resnet_mbn.resnet18(bn="vanilla")
        state = {k: v for k, v in teacher_state.items() if not k.startswith("fc")}
        trunk.load_state_dict(state, strict=False)
        trunk.eval()

        def features(split):
            folder = torchvision.datasets.ImageFolder(os.path.join(data, split), center)
            out, labels = [], []
            with torch.no_grad():
                for images, target in torch.utils.data.DataLoader(folder, batch_size=256,
                                                                  num_workers=2):
                    out.append(torch.nn.functional.normalize(trunk(images, res5=True), dim=1))
                    labels.append(target)
            return torch.cat(out), torch.cat(labels), len(folder.classes)

        bank, bank_labels, classes = features("train")
        queries, query_labels, _ = features(args.val_split)
        correct = 0
        for row in range(0, queries.shape[0], 500):
            sim = queries[row:row + 500] @ bank.t()
            top, index = sim.topk(20, dim=1)
            weights = (top / 0.07).exp()
            votes = torch.zeros(sim.shape[0], classes).scatter_add_(1, bank_labels[index], weights)
            correct += (votes.argmax(1) == query_labels[row:row + 500]).sum().item()
        return 100.0 * correct / queries.shape[0]

    random_init_knn = knn_top1(model.teacher_encoder.state_dict())
    lr, warmup = args.basic_lr_per_img * batch, iters * args.warmup_epochs
    optimizer = torch.optim.SGD(model.student_encoder.parameters(), lr=1e-6,
                                weight_decay=args.weight_decay, momentum=0.9)
    model.train()
    step, start, losses = 0, time.perf_counter(), []
    trained = min(epochs, args.stop_after_epochs or epochs)
    for epoch in range(trained):
        losses = []
        for inps, _ in loader:
            step += 1
            loss = model(inps, update_param=True)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            # tools/train.py's adjust_learning_rate_iter("warmcos") after the step.
            if step <= warmup:
                current = (lr - 1e-6) * step / warmup + 1e-6
            else:
                current = lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (iters * epochs - warmup)))
            for group in optimizer.param_groups:
                group["lr"] = current
            losses.append(loss.item())
        print(f"epoch {epoch + 1}/{epochs} loss {sum(losses) / len(losses):.4f} "
              f"{time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    if args.save_dir:
        os.makedirs(args.save_dir, exist_ok=True)
        torch.save({"start_epoch": trained, "model": model.state_dict()},
                   os.path.join(args.save_dir, "last_epoch_ckpt.pth.tar"))
    print(json.dumps({"knn_top1_k20": knn_top1(model.teacher_encoder.state_dict()),
                      "random_init_knn_top1_k20": random_init_knn,
                      "final_loss": sum(losses) / len(losses), "train_seconds": seconds,
                      "images_per_second": step * batch / seconds, "epochs": epochs,
                      "epochs_trained": trained,
                      "batch": batch, "threads": args.threads, "seed": args.seed,
                      "arch": args.arch, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
