#!/usr/bin/python3
"""Lockstep reference for tools/mocov3_vit_lockstep_test: 20 training steps of MoCo v3
with a ViT as moco-v3's own code runs them (moco/builder.py's MoCo_ViT around vits.py's
VisionTransformerMoCo with --stop-grad-conv1, main_moco.py's AdamW over
model.parameters(), its per-iteration adjust_learning_rate and adjust_moco_momentum),
from a checkout given by path (read, never copied into this project).

timm is not packaged by Debian, so vits.py's base class comes from a stand-in `timm`
module built here on tools/make_vit_golden.py's independent implementation of timm's
VisionTransformer layout (pre-norm blocks, LayerNorm eps 1e-6, exact GELU, class token
after the final norm); vits.py itself runs unchanged: its initialization, its fixed
sin-cos position table and its stop_grad_conv1.

Both sides start from the same weights and see the same batches, drawn from the integer
hash of tools/make_m2teacher_lockstep_reference.py (u(j, seed) in [0, 1)):
  - every parameter of the base encoder and the predictor except pos_embed, named as in
    model.named_parameters(), seed = the sum of the name's character codes:
      >= 2-d tensors: (2u - 1) sqrt(6 / fan_in); 1-d weights: 1 + 0.1 (2u - 1);
      biases: 0.05 (2u - 1);
    the momentum encoder copied from the base encoder (as MoCo.__init__ does);
  - batch of step s (0-based), view v (1, 2), shape (8, 3, 32, 32): 4u - 2 with seed
    100000 + 10 s + v.
The model is vit_tiny with 8 px patches at 32 px (192 wide, 12 blocks, 3 heads), MLPs
192-64-64-32 (projector) and 32-64-32 (predictor), T 0.2, moco_m 0.99 raised along the
cosine; 4 epochs of 5 iterations, 1 warmup epoch, base lr 0.05 (x 8 / 256), weight
decay 0.1. Both sides run in float64 (see the M2T reference script on float32 chaos).

Writes <out_dir>/mocov3_vit_lockstep.txt: the loss of every step and, after the last
step, a summary of every base, momentum and predictor tensor (parameters and BN running
statistics): element count, sum, sum of |x| and four elements. Rerun with Debian's
python3-torch:

    /usr/bin/python3 tools/make_mocov3_vit_lockstep_reference.py /path/to/moco-v3 tools/testdata
"""
import math
import os
import socket
import sys
import types
from functools import partial

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_m2teacher_lockstep_reference as m2t  # noqa: E402 (the hash and summaries)
import make_vit_golden as golden  # noqa: E402 (the timm layout)
from mocov3_reference_step import load_moco  # noqa: E402 (builder.py made CPU-only)

BATCH, SIZE, PATCH, DIM, DEPTH, HEADS = 8, 32, 8, 192, 12, 3
MOCO_DIM, MLP_DIM, TEMPERATURE, MOCO_M = 32, 64, 0.2, 0.99
ITERS_PER_EPOCH, EPOCHS, WARMUP_EPOCHS = 5, 4, 1
BASE_LR, WEIGHT_DECAY = 0.05, 0.1
DTYPE = torch.float64


