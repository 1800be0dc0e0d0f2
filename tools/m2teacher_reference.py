#!/usr/bin/python3
"""Accuracy parity with the original: Momentum^2 Teacher's own model code
(momentum_teacher/models/m2_teacher.py with resnet_mbn.py, from a checkout given by
path, never copied into this project) trained on CPU with Debian's python3-torch on a
small recipe, then the same kNN evaluation as //tools:knn_eval on the teacher.

The recipe matches the description cpu/momentum2_teacher_resnet18_64px of
//tools:m2teacher_train: the original's M2Teacher with its resnet50 swapped for its own
resnet18 (BYOL MLPs 512-4096-256 as built by M2Teacher), BYOL's two views as
data/transforms.py composes them but at 64 px, SGD on the student (momentum 0.9, weight
decay 1e-4), lr 0.4 / 256 per image with tools/train.py's warmcos per iteration
(1 warmup epoch), the loop of tools/train.py on one CPU process.

    /usr/bin/python3 tools/m2teacher_reference.py /path/to/momentum2-teacher \
        ../shared/datasets/imagenette [epochs] [batch] [threads]

Prints one JSON line: kNN top-1 (k=20, T=0.07, 64 px center crops of 73 px) of the
teacher, the loss of the last epoch and the training wall time.
"""
import json
import math
import os
import random
import sys
import time

import torch
import torchvision
import torchvision.transforms as T


def main():
    checkout, data = sys.argv[1], sys.argv[2]
    epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 64
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    random.seed(0)
    sys.path.insert(0, checkout)
    from momentum_teacher.data.transforms import GaussianBlur, Solarization
    from momentum_teacher.models import m2_teacher
    from momentum_teacher.models import resnet_mbn

    m2_teacher.resnet.resnet50 = resnet_mbn.resnet18  # the small recipe's only change

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
    model = m2_teacher.M2Teacher(param_momentum=0.99, total_iters=iters * epochs)
    # cpu/momentum2_teacher_resnet18_64px: lr 0.4/256 per image, 1 warmup epoch.
    lr, warmup = 0.4 / 256 * batch, iters * 1
    optimizer = torch.optim.SGD(model.student_encoder.parameters(), lr=1e-6,
                                weight_decay=1e-4, momentum=0.9)
    model.train()
    step, start, losses = 0, time.perf_counter(), []
    for epoch in range(epochs):
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

    # kNN on the teacher's pooled features (eval mode; the original's Momentum BN layers
    # ignore eval mode, so load the teacher into its plain-BN ResNet as eval.py does).
    encoder = resnet_mbn.resnet18(bn="vanilla")
    state = {k: v for k, v in model.teacher_encoder.state_dict().items() if not k.startswith("fc")}
    encoder.load_state_dict(state, strict=False)
    encoder.eval()
    center = T.Compose([T.Resize(size * 8 // 7), T.CenterCrop(size), T.ToTensor(), normalize])

    def features(split):
        folder = torchvision.datasets.ImageFolder(os.path.join(data, split), center)
        out, labels = [], []
        with torch.no_grad():
            for images, target in torch.utils.data.DataLoader(folder, batch_size=256, num_workers=2):
                out.append(torch.nn.functional.normalize(encoder(images, res5=True), dim=1))
                labels.append(target)
        return torch.cat(out), torch.cat(labels), len(folder.classes)

    bank, bank_labels, classes = features("train")
    queries, query_labels, _ = features("val")
    correct = 0
    for start_row in range(0, queries.shape[0], 500):
        sim = queries[start_row:start_row + 500] @ bank.t()
        top, index = sim.topk(20, dim=1)
        weights = (top / 0.07).exp()
        votes = torch.zeros(sim.shape[0], classes).scatter_add_(1, bank_labels[index], weights)
        correct += (votes.argmax(1) == query_labels[start_row:start_row + 500]).sum().item()
    print(json.dumps({"knn_top1_k20": 100.0 * correct / queries.shape[0],
                      "final_loss": sum(losses) / len(losses), "train_seconds": seconds,
                      "images_per_second": step * batch / seconds, "epochs": epochs,
                      "batch": batch, "threads": threads, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
