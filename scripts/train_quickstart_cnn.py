"""Train the quickstart model: a small residual CNN on scikit-learn's digits, placed on a 64x64 canvas.

The quickstart has to show INT8 paying off, so its model must be big enough that convolution arithmetic,
not per-operator overhead, sets its latency (the bundled 8x8 digits CNN runs in ~15 us, where INT8 cannot win).
This one is ResNet-shaped: a stride-2 3x3 stem, three basic blocks (48 channels at 32x32, 96 at 16x16, 128 at
8x8; 3x3 convolutions, 1x1 projection shortcuts where the shape changes), global average pooling and one linear
layer: ~93 M multiply-adds, 98% of them in 3x3 convolutions, and 0.44 M parameters (1.8 MB in float32).

Data: the real handwritten digits of `sklearn.datasets.load_digits()` (same stratified 70/30 split as
calibration/digits), each 8x8 image drawn onto a 64x64 canvas by a random affine map (side 28-60 px, rotation +-15
deg, shear, anywhere on the canvas) with bilinear sampling. Training draws a fresh placement every epoch; the
calibration and eval sets are drawn once from a fixed seed. So the network must find a digit of any size anywhere
in the frame, and its accuracy is measured on digits it never saw (a random split: the same people wrote both).
Pixels are multiples of 1/64 (the source digits have 17 grey levels), exact in float32, so the bundled .npz files
compress well.

Writes, under calibration/quickstart/ (or --out):
  model.onnx       opset 17, input `image` [batch,1,64,64] float32 in [0,1], output `logits` [batch,10];
                   exported in eval mode, so BatchNorm is folded into the convolutions
  calibration.npz  `image`: 256 training digits, placed once
  eval.npz         `image`: the whole test split (540 digits), placed once; `labels`: int64 class ids

The run is seeded and deterministic (deterministic algorithms, fixed thread count), so a re-run with the same
torch/onnx/numpy versions and --threads reproduces the same files (it prints their sha256).

    python scripts/train_quickstart_cnn.py            # ~10 min on one CPU core; prints every epoch
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import random
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn import functional as F

SEED = 0
OPSET = 17
SIZE = 64
LEVELS = 64  # pixel values are multiples of 1/64: exact in float32, so the .npz files compress ~2x better
N_CALIBRATION = 256
WIDTHS = (48, 96, 128)
STEM_STRIDE = 2  # the last block then sees ~47 px, a whole digit (28-60 px)
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "calibration" / "quickstart"


def seed_everything(threads: int, seed: int = SEED) -> None:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv+BN, a 1x1 conv+BN projection when stride or width changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class QuickstartResNet(nn.Module):
    def __init__(self, widths: tuple[int, ...] = WIDTHS, stem_stride: int = STEM_STRIDE, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, widths[0], 3, stem_stride, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        blocks, cin = [], widths[0]
        for index, cout in enumerate(widths):
            blocks.append(BasicBlock(cin, cout, 1 if index == 0 else 2))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(image))
        return self.fc(x.mean(dim=(2, 3)))  # global average pool


def split_digits() -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """The 8x8 digits in [0, 1], split exactly like calibration/digits (stratified 70/30, random_state 0)."""
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    return torch.from_numpy(x_train), torch.from_numpy(x_test), y_train, y_test


def place(small: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Draw each 8x8 digit onto a 64x64 canvas: random size, rotation, shear and position; 64 grey levels."""
    n = small.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=gen)

    extent = uniform(28, 60) / SIZE  # the digit's side as a share of the canvas
    angle = uniform(-15, 15) * math.pi / 180
    shear = uniform(-0.15, 0.15)
    aspect = uniform(0.85, 1.15)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # theta maps canvas coordinates ([-1, 1]) to digit coordinates: inverse of scale, shear, rotation.
    sx, sy = 1 / (extent * aspect), aspect / extent
    a = torch.stack([torch.stack([sx * cos, sx * (sin + shear * cos)], 1), torch.stack([-sy * sin, sy * cos], 1)], 1)
    room = (1 - extent * 1.2).clamp(min=0)  # keep the (rotated) digit inside the canvas
    centre = torch.stack([uniform(-1, 1) * room, uniform(-1, 1) * room], 1)
    theta = torch.cat([a, -(a @ centre[:, :, None])], 2)
    grid = F.affine_grid(theta, [n, 1, SIZE, SIZE], align_corners=False)
    canvas = F.grid_sample(small, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return torch.round(canvas.clamp(0, 1) * LEVELS) / LEVELS


def place_all(small: torch.Tensor, seed: int) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    return np.ascontiguousarray(place(small, gen).numpy(), dtype=np.float32)


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    pred = torch.cat([model(torch.from_numpy(x[i : i + 256])) for i in range(0, len(x), 256)]).argmax(dim=1)
    return float((pred.numpy() == y).mean())


def train(
    x_train: torch.Tensor, y_train: np.ndarray, x_check: np.ndarray, y_check: np.ndarray, epochs: int, batch_size: int
) -> QuickstartResNet:
    model = QuickstartResNet()
    steps = epochs * math.ceil(len(x_train) / batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.2)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    gen = torch.Generator().manual_seed(SEED + 1)
    yt = torch.from_numpy(y_train)
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        total = 0.0
        for i in range(0, len(x_train), batch_size):
            idx = perm[i : i + batch_size]
            loss = loss_fn(model(place(x_train[idx], gen)), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        check = accuracy(model, x_check, y_check)
        print(
            f"epoch {epoch + 1:3d}/{epochs}  loss {total / len(x_train):.4f}  train-sample accuracy {check:.4f}  "
            f"{time.perf_counter() - start:5.0f} s",
            flush=True,
        )
    return model.eval()


def export_onnx(model: nn.Module, path: Path) -> None:
    model.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, 1, SIZE, SIZE),),
            buf,
            dynamo=False,
            export_params=True,
            opset_version=OPSET,
            do_constant_folding=True,  # eval-mode BatchNorm folds into the convolutions
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        )
    m = onnx.load_from_string(buf.getvalue())
    # Drop anything that varies between runs or machines; keep the file self-describing.
    m.producer_name = "modelforge/scripts/train_quickstart_cnn.py"
    m.producer_version = ""
    m.doc_string = ""
    m.graph.doc_string = ""
    m.graph.name = "quickstart_resnet"
    for node in m.graph.node:
        node.doc_string = ""
    del m.metadata_props[:]
    for key, value in (
        ("labels", json.dumps([str(i) for i in range(10)])),
        ("source", "scripts/train_quickstart_cnn.py"),
    ):
        prop = m.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(m, full_check=True)
    opsets = {o.domain: o.version for o in m.opset_import}
    assert opsets.get("", opsets.get("ai.onnx")) == OPSET, opsets
    assert not any(n.op_type == "BatchNormalization" for n in m.graph.node), "BatchNorm was not folded"
    path.write_bytes(m.SerializeToString(deterministic=True))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the result depends on it; default 1)")
    args = ap.parse_args()

    seed_everything(args.threads)
    x_train, x_test, y_train, y_test = split_digits()
    calibration = place_all(x_train[:N_CALIBRATION], seed=SEED + 2)
    evaluation = place_all(x_test, seed=SEED + 3)
    print(f"train {tuple(x_train.shape)}, placed on {SIZE}x{SIZE} anew each epoch; eval {evaluation.shape}", flush=True)

    model = train(x_train, y_train, calibration, y_train[:N_CALIBRATION], args.epochs, args.batch_size)
    test_acc = accuracy(model, evaluation, y_test)
    print(f"torch test accuracy {test_acc:.4f}", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / "model.onnx"
    export_onnx(model, model_path)
    # np.savez_compressed writes zip entries with a fixed 1980 timestamp, so output is reproducible.
    np.savez_compressed(args.out / "calibration.npz", image=calibration)
    np.savez_compressed(args.out / "eval.npz", image=evaluation, labels=y_test)

    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    with np.load(args.out / "eval.npz") as ev:
        (logits,) = sess.run(["logits"], {"image": ev["image"]})
        ort_acc = float((logits.argmax(axis=1) == ev["labels"]).mean())
    print(f"onnxruntime test accuracy {ort_acc:.4f}")
    if abs(ort_acc - test_acc) > 0.5 / len(y_test):
        sys.exit(f"onnxruntime accuracy {ort_acc} differs from torch accuracy {test_acc}")

    for name in ("model.onnx", "calibration.npz", "eval.npz"):
        p = args.out / name
        shown = p.relative_to(ROOT) if p.is_relative_to(ROOT) else p
        print(f"{shown}  {p.stat().st_size} B  sha256 {sha256(p)}")


if __name__ == "__main__":
    main()
