#!/usr/bin/python3
"""SwAV's CPU training step with VISSL's own loss and head code, for comparison.

VISSL's vissl/losses/swav_loss.py, distibuted_sinkhornknopp.py and
vissl/models/heads/swav_prototypes_head.py are loaded from a checkout given by path
(never copied into this project); the Python packages they import but do not need on
one CPU process (classy_vision's distributed helpers and registries, iopath, VISSL's
config) are replaced by minimal stand-ins. The trunk is torchvision's ResNet, the
optimizer SGD with momentum inside LARC (apex's rule, written out here since apex is
not available), as VISSL configures SwAV.

    /usr/bin/python3 tools/vissl_swav_step.py /path/to/vissl [--arch resnet18] [--batch 32]
        [--large 64] [--small 32] [--prototypes 3000] [--threads 2] [--seconds 10]

Prints the loss of fixed scores (as swav_step_benchmark --loss_check does) and the
step throughput as one JSON line.
"""
import argparse
import importlib.util
import json
import sys
import time
import types

import torch
import torchvision


def stub(name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


class AttrDict(dict):
    def __getattr__(self, key):
        value = self[key]
        return AttrDict(value) if isinstance(value, dict) else value


def load_vissl(root):
    stub("classy_vision")
    stub("classy_vision.generic")
    stub("classy_vision.generic.distributed_util", all_reduce_max=lambda t: t,
         all_reduce_sum=lambda t: t, get_cuda_device_index=lambda: -1, get_rank=lambda: 0,
         get_world_size=lambda: 1)
    stub("classy_vision.losses", ClassyLoss=torch.nn.Module, register_loss=lambda name: (lambda c: c))
    stub("iopath")
    stub("iopath.common")
    stub("iopath.common.file_io", g_pathmgr=types.SimpleNamespace(open=open))
    stub("vissl")
    stub("vissl.config", AttrDict=AttrDict)
    stub("vissl.losses")
    stub("vissl.losses.distibuted_sinkhornknopp_powerlaw", distributed_sinkhorn_powerlaw=None)
    stub("vissl.models")
    stub("vissl.models.heads", register_model_head=lambda name: (lambda c: c))
    stub("vissl.utils")
    stub("vissl.utils.fsdp_utils", fsdp_wrapper=lambda module, **kwargs: module,
         fsdp_auto_wrap_bn=lambda module: module)

    def load(name, relative):
        spec = importlib.util.spec_from_file_location(name, f"{root}/{relative}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    load("vissl.losses.distibuted_sinkhornknopp", "vissl/losses/distibuted_sinkhornknopp.py")
    loss = load("vissl.losses.swav_loss", "vissl/losses/swav_loss.py")
    head = load("vissl.models.heads.swav_prototypes_head",
                "vissl/models/heads/swav_prototypes_head.py")
    return loss, head


def loss_check(loss_module):
    i = torch.arange(24, dtype=torch.float64).unsqueeze(1)
    j = torch.arange(10, dtype=torch.float64).unsqueeze(0)
    scores = (torch.sin(0.37 * i + 1.3 * j) * 0.3).float()
    values = {}
    for double in (False, True):
        criterion = loss_module.SwAVCriterion(0.1, [0, 1], 4, 3, 0.05, double, [10], 0, 8, 0, ".")
        values["double" if double else "float"] = criterion(scores, 0).item()
    return values


class Larc:
    """apex's LARC around SGD: trust ||p|| / (||g|| + wd ||p|| + eps), decay folded in."""

    def __init__(self, params, lr, weight_decay, trust=0.001, eps=1e-8):
        self.optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=0)
        self.weight_decay, self.trust, self.eps = weight_decay, trust, eps

    @torch.no_grad()
    def step(self):
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                param_norm, grad_norm = torch.norm(p.data), torch.norm(p.grad.data)
                if param_norm != 0 and grad_norm != 0:
                    adaptive = self.trust * param_norm / (
                        grad_norm + param_norm * self.weight_decay + self.eps)
                    p.grad.data += self.weight_decay * p.data
                    p.grad.data *= adaptive
        self.optimizer.step()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("vissl")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--large", type=int, default=64)
    parser.add_argument("--small", type=int, default=32)
    parser.add_argument("--prototypes", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loss_module, head_module = load_vissl(args.vissl)
    check = loss_check(loss_module)

    torch.manual_seed(0)
    trunk = getattr(torchvision.models, args.arch)()
    width = trunk.fc.in_features
    trunk.fc = torch.nn.Identity()
    model_config = AttrDict(HEAD=AttrDict(BATCHNORM_EPS=1e-5, BATCHNORM_MOMENTUM=0.1))
    head = head_module.SwAVPrototypesHead(model_config, dims=[width, 2048, 128], use_bn=True,
                                          num_clusters=[args.prototypes])
    loss_config = AttrDict(temperature=0.1, crops_for_assign=[0, 1], num_crops=6, num_iters=3,
                           epsilon=0.05, use_double_precision=False,
                           num_prototypes=[args.prototypes], embedding_dim=128,
                           temp_hard_assignment_iters=0, output_dir=".",
                           queue=AttrDict(queue_length=0, start_iter=0, local_queue_length=0))
    criterion = loss_module.SwAVLoss(loss_config)
    params = list(trunk.parameters()) + list(head.parameters())
    optimizer = Larc(params, lr=0.1, weight_decay=1e-6)
    crops = [torch.randn(2 * args.batch, 3, args.large, args.large),
             torch.randn(4 * args.batch, 3, args.small, args.small)]
    trunk.train()
    head.train()

    def step():
        with torch.no_grad():  # VISSL's NormalizePrototypesHook
            w = head.prototypes0.weight.data.clone()
            head.prototypes0.weight.copy_(torch.nn.functional.normalize(w, dim=1, p=2))
        features = torch.cat([trunk(group) for group in crops])
        loss = criterion(head(features), None)
        optimizer.optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    step()  # warm-up
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        step()
        steps += 1
    elapsed = time.perf_counter() - start
    print(json.dumps({"vissl_loss_check": check, "steps_per_second": steps / elapsed,
                      "images_per_second": steps * args.batch / elapsed, "steps": steps,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
