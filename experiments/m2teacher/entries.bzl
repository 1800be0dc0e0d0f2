"""Momentum^2 Teacher experiment entries: the README's four ResNet-50 tables, and
small-scale CPU entries.

Entries run //tools:m2teacher_train with a description (--m2t_recipe, the original's -f),
the global batch (--batch_size, -b), epochs and device ids (--m2t_devices, -d), then
evaluate the teacher's backbone.
"""

# ImageNet, linear top-1 of the teacher's ResNet-50 with the original's BYOL protocol
# (Linear + BatchNorm1d, 80 epochs, lr 0.2 x B / 256, cosine per iteration). Pending
# here (no GPU cluster).
def _imagenet(setup, recipe, batch, devices, epochs, top1, machines = 1):
    extra = "" if machines == 1 else " (on each of %d machines: MACHINE=<k> MACHINE_TOTAL=%d)" % (
        machines,
        machines,
    )
    return dict(
        name = "r50_%s_%dep" % (setup, epochs),
        method = "m2teacher",
        table = "ResNet-50, %s, %d ep" % ({
            "8v100": "8 V100, B 1024",
            "8x2080ti": "8 2080Ti, B 256",
            "32v100": "32 V100, B 4096",
            "128x2080ti": "128 2080Ti, B 4096",
        }[setup], epochs),
        dataset = "imagenet",
        flags = [
            "--m2t_recipe=" + recipe % epochs,
            "--batch_size=%d" % batch,
            "--epochs=%d" % epochs,
            "--m2t_devices=" + devices,
            "--random_init_baseline=false",
            "--linear_classifier_bn",
            "--linear_bn_samples=32",  # the original's BN over the 32 images of each GPU
            "--linear_schedule=cos_iter",
            "--linear_epochs=80",
            "--linear_batch_size=256",
            "--linear_lr=0.2",
        ],
        reference = {"linear_top1": top1},
        tolerance = {"linear_top1": 0.5},
        source = "published",
        command_extra = extra,
    )

_V100 = "exp_8_v100/momentum2_teacher_%de_exp"
_2080 = "exp_8_2080ti/momentum2_teacher_%de_32batch_1mm_099_exp"
_4096 = "exp_128_2080ti/momentum2_teacher_%de_4096batch_16mm_exp"

_IMAGENET = [
    _imagenet("8v100", _V100, 1024, "0-7", 100, 70.7),
    _imagenet("8v100", _V100, 1024, "0-7", 200, 72.7),
    _imagenet("8v100", _V100, 1024, "0-7", 300, 73.8),
    _imagenet("8x2080ti", _2080, 256, "0-7", 100, 70.4),
    _imagenet("8x2080ti", _2080, 256, "0-7", 200, 72.3),
    _imagenet("8x2080ti", _2080, 256, "0-7", 300, 72.9),
    _imagenet("32v100", _4096, 4096, "0-7", 100, 70.3, machines = 4),
    _imagenet("32v100", _4096, 4096, "0-7", 200, 72.5, machines = 4),
    _imagenet("32v100", _4096, 4096, "0-7", 300, 73.7, machines = 4),
    _imagenet("128x2080ti", _4096, 4096, "0-7", 100, 69.0, machines = 16),
    _imagenet("128x2080ti", _4096, 4096, "0-7", 200, 71.5, machines = 16),
    _imagenet("128x2080ti", _4096, 4096, "0-7", 300, 72.3, machines = 16),
]

# Small-scale entries for 2-core CPU machines: the cpu/momentum2_teacher_resnet18w025_64px
# description (the method and its B 1024 SGD recipe on a narrow ResNet-18 with 64 px
# crops and 512-128 heads, one process, batch 64, a per-image lr of 0.4 / 256, 1 warmup
# epoch), evaluated like the other methods' CPU entries (kNN; linear on cached
# center-crop features, 30 epochs) so that the three compare. References are this
# framework's first recorded results.
_CPU = [
    "--m2t_recipe=cpu/momentum2_teacher_resnet18w025_64px",
    "--batch_size=64",
    "--linear_cached_features",
    "--linear_epochs=30",
    "--linear_batch_size=256",
    "--linear_lr=2.0",
    "--threads=2",
    "--workers=2",
]

# Learning starts late at this scale: with the description's lr (0.4 / 256 per image)
# no 8-epoch run of the recorded sweep (results/m2teacher/sweep_imagenette.md) gains
# more than 2 kNN points, whatever the lr, optimizer or view strength; at twice that lr
# a 45-epoch run reads 25.9, 30.4, 32.3, 34.2, 34.8, 36.7, 37.2 at epochs 5, 10, ..., 35.
# The entries below use that lr (--m2t_set=basic_lr_per_img=0.003125) and floors on
# the gain over random init measured in the same run. The 4-epoch CI entry they replace
# ended at random init (kNN 25.10 vs 25.89) and checked only its loss.
_LR2X = "--m2t_set=basic_lr_per_img=0.003125"

_SMALL = [
    dict(
        name = "imagenette_10ep",
        method = "m2teacher",
        table = "Imagenette, 64 px, the first 10 of imagenette_45ep's epochs (CI regression)",
        dataset = "imagenette",
        # A whole 10-epoch run gains under 1 point (its cosine lr and teacher momentum run
        # out before learning starts: sweep rows ci_lr2x, ci_lr2x_m096); the first 10
        # epochs of the 45-epoch schedule gain 4.5.
        flags = _CPU + ["--epochs=45", _LR2X, "--m2t_stop_after_epochs=10"],
        reference = {"knn_top1_k20": 30.42},
        tolerance = {"knn_top1_k20": 3.0},
        minimum = {"gain.knn_top1_k20": 3.0},
        source = "recorded",
        ci_test = True,
        description = "About 4 minutes; runs in bazel test on ../shared/datasets/imagenette.",
    ),
    dict(
        name = "imagenette_equal_time",
        method = "m2teacher",
        table = "Imagenette, 64 px, the time budget of MoCo v3 imagenette_15ep",
        dataset = "imagenette",
        flags = _CPU + ["--epochs=13"],
        reference = {"knn_top1_k20": 28.94},
        tolerance = {"knn_top1_k20": 3.0},
        source = "recorded",
        comparison = "imagenette_equal_time",
    ),
    dict(
        name = "imagenette_45ep",
        method = "m2teacher",
        table = "Imagenette, 64 px, 45 ep (~16 min on 2 cores)",
        dataset = "imagenette",
        flags = _CPU + ["--epochs=45", _LR2X],
        reference = {"knn_top1_k20": 37.55, "linear_top1": 43.03},
        tolerance = {"knn_top1_k20": 3.0, "linear_top1": 3.0},
        minimum = {"gain.knn_top1_k20": 8.0, "gain.linear_top1": 5.0},
        source = "recorded",
    ),
    dict(
        name = "cifar10_3ep",
        method = "m2teacher",
        table = "CIFAR-10, 32 px upsampled to 64 px crops, 3 ep",
        dataset = "cifar10",
        flags = _CPU + ["--epochs=3", "--val_split=test"],
        reference = {"knn_top1_k20": 37.37},
        tolerance = {"knn_top1_k20": 3.0},
        source = "recorded",
    ),
]

M2TEACHER_ENTRIES = _IMAGENET + _SMALL
