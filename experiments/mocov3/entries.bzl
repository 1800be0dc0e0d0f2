"""MoCo v3 experiment entries: the paper's ResNet-50 table and small-scale CPU entries.

Flags are deltas from //tools:run_experiment's defaults, which are main_moco.py's
flags at the ResNet-50 100-epoch recipe (batch 4096, LARS, lr 0.6, wd 1e-6, warmup 10,
cosine momentum from 0.99, crop-min 0.2) plus MoCo v3's linear protocol (90 epochs,
batch 1024, lr 0.1, cosine).
"""

# ResNet-50 on ImageNet (MoCo v3 README / CONFIG.md), linear top-1. Runnable given
# --data=<ImageNet root with train/ and val/>; pending here (no GPU cluster).
_IMAGENET = [
    dict(
        name = "r50_100ep",
        method = "mocov3",
        table = "ResNet-50 linear, 100 ep",
        dataset = "imagenet",
        flags = ["--epochs=100", "--lr=0.6", "--weight_decay=1e-6", "--random_init_baseline=false"],
        reference = {"linear_top1": 68.9},
        tolerance = {"linear_top1": 0.5},
        source = "published",
    ),
    dict(
        name = "r50_300ep",
        method = "mocov3",
        table = "ResNet-50 linear, 300 ep",
        dataset = "imagenet",
        flags = ["--epochs=300", "--lr=0.3", "--weight_decay=1e-6", "--random_init_baseline=false"],
        reference = {"linear_top1": 72.8},
        tolerance = {"linear_top1": 0.5},
        source = "published",
    ),
    dict(
        name = "r50_1000ep",
        method = "mocov3",
        table = "ResNet-50 linear, 1000 ep",
        dataset = "imagenet",
        flags = ["--epochs=1000", "--lr=0.3", "--weight_decay=1.5e-6", "--moco_m=0.996",
                 "--random_init_baseline=false"],
        reference = {"linear_top1": 74.6},
        tolerance = {"linear_top1": 0.5},
        source = "published",
    ),
]

MOCOV3_ENTRIES = _IMAGENET
