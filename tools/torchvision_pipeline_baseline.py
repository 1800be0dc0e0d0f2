#!/usr/bin/python3
"""The PyTorch baseline for //ssl/data:pipeline_benchmark: MoCo v3's two-view
augmentation (main_moco.py's recipe for ResNet, crop-min 0.2) or SwAV's multi-crop
(VISSL's swav_8node_resnet transforms: ImgPilToMultiCrop 2x224 (0.14, 1) + 6x96
(0.05, 0.14), flip, ImgPilColorDistortion strength 1, ImgPilGaussianBlur p 0.5, ToTensor,
Normalize) with torchvision + PIL, timed on one core over the same ImageFolder.

    /usr/bin/python3 tools/torchvision_pipeline_baseline.py <ImageFolder root> [seconds] [moco|multicrop|decode]

"decode" only opens and decodes each image to RGB (the floor under the pipeline).

Prints one line: images/s on one core.
"""
import os
import random
import sys
import time

import torch
import torchvision.transforms as T
from PIL import Image, ImageFilter, ImageOps


class PilGaussianBlur:
    """Blur with a radius drawn from [lo, hi], as MoCo v3's GaussianBlur."""

    def __init__(self, lo=0.1, hi=2.0):
        self.lo, self.hi = lo, hi

    def __call__(self, image):
        return image.filter(ImageFilter.GaussianBlur(radius=random.uniform(self.lo, self.hi)))


class PilSolarize:
    def __call__(self, image):
        return ImageOps.solarize(image)


def moco_v3_views(crop_min=0.2):
    normalize = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    head = [
        T.RandomResizedCrop(224, scale=(crop_min, 1.0)),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
    ]
    view1 = T.Compose(head + [T.RandomApply([PilGaussianBlur()], p=1.0),
                              T.RandomHorizontalFlip(), T.ToTensor(), normalize])
    view2 = T.Compose(head + [T.RandomApply([PilGaussianBlur()], p=0.1),
                              T.RandomApply([PilSolarize()], p=0.2),
                              T.RandomHorizontalFlip(), T.ToTensor(), normalize])
    return view1, view2


def swav_multicrop():
    normalize = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    tail = [T.RandomHorizontalFlip(p=0.5),
            T.RandomApply([T.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8), T.RandomGrayscale(p=0.2),
            T.RandomApply([PilGaussianBlur()], p=0.5), T.ToTensor(), normalize]
    large = T.Compose([T.RandomResizedCrop(224, scale=(0.14, 1.0))] + tail)
    small = T.Compose([T.RandomResizedCrop(96, scale=(0.05, 0.14))] + tail)
    return [large] * 2 + [small] * 6


def image_paths(root):
    paths = []
    for cls in sorted(os.listdir(root)):
        folder = os.path.join(root, cls)
        if os.path.isdir(folder):
            paths += [os.path.join(folder, f) for f in sorted(os.listdir(folder))]
    return paths


def main():
    root = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    torch.set_num_threads(1)
    paths = image_paths(root)
    recipe = sys.argv[3] if len(sys.argv) > 3 else "moco"
    views = {"moco": lambda: list(moco_v3_views()), "multicrop": swav_multicrop,
             "decode": lambda: []}[recipe]()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        path = paths[(count * 7919) % len(paths)]
        with open(path, "rb") as f:
            image = Image.open(f).convert("RGB")
        for view in views:
            view(image)
        count += 1
    rate = count / (time.perf_counter() - start)
    name = {"moco": "MoCo v3 two views", "multicrop": "SwAV 2x224+6x96 multi-crop",
            "decode": "read and decode"}[recipe]
    print(f"torchvision+PIL {name}: {rate:.1f} images/s on one core")


if __name__ == "__main__":
    main()
