"""A harder bundled task for distillation: scikit-learn's 8x8 digits, upsampled to 16x16 and distorted (random
rotation, scale, shift, stroke noise), several distortions per image. Train and test come from disjoint source
images, so test accuracy is on digits the models never saw in any form. Generated here: nothing downloaded.

Also the teacher and student CNNs (ResNet-style, same family at two widths) used by bench_distill.py.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

SIZE = 16


def _distort(images: torch.Tensor, copies: int, generator: torch.Generator) -> torch.Tensor:
    x = images.repeat_interleave(copies, 0)
    n = x.shape[0]
    angle = (torch.rand(n, generator=generator) - 0.5) * math.radians(40)
    scale = 0.85 + 0.3 * torch.rand(n, generator=generator)
    shift = (torch.rand(n, 2, generator=generator) - 0.5) * 0.35
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    x = nn.functional.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    x = x + 0.25 * torch.randn(x.shape, generator=generator)  # stroke noise
    return x.clamp(0, 1.5)


def distorted_digits(seed: int = 0, train_copies: int = 3, test_copies: int = 3, size: int = SIZE):
    """(x_train, y_train), (x_val, y_val), (x_test, y_test): float32 NCHW [N, 1, size, size], int64 labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    images = torch.from_numpy((digits.images[order] / 16.0).astype(np.float32))[:, None]
    images = nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    labels = torch.from_numpy(digits.target[order].astype(np.int64))
    generator = torch.Generator().manual_seed(seed)
    parts = {"train": (0, 1000, train_copies), "val": (1000, 1300, 1), "test": (1300, len(labels), test_copies)}
    out = []
    for start, stop, copies in parts.values():
        x = _distort(images[start:stop], copies, generator)
        y = labels[start:stop].repeat_interleave(copies)
        out.append((x.numpy().astype(np.float32), y.numpy()))
    return tuple(out)


class Block(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class DigitsResNet(nn.Module):
    """stem -> block -> strided conv -> block -> strided conv -> block -> pooled linear head."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.block1 = Block(width)
        self.down1 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False)
        self.down1_bn = nn.BatchNorm2d(2 * width)
        self.block2 = Block(2 * width)
        self.down2 = nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1, bias=False)
        self.down2_bn = nn.BatchNorm2d(4 * width)
        self.block3 = Block(4 * width)
        self.fc = nn.Linear(4 * width, 10)

    def forward(self, pixels):
        x = torch.relu(self.bn(self.stem(pixels)))
        x = self.block1(x)
        x = self.block2(torch.relu(self.down1_bn(self.down1(x))))
        x = self.block3(torch.relu(self.down2_bn(self.down2(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def teacher_net() -> nn.Module:
    torch.manual_seed(0)
    return DigitsResNet(32)


def student_net() -> nn.Module:
    torch.manual_seed(1)
    return DigitsResNet(14)
