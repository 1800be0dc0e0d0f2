#!/usr/bin/python3
"""Writes golden data for ssl/backbones' Vision Transformer tests.

timm is not packaged by Debian, so this is a second, independent implementation of
timm's VisionTransformer layout (as moco-v3's vits.py uses it) in plain PyTorch:
module names, shapes and forward pass (pre-norm blocks, LayerNorm eps 1e-6, exact GELU,
class token read after the final norm). It writes

  - every state_dict key with its shape for ViT-S/16 and ViT-B/16 with a 1000-class
    head (timm's published counts: 22,050,664 and 86,567,656 parameters);
  - the logits of a ViT-Tiny with 8 px patches on 2 fixed 32 px images, after filling
    every tensor except pos_embed with a formula the C++ test reproduces;
  - moco-v3's sin-cos position table for a 4 x 4 grid of width 16, computed with
    Python's math module element by element.

Rerun with Debian's python3-torch:

    /usr/bin/python3 tools/make_vit_golden.py ssl/backbones/testdata
"""
import math
import sys

import torch
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c // self.heads), dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)


class VisionTransformer(nn.Module):
    def __init__(self, image, patch, dim, depth, heads, classes):
        super().__init__()
        grid = image // patch
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(sincos_table(grid, dim).unsqueeze(0), requires_grad=False)
        self.patch_embed = PatchEmbed(patch, dim)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, images):
        x = self.patch_embed.proj(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


def sincos_table(grid, dim):
    """moco-v3's table, element by element: token m's first half encodes m // grid."""
    quarter = dim // 4
    rows = [[0.0] * dim]
    for m in range(grid * grid):
        u, v = m // grid, m % grid
        row = []
        for value in (u, v):
            angles = [value / 10000 ** (i / quarter) for i in range(quarter)]
            row += [math.sin(a) for a in angles] + [math.cos(a) for a in angles]
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float32)


def fill_deterministically(model):
    """As make_torchvision_golden.py: key k's i-th element is a sinusoid of (i, k)."""
    with torch.no_grad():
        for k, (name, tensor) in enumerate(model.state_dict().items()):
            if name == "pos_embed":
                continue
            i = torch.arange(tensor.numel(), dtype=torch.float64)
            wave = torch.sin(0.1 * i + k)
            if tensor.dim() > 1:
                values = wave * math.sqrt(3.0 / (tensor.numel() // tensor.shape[0]))
            elif name.endswith("weight"):
                values = 1.0 + 0.1 * wave
            else:
                values = 0.1 * wave
            tensor.copy_(values.reshape(tensor.shape).to(tensor.dtype))


def write_keys(f, model):
    for name, tensor in model.state_dict().items():
        f.write(f"key {name} {' '.join(str(s) for s in tensor.shape)}\n")


def main(out_dir):
    # state_dict order: cls_token, pos_embed, patch_embed, blocks, norm, head (timm's).
    for arch, dim, heads in [("vit_small", 384, 12), ("vit_base", 768, 12)]:
        model = VisionTransformer(224, 16, dim, 12, heads, 1000)
        count = sum(p.numel() for p in model.parameters())
        with open(f"{out_dir}/{arch}_keys.txt", "w") as f:
            f.write(f"# {arch}/16 224 px, 1000 classes: {count} parameters\n")
            write_keys(f, model)
    model = VisionTransformer(32, 8, 192, 12, 3, 10)
    fill_deterministically(model)
    model.eval()
    images = torch.sin(0.05 * torch.arange(2 * 3 * 32 * 32, dtype=torch.float64))
    with torch.no_grad():
        logits = model(images.reshape(2, 3, 32, 32).float())
    with open(f"{out_dir}/vit_tiny_patch8_logits.txt", "w") as f:
        f.write(f"# torch {torch.__version__} vit_tiny_patch8 32 px, 10 classes: keys, logits\n")
        write_keys(f, model)
        for row in logits:
            f.write("logits " + " ".join(f"{v:.9g}" for v in row.tolist()) + "\n")
    with open(f"{out_dir}/vit_sincos_4x4_16.txt", "w") as f:
        f.write(f"# written by tools/make_vit_golden.py (torch {torch.__version__}): moco-v3's "
                "2-D sin-cos position table for a 4x4 grid, width 16, class token row first; "
                "17 rows of 16 values\n")
        for row in sincos_table(4, 16).tolist():
            f.write(" ".join(f"{v:.9g}" for v in row) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
