#!/usr/bin/python3
"""Lockstep reference for tools/m2teacher_lockstep_test: 20 training steps of
Momentum^2 Teacher's own code (momentum_teacher/models/m2_teacher.py with
resnet_mbn.py, the SGD of momentum2_teacher_exp.py or the LARS_SGD of the B 4096
descriptions with their parameter groups, and tools/train.py's loop and warmcos
schedule), from a checkout given by path (read, never copied into this project).

Both sides start from the same weights and see the same batches, each drawn from an
integer hash the C++ test reproduces exactly (no weights or images are stored):
u(j, seed) in [0, 1) for element j is
    h = (j * 2654435761 + seed * 40503 + 12345) mod 2^32, then
    h ^= h >> 15; h = h * 0x2c1b3c6d mod 2^32; h ^= h >> 12; h = h * 0x297a2d39 mod 2^32;
    h ^= h >> 15; u = h / 2^32
  - student parameter `name` (relative to the encoder), seed = the sum of the name's
    character codes:
      conv / Linear weights: (2u - 1) sqrt(6 / fan_in)   (He-uniform)
      1-d weights (BN):      1 + 0.1 (2u - 1)
      biases:                0.05 (2u - 1)
    and the teacher copied from the student (the original's momentum_update(m=0));
  - batch of step s (0-based), view v (1, 2), shape (8, 3, 64, 64): 4u - 2 with
    seed 100000 + 10 s + v.
The model is the original's M2Teacher with its resnet50 replaced by its own resnet18
and BYOL MLPs 512-64-32 (hidden_dim 64, low_dim 32); 4 epochs of 5 iterations, one
warmup epoch, batch 8, param_momentum 0.99 (total_iters 20, as tools/train.py sets it).

Both sides run in float64. In float32 this training is chaotic: the original's own run,
restarted with its initial weights moved by 1e-7 (relative), differs from itself by
1e-2 in the loss at step 4 and by 0.1 from step 5 on, so float32 rounding alone makes
two correct implementations part within a few steps. In float64 the same 1e-15 move
leaves all 20 losses equal to 9 digits.

Writes, per scenario, <out_dir>/m2teacher_lockstep_<scenario>.txt with the loss of
every step and, after the last step, a summary of every student and teacher tensor
(parameters and the teacher's Momentum BN running statistics): element count, sum,
sum of absolute values and four elements. Rerun with Debian's python3-torch:

    /usr/bin/python3 tools/make_m2teacher_lockstep_reference.py /path/to/momentum2-teacher tools/testdata
"""
import math
import sys

import torch

BATCH, SIZE, HIDDEN, LOW = 8, 64, 64, 32
ITERS_PER_EPOCH, EPOCHS, WARMUP_EPOCHS, WARMUP_LR = 5, 4, 1, 1e-6
# scenario: (optimizer, basic_lr_per_img, weight_decay)
SCENARIOS = {"sgd": ("sgd", 0.1 / BATCH, 1e-4), "lars": ("m2t_lars", 2.0 / BATCH, 1e-6)}


MASK = 0xFFFFFFFF
DTYPE = torch.float64


def uniform(count, seed):
    h = (torch.arange(count, dtype=torch.int64) * 2654435761 + seed * 40503 + 12345) & MASK
    h ^= h >> 15
    h = (h * 0x2C1B3C6D) & MASK
    h ^= h >> 12
    h = (h * 0x297A2D39) & MASK
    h ^= h >> 15
    return h.double() / 2.0**32


def formula(name, param):
    wave = 2.0 * uniform(param.numel(), sum(ord(c) for c in name)) - 1.0
    if param.dim() > 1:
        fan_in = param.numel() // param.shape[0]
        value = wave * math.sqrt(6.0 / fan_in)
    elif name.endswith("weight"):
        value = 1.0 + 0.1 * wave
    else:
        value = 0.05 * wave
    return value.reshape(param.shape).to(DTYPE)


