"""Train the bundled default model: a small CNN on scikit-learn's 8x8 digits.

Writes, under calibration/digits/ (or --out):
  model.onnx       opset 17, input `image` [batch,1,8,8] float32, output `logits` [batch,10]
  calibration.npz  `image`: the first 256 samples of the train split
  eval.npz         `image`: the whole test split, `labels`: int64 class ids

The run is deterministic (fixed seeds, deterministic algorithms, one thread), so re-running it
reproduces byte-identical files on the same torch/onnx versions.

    python scripts/train_digits_cnn.py
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

SEED = 0
OPSET = 17
N_CALIBRATION = 256
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "calibration" / "digits"


def seed_everything(seed: int = SEED) -> None:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(*block(1, 16), *block(16, 32), nn.MaxPool2d(2), *block(32, 64))
        self.classifier = nn.Linear(64, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.features(image)
        x = x.mean(dim=(2, 3))  # global average pool
        return self.classifier(x)


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    return (
        np.ascontiguousarray(x_train, dtype=np.float32),
        np.ascontiguousarray(x_test, dtype=np.float32),
        y_train.astype(np.int64),
        y_test.astype(np.int64),
    )


def random_shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Shift each image by -1, 0 or +1 pixel along each axis, filling with zeros."""
    n = x.shape[0]
    padded = nn.functional.pad(x, (1, 1, 1, 1))
    dy = torch.randint(0, 3, (n,), generator=gen)
    dx = torch.randint(0, 3, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(8)[None, :])[:, None, :, None].expand(n, 1, 8, 10)
    out = torch.gather(padded, 2, rows)
    cols = (dx[:, None] + torch.arange(8)[None, :])[:, None, None, :].expand(n, 1, 8, 8)
    return torch.gather(out, 3, cols)


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    pred = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    return float((pred == y).mean())


def train(x_train: np.ndarray, y_train: np.ndarray, epochs: int, batch_size: int = 64) -> DigitsCNN:
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(SEED)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), batch_size):
            idx = perm[i : i + batch_size]
            xb = random_shift(xt[idx], gen)
            loss = loss_fn(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        print(f"epoch {epoch + 1:3d}/{epochs}  loss {total / len(xt):.4f}", flush=True)
    return model.eval()


def export_onnx(model: nn.Module, path: Path) -> None:
    model.eval()
    dummy = torch.zeros(1, 1, 8, 8)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (dummy,),
            buf,
            dynamo=False,
            export_params=True,
            opset_version=OPSET,
            do_constant_folding=True,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        )
    m = onnx.load_from_string(buf.getvalue())
    # Drop anything that varies between runs or machines; keep the file self-describing.
    m.producer_name = "modelforge/scripts/train_digits_cnn.py"
    m.producer_version = ""
    m.doc_string = ""
    m.graph.doc_string = ""
    m.graph.name = "digits_cnn"
    for node in m.graph.node:
        node.doc_string = ""
    del m.metadata_props[:]
    for key, value in (
        ("labels", json.dumps([str(i) for i in range(10)])),
        ("source", "scripts/train_digits_cnn.py"),
    ):
        prop = m.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(m, full_check=True)
    opsets = {o.domain: o.version for o in m.opset_import}
    assert opsets.get("", opsets.get("ai.onnx")) == OPSET, opsets
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer)
    path.write_bytes(m.SerializeToString(deterministic=True))


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    # np.savez_compressed writes zip entries with a fixed 1980 timestamp, so output is reproducible.
    np.savez_compressed(path, **arrays)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    ap.add_argument("--epochs", type=int, default=50)
    args = ap.parse_args()

    seed_everything()
    x_train, x_test, y_train, y_test = load_data()
    print(f"train {x_train.shape}  test {x_test.shape}")

    model = train(x_train, y_train, args.epochs)
    train_acc = accuracy(model, x_train, y_train)
    test_acc = accuracy(model, x_test, y_test)
    print(f"torch  train accuracy {train_acc:.4f}  test accuracy {test_acc:.4f}")

    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / "model.onnx"
    export_onnx(model, model_path)
    write_npz(args.out / "calibration.npz", image=x_train[:N_CALIBRATION])
    write_npz(args.out / "eval.npz", image=x_test, labels=y_test)

    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    with np.load(args.out / "eval.npz") as ev:
        (logits,) = sess.run(["logits"], {"image": ev["image"]})
        ort_acc = float((logits.argmax(axis=1) == ev["labels"]).mean())
    print(f"onnxruntime test accuracy {ort_acc:.4f}")
    if abs(ort_acc - test_acc) > 1e-9:
        raise SystemExit(f"onnxruntime accuracy {ort_acc} differs from torch accuracy {test_acc}")

    for name in ("model.onnx", "calibration.npz", "eval.npz"):
        p = args.out / name
        shown = p.relative_to(ROOT) if p.is_relative_to(ROOT) else p
        print(f"{shown}  {p.stat().st_size} B  sha256 {sha256(p)}")


if __name__ == "__main__":
    main()
