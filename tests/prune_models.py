"""Small CNNs trained on scikit-learn's digits for the pruning tests: residual, concatenating, depthwise.

Each trains in a few seconds on two CPU cores and reaches real accuracy, so "fine-tuning recovers accuracy"
means something.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


def digits_split(seed: int = 0):
    """(x_train, y_train), (x_val, y_val), (x_test, y_test) as NCHW float32 8x8 images in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order], y[order]
    return (x[:1200], y[:1200]), (x[1200:1500], y[1200:1500]), (x[1500:], y[1500:])


class Block(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class ResidualNet(nn.Module):
    """A ResNet-style digits classifier: stem, two residual blocks, a strided conv, pooled head."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.block1 = Block(width)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False)
        self.down_bn = nn.BatchNorm2d(2 * width)
        self.block2 = Block(2 * width)
        self.fc = nn.Linear(2 * width, 10)

    def forward(self, pixels):
        x = torch.relu(self.bn(self.stem(pixels)))
        x = self.block1(x)
        x = torch.relu(self.down_bn(self.down(x)))
        x = self.block2(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class ConcatNet(nn.Module):
    """Two branches concatenated on channels, then a depthwise conv."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.left = nn.Conv2d(16, 16, 3, padding=1)
        self.right = nn.Conv2d(16, 24, 1)
        self.depthwise = nn.Conv2d(40, 40, 3, padding=1, groups=40)
        self.bn = nn.BatchNorm2d(40)
        self.pointwise = nn.Conv2d(40, 32, 1)
        self.fc = nn.Linear(32 * 4 * 4, 10)

    def forward(self, pixels):
        x = torch.relu(self.stem(pixels))
        x = torch.cat([torch.relu(self.left(x)), torch.relu(self.right(x))], dim=1)
        x = torch.relu(self.bn(self.depthwise(x)))
        x = nn.functional.max_pool2d(torch.relu(self.pointwise(x)), 2)
        return self.fc(torch.flatten(x, 1))


def build_residual() -> nn.Module:
    """Factory for --model-factory tests."""
    torch.manual_seed(0)
    return ResidualNet(16)


def fit(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int = 15, seed: int = 0, log=None) -> nn.Module:
    """`log`: called with a line per epoch (the example scripts print them; tests stay silent)."""
    torch.manual_seed(seed)
    images, labels = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(labels))
        total = 0.0
        for start in range(0, len(labels), 64):
            index = order[start : start + 64]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(images[index]), labels[index])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
        if log is not None:
            log(f"epoch {epoch + 1}/{epochs}: loss {total / len(labels):.4f}")
    return model.eval()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((model.eval()(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def export(model: nn.Module, path: Path, example: np.ndarray) -> Path:
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model.eval(), (torch.from_numpy(example[:4]),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    return path


def write_data(folder: Path, name: str = "pixels", seed: int = 0) -> dict[str, Path]:
    (xt, yt), (xv, yv), (xs, ys) = digits_split(seed)
    paths = {"train": folder / "train.npz", "val": folder / "val.npz", "test": folder / "test.npz"}
    np.savez(paths["train"], **{name: xt}, labels=yt)
    np.savez(paths["val"], **{name: xv}, labels=yv)
    np.savez(paths["test"], **{name: xs}, labels=ys)
    return paths