def batch(step, view):
    x = 4.0 * uniform(BATCH * 3 * SIZE * SIZE, 100000 + 10 * step + view) - 2.0
    return x.reshape(BATCH, 3, SIZE, SIZE).to(DTYPE)


def summary(tensor):
    flat = tensor.detach().double().flatten()
    n = flat.numel()
    picks = [flat[k].item() for k in (0, n // 3, 2 * n // 3, n - 1)]
    return [n, flat.sum().item(), flat.abs().sum().item()] + picks


def run(checkout, scenario, out_path):
    sys.path.insert(0, checkout)
    from momentum_teacher.layers.optimizer import LARS_SGD
    from momentum_teacher.models import m2_teacher
    from momentum_teacher.models import resnet_mbn

    def small_resnet18(**kwargs):
        kwargs.update(hidden_dim=HIDDEN, low_dim=LOW)
        return resnet_mbn.resnet18(**kwargs)

    m2_teacher.resnet.resnet50 = small_resnet18  # the test model's only change
    torch.manual_seed(0)
    total = ITERS_PER_EPOCH * EPOCHS
    model = m2_teacher.M2Teacher(param_momentum=0.99, total_iters=total).to(DTYPE)
    with torch.no_grad():
        for name, param in model.student_encoder.named_parameters():
            param.copy_(formula(name, param))
    model.momentum_update(m=0)
    model.train()

    optimizer_name, basic_lr_per_img, weight_decay = SCENARIOS[scenario]
    if optimizer_name == "sgd":  # momentum2_teacher_exp.get_optimizer
        optimizer = torch.optim.SGD(model.student_encoder.parameters(), lr=WARMUP_LR,
                                    weight_decay=weight_decay, momentum=0.9)
    else:  # exp_128_2080ti's get_optimizer: groups by module type over the whole model
        nn = torch.nn
        lars, exclude = [], []
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm)):
                exclude += [m.weight, m.bias]
            elif isinstance(m, nn.Linear):
                lars.append(m.weight)
                exclude.append(m.bias)
            elif isinstance(m, nn.Conv2d):
                lars.extend(m.parameters())
        optimizer = LARS_SGD([{"params": lars, "lars_exclude": False},
                              {"params": exclude, "lars_exclude": True}],
                             lr=WARMUP_LR, weight_decay=weight_decay, momentum=0.9)
    peak = basic_lr_per_img * BATCH
    warmup = ITERS_PER_EPOCH * WARMUP_EPOCHS
    lines = [f"# momentum2-teacher lockstep reference ({scenario}), torch {torch.__version__}"]
    losses = []
    for iter_count in range(1, total + 1):
        step = iter_count - 1
        loss = model([batch(step, 1), batch(step, 2)], update_param=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        # tools/train.py's adjust_learning_rate_iter("warmcos"), after the step.
        if iter_count <= warmup:
            lr = (peak - 1e-6) * iter_count / warmup + 1e-6
        else:
            lr = peak * 0.5 * (1 + math.cos(math.pi * (iter_count - warmup) / (total - warmup)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        losses.append(loss.item())
    lines.append("losses " + " ".join(f"{v:.9e}" for v in losses))
    tensors = [("student_encoder." + n, p) for n, p in model.student_encoder.named_parameters()]
    tensors += [("teacher_encoder." + n, p) for n, p in model.teacher_encoder.named_parameters()]
    tensors += [("teacher_encoder." + n, b) for n, b in model.teacher_encoder.named_buffers()
                if n.endswith("running_mean") or n.endswith("running_var")]
    for name, tensor in tensors:
        values = summary(tensor)
        lines.append(f"{name} {values[0]} " + " ".join(f"{v:.9e}" for v in values[1:]))
    with open(out_path, "w") as out:
        out.write("\n".join(lines) + "\n")
    print(f"{scenario}: loss {losses[0]:.6f} -> {losses[-1]:.6f}; {len(tensors)} tensors")


def main(checkout, out_dir):
    for scenario in SCENARIOS:
        run(checkout, scenario, f"{out_dir}/m2teacher_lockstep_{scenario}.txt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ".")