class PatchEmbed(nn.Module):
    """timm's PatchEmbed: a strided convolution, patches flattened row-major."""

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768):
        super().__init__()
        self.img_size = (img_size, img_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """timm 0.4's constructor and forward, on make_vit_golden's blocks."""

    def __init__(self, img_size=224, patch_size=16, in_chans=3, num_classes=1000,
                 embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0, qkv_bias=True,
                 norm_layer=None, embed_layer=PatchEmbed):
        super().__init__()
        assert qkv_bias and mlp_ratio == 4 and embed_layer is PatchEmbed
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.num_tokens = 1
        self.patch_embed = embed_layer(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, embed_dim))
        self.blocks = nn.Sequential(*[golden.Block(embed_dim, num_heads) for _ in range(depth)])
        self.norm = norm_layer(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


def install_timm_stand_in():
    modules = {}
    for name in ["timm", "timm.models", "timm.models.vision_transformer", "timm.models.layers",
                 "timm.models.layers.helpers"]:
        modules[name] = sys.modules[name] = types.ModuleType(name)
    modules["timm.models.vision_transformer"].VisionTransformer = VisionTransformer
    modules["timm.models.vision_transformer"]._cfg = lambda **kwargs: dict(kwargs)
    modules["timm.models.layers"].PatchEmbed = PatchEmbed
    modules["timm.models.layers.helpers"].to_2tuple = lambda x: (x, x)


def load_vits(checkout):
    install_timm_stand_in()
    vits = types.ModuleType("vits")
    path = f"{checkout}/vits.py"
    exec(compile(open(path).read(), path, "exec"), vits.__dict__)
    return vits


def main(checkout, out_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                                         world_size=1, rank=0)
    builder, _, _ = load_moco(checkout)
    vits = load_vits(checkout)
    torch.manual_seed(0)
    # main_moco.py: partial(vits.__dict__[arch], stop_grad_conv1=...) for MoCo_ViT.
    encoder = partial(vits.VisionTransformerMoCo, img_size=SIZE, patch_size=PATCH,
                      embed_dim=DIM, depth=DEPTH, num_heads=HEADS, mlp_ratio=4, qkv_bias=True,
                      norm_layer=partial(nn.LayerNorm, eps=1e-6), stop_grad_conv1=True)
    model = builder.MoCo_ViT(encoder, MOCO_DIM, MLP_DIM, TEMPERATURE).to(DTYPE)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith("momentum_encoder.") or name.endswith("pos_embed"):
                continue
            param.copy_(m2t.formula(name, param))
        for base, momentum in zip(model.base_encoder.parameters(),
                                  model.momentum_encoder.parameters()):
            momentum.copy_(base)
    model.train()
    frozen = [n for n, p in model.base_encoder.named_parameters() if not p.requires_grad]
    assert frozen == ["pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"], frozen

    lr = BASE_LR * BATCH / 256
    optimizer = torch.optim.AdamW(model.parameters(), lr, weight_decay=WEIGHT_DECAY)
    losses = []
    for step in range(ITERS_PER_EPOCH * EPOCHS):
        epoch = step / ITERS_PER_EPOCH  # epoch + i / iters_per_epoch
        if epoch < WARMUP_EPOCHS:
            step_lr = lr * epoch / WARMUP_EPOCHS
        else:
            step_lr = lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - WARMUP_EPOCHS) /
                                                 (EPOCHS - WARMUP_EPOCHS)))
        for group in optimizer.param_groups:
            group["lr"] = step_lr
        moco_m = 1.0 - 0.5 * (1.0 + math.cos(math.pi * epoch / EPOCHS)) * (1.0 - MOCO_M)
        views = [(4.0 * m2t.uniform(BATCH * 3 * SIZE * SIZE, 100000 + 10 * step + v) - 2.0)
                 .reshape(BATCH, 3, SIZE, SIZE).to(DTYPE) for v in (1, 2)]
        loss = model(views[0], views[1], moco_m)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    lines = [f"# moco-v3 MoCo_ViT lockstep reference, torch {torch.__version__}",
             "losses " + " ".join(f"{v:.9e}" for v in losses)]
    tensors = list(model.named_parameters())
    tensors += [(n, b) for n, b in model.named_buffers()
                if n.endswith("running_mean") or n.endswith("running_var")]
    for name, tensor in tensors:
        values = m2t.summary(tensor)
        lines.append(f"{name} {values[0]} " + " ".join(f"{v:.9e}" for v in values[1:]))
    with open(f"{out_dir}/mocov3_vit_lockstep.txt", "w") as out:
        out.write("\n".join(lines) + "\n")
    print(f"loss {losses[0]:.6f} -> {losses[-1]:.6f}; {len(tensors)} tensors")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ".")
