"""Writes checkpoints in the layouts of the PyTorch originals, with Debian's python3-torch.

    write_torch_files.py <dir>

Every file holds a ResNet-18 (64-px input, BN running stats randomized so that eval-mode
features depend on them); <dir>/reference.pth holds an input batch and the features
Python computes from each file's backbone, for the C++ reader to match.
"""
import argparse
import collections
import sys

import torch
import torchvision


def resnet(seed):
    torch.manual_seed(seed)
    model = torchvision.models.resnet18()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def features(model, images):
    trunk = torch.nn.Sequential(*list(model.children())[:-1])
    with torch.no_grad():
        return torch.flatten(trunk(images), 1)


def prefixed(prefix, state):
    return collections.OrderedDict((prefix + k, v) for k, v in state.items())


def main(out):
    torch.manual_seed(1)
    images = torch.randn(2, 3, 64, 64)
    base, other = resnet(2), resnet(3)
    sgd = torch.optim.SGD(base.parameters(), lr=0.1, momentum=0.9)
    base(images).sum().backward()
    sgd.step()  # an optimizer state with momentum buffers, as real checkpoints carry
    base.eval()
    reference = {"images": images, "base": features(base, images),
                 "other": features(other, images)}

    # torchvision: a bare OrderedDict, zip and legacy formats.
    torch.save(base.state_dict(), f"{out}/torchvision.pth")
    torch.save(base.state_dict(), f"{out}/torchvision_legacy.pth",
               _use_new_zipfile_serialization=False)
    # MoCo v3's main_moco.py: module.base_encoder / module.momentum_encoder under DDP.
    state = prefixed("module.base_encoder.", base.state_dict())
    state.update(prefixed("module.momentum_encoder.", other.state_dict()))
    state["module.predictor.0.weight"] = torch.randn(8, 512)
    torch.save({"epoch": 100, "arch": "resnet18", "state_dict": state,
                "optimizer": sgd.state_dict(), "scaler": {}},
               f"{out}/checkpoint_0099.pth.tar")
    # DeiT / timm: {'model': state dict, 'args': argparse.Namespace}.
    torch.save({"model": base.state_dict(), "epoch": 3,
                "args": argparse.Namespace(lr=5e-4, model="resnet18")},
               f"{out}/deit.pth")
    # VISSL: classy_state_dict.base_model.model.trunk._feature_blocks.*
    trunk = collections.OrderedDict(
        ("_feature_blocks." + k, v) for k, v in base.state_dict().items()
        if not k.startswith("fc."))
    heads = collections.OrderedDict([("0.clf.0.weight", torch.randn(4, 512))])
    torch.save({"phase_idx": 4, "iteration": 40, "iteration_num": 40, "train_phase_idx": 4,
                "loss": {}, "classy_state_dict": {
                    "train": True, "phase_idx": 4, "train_phase_idx": 4, "num_updates": 40,
                    "base_model": {"model": {"trunk": trunk, "heads": heads}, "meta": {}}}},
               f"{out}/model_final_checkpoint_phase4.torch", _use_new_zipfile_serialization=False)
    # Momentum^2 Teacher's tools/train.py: the teacher is `other` here.
    state = prefixed("module.student_encoder.", base.state_dict())
    state.update(prefixed("module.teacher_encoder.", other.state_dict()))
    torch.save({"start_epoch": 7, "model": state, "optimizer": sgd.state_dict()},
               f"{out}/last_epoch_ckpt.pth.tar")
    # The SwAV repository's main_swav.py: its ResNet under DDP, the projection head and
    # prototypes beside the trunk, no fc.
    state = prefixed("module.", collections.OrderedDict(
        (k, v) for k, v in base.state_dict().items() if not k.startswith("fc.")))
    state["module.projection_head.0.weight"] = torch.randn(16, 512)
    state["module.projection_head.1.running_mean"] = torch.randn(16)
    state["module.prototypes.weight"] = torch.randn(10, 16)
    torch.save({"epoch": 5, "state_dict": state, "optimizer": sgd.state_dict()},
               f"{out}/swav_checkpoint.pth.tar")
    # Tensors sharing one storage (views), in both formats.
    whole = torch.arange(24, dtype=torch.float64).reshape(4, 6)
    shared = {"whole": whole, "row": whole[1], "column": whole[:, 2], "flat": whole.view(-1)[5:9],
              "ints": torch.tensor([1, -2, 3], dtype=torch.int64),
              "half": torch.tensor([0.5, -1.25], dtype=torch.float16),
              "empty": torch.zeros(0, 3), "scalar": torch.tensor(2.5),
              "nested": [1, 2.5, "text", None, True, (3, 4)], "bigint": 2**40, "neg": -7}
    torch.save(shared, f"{out}/shared.pth")
    torch.save(shared, f"{out}/shared_legacy.pth", _use_new_zipfile_serialization=False)
    # Not checkpoints.
    with open(f"{out}/garbage.pth", "wb") as f:
        f.write(b"this is not a checkpoint\n" * 10)
    with open(f"{out}/torchvision.pth", "rb") as f:
        whole_file = f.read()
    with open(f"{out}/truncated.pth", "wb") as f:
        f.write(whole_file[: len(whole_file) // 2])
    with open(f"{out}/torchvision_legacy.pth", "rb") as f:
        whole_file = f.read()
    with open(f"{out}/truncated_legacy.pth", "wb") as f:
        f.write(whole_file[: len(whole_file) // 2])
    # A ResNet-18 whose layer2 is narrower than the framework's resnet18: wrong shapes.
    state = base.state_dict()
    state["layer2.0.conv1.weight"] = torch.zeros(64, 64, 3, 3)
    torch.save(state, f"{out}/wrong_shape.pth")
    torch.save(reference, f"{out}/reference.pth")


if __name__ == "__main__":
    main(sys.argv[1])
