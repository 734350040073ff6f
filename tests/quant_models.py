"""Small real models for the quantization tests (tests/test_quant_*.py), built and trained here in seconds.

- `tiny_bert`: a BERT-style encoder (token + position embeddings, 2 layers of multi-head self-attention with
  a padding mask, LayerNorm, GELU feed-forward, residual adds, mean pooling) trained in torch on a token-count
  task, exported with two int64 inputs (input_ids, attention_mask) and symbolic batch and sequence dims.
- `outlier_cnn`: the bundled digits CNN with one channel of its first convolution scaled up 1000x and the
  next convolution scaled down to match. The function is unchanged (ReLU is positively homogeneous) but the
  activation range now has one outlier channel, as transformers' LayerNorm outputs do: per-tensor INT8
  loses the other channels, and the accuracy with them.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DIGITS = REPO / "calibration" / "digits"

VOCAB, SEQ, HIDDEN, HEADS, LAYERS, FFN, CLASSES = 64, 16, 32, 2, 2, 64, 4


def token_task(count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sequences of random length over tokens 1..63; the class is the id quarter holding most tokens."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, SEQ + 1, size=count)
    mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int64)
    bias = rng.integers(0, CLASSES, size=count)
    ids = rng.integers(1, VOCAB, size=(count, SEQ))
    # Tilt each sequence towards one quarter so the classes are learnable but not trivial.
    tilted = rng.random((count, SEQ)) < 0.45
    ids = np.where(tilted, 1 + bias[:, None] * 16 + rng.integers(0, 15, size=(count, SEQ)), ids)
    ids = np.clip(ids, 1, VOCAB - 1) * mask
    quarters = np.stack([((ids >= 1 + 16 * q) & (ids < 1 + 16 * (q + 1)) & (mask > 0)).sum(1) for q in range(4)], 1)
    labels = quarters.argmax(1).astype(np.int64)
    return ids.astype(np.int64), mask, labels


def tiny_bert(folder: Path, steps: int = 150) -> dict[str, Path]:
    """Train, export, and write calibration.npz / eval.npz (eval with labels). Returns the paths."""
    import torch
    from torch import nn

    torch.manual_seed(0)

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(HIDDEN, 3 * HIDDEN)
            self.out = nn.Linear(HIDDEN, HIDDEN)
            self.norm1 = nn.LayerNorm(HIDDEN)
            self.ff1 = nn.Linear(HIDDEN, FFN)
            self.ff2 = nn.Linear(FFN, HIDDEN)
            self.norm2 = nn.LayerNorm(HIDDEN)

        def forward(self, x, bias):
            b, s, _ = x.shape
            qkv = self.qkv(x).view(b, s, 3, HEADS, HIDDEN // HEADS).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = q @ k.transpose(-1, -2) / (HIDDEN // HEADS) ** 0.5 + bias
            ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, s, HIDDEN)
            x = self.norm1(x + self.out(ctx))
            return self.norm2(x + self.ff2(nn.functional.gelu(self.ff1(x))))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.tokens = nn.Embedding(VOCAB, HIDDEN)
            self.positions = nn.Embedding(SEQ, HIDDEN)
            self.norm = nn.LayerNorm(HIDDEN)
            self.layers = nn.ModuleList(Layer() for _ in range(LAYERS))
            self.head = nn.Linear(HIDDEN, CLASSES)

        def forward(self, input_ids, attention_mask):
            positions = torch.arange(input_ids.shape[1])
            x = self.norm(self.tokens(input_ids) + self.positions(positions))
            mask = attention_mask.to(x.dtype)
            bias = (1.0 - mask)[:, None, None, :] * -10000.0
            for layer in self.layers:
                x = layer(x, bias)
            pooled = (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
            return self.head(pooled)

    model = Encoder()
    ids, mask, labels = token_task(4096, seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    ids_t, mask_t, labels_t = torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(labels)
    for step in range(steps):
        index = torch.randint(0, len(ids), (128,), generator=torch.Generator().manual_seed(step))
        loss = nn.functional.cross_entropy(model(ids_t[index], mask_t[index]), labels_t[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny_bert.onnx"
    example = (torch.from_numpy(ids[:2]), torch.from_numpy(mask[:2]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(
            model,
            example,
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "logits": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
    cal_ids, cal_mask, _ = token_task(128, seed=2)
    ev_ids, ev_mask, ev_labels = token_task(256, seed=3)
    np.savez(folder / "calibration.npz", input_ids=cal_ids, attention_mask=cal_mask)
    np.savez(folder / "eval.npz", input_ids=ev_ids, attention_mask=ev_mask, labels=ev_labels)
    with torch.no_grad():
        accuracy = float(
            (model(torch.from_numpy(ev_ids), torch.from_numpy(ev_mask)).argmax(1).numpy() == ev_labels).mean()
        )
    return {
        "model": path,
        "calibration": folder / "calibration.npz",
        "eval": folder / "eval.npz",
        "accuracy": accuracy,
    }


def outlier_cnn(folder: Path, scale: float = 1000.0) -> Path:
    """The digits CNN with an outlier channel between its first two convolutions (same function)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(DIGITS / "model.onnx"))
    inits = {t.name: t for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    w1, b1 = (
        numpy_helper.to_array(inits[convs[0].input[1]]).copy(),
        numpy_helper.to_array(inits[convs[0].input[2]]).copy(),
    )
    w2 = numpy_helper.to_array(inits[convs[1].input[1]]).copy()
    channel = int(np.argmax(np.abs(w1).reshape(w1.shape[0], -1).sum(1)))
    w1[channel] *= scale
    b1[channel] *= scale
    w2[:, channel] /= scale
    for name, value in ((convs[0].input[1], w1), (convs[0].input[2], b1), (convs[1].input[1], w2)):
        inits[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "outlier_cnn.onnx"
    onnx.save(model, str(path))
    return path


def outlier_consumer(path: Path) -> str:
    """Name of the convolution that reads the outlier channel (the layer INT8 hurts)."""
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"][1]
