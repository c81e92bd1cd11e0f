"""Trains the bundled demo model (models/shapes) on the Rust shapes generator's data.

    cargo run --release --example shapes_dataset -- /tmp/shapes-train 24000 1
    python scripts/train_shapes.py /tmp/shapes-train models/shapes/shapes.safetensors

Layer names and settings mirror models/shapes/model.toml. Single-shape images are trained with
their class; two-shape images with half the target on each class. Seeded and single-process, so
the same data gives the same weights (up to the CPU's floating-point summation order).
"""

import sys
import time
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import save_file

MEAN, STD = 0.5, 0.25
CLASSES = 6


def shapes_net():
    widths = [3, 16, 32, 64, 96, 128]
    layers = []
    for i in range(1, 6):
        layers += [(f"conv{i}", nn.Conv2d(widths[i - 1], widths[i], 3, padding=1, bias=False)),
                   (f"bn{i}", nn.BatchNorm2d(widths[i])), (f"relu{i}", nn.ReLU())]
        if i <= 3:
            layers.append((f"pool{i}", nn.MaxPool2d(2)))
    layers += [("gap", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("fc", nn.Linear(128, CLASSES))]
    return nn.Sequential(OrderedDict(layers))


def main(data_dir, out_path, epochs=8, batch=64, seed=0):
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    images = torch.from_numpy(np.load(f"{data_dir}/images.npy")).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(np.load(f"{data_dir}/labels.npy").astype(np.int64))
    target = torch.zeros(len(labels), CLASSES)
    target[torch.arange(len(labels)), labels[:, 0]] += 0.5
    target[torch.arange(len(labels)), labels[:, 1]] += 0.5
    model = shapes_net()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * (len(images) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    start = time.time()
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=gen)
        total, correct = 0.0, 0
        for i in range(len(images) // batch):
            idx = order[i * batch:(i + 1) * batch]
            x = (images[idx].float() / 255.0 - MEAN) / STD
            logits = model(x)
            loss = -(target[idx] * logits.log_softmax(1)).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
            correct += (logits.argmax(1) == labels[idx, 0]).sum().item()
        n = len(images) // batch
        print(f"epoch {epoch + 1}/{epochs}: loss {total / n:.4f}, top-1 {correct / (n * batch):.3f}, "
              f"{time.time() - start:.0f} s", flush=True)
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()
          if not k.endswith("num_batches_tracked")}
    save_file(sd, out_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
