"""Small, deterministic stand-ins for the four classes of real-world graphs of issue 8, built in seconds.

Each builder writes a model and its data into the folder it is given (nothing is cached anywhere else) and
returns a `Built`: the model path, a calibration `.npz` and an eval `.npz` (one array per model input, samples
on the first axis; classifiers' eval files also hold `labels`, int64 class ids), and the float model's own
accuracy on the eval data.

- `opset11_constant_cnn(folder, opset=11)`: a conv + BatchNorm + ReLU classifier with a residual block, global
  pooling and a Gemm head, trained on scikit-learn's digits upsampled to colour 3x32x32 images, exported by
  torch at opset 11 (or 12) with a dynamic batch, every weight moved into a `Constant` node (no initializers)
  as PaddlePaddle's exporter writes them. Per-channel QDQ at opset < 13 writes `DequantizeLinear` with an
  `axis` attribute that onnxruntime rejects.
- `paddle_style_detector(folder)`: issue 19's text-detector class: a DB-style detector (depthwise-separable
  backbone with hard-swish, FPN with nearest Resize and Concat, ConvTranspose head), opset 12, weights in
  `Constant` nodes, fixed 1x3x320x320 input, a probability map out; random weights. INT8 gains ~1.3-1.4x.
- `jax_style_classifier(folder)`: the shape of a jax2tf -> tf2onnx content-type classifier, opset 15: int32
  byte values -> one-hot (Equal + Cast) -> dense MatMul between Reshapes -> bias Add -> Transpose to NCHW ->
  Conv -> Transpose back -> ReLU -> decomposed LayerNorm -> ReduceMean pooling -> MatMul + Add -> Softmax.
  Trained (in torch, then written with onnx.helper) on synthetic file-type byte windows (6 classes).
  The head's bias is `[1, classes]`, as flax writes it (`bias.reshape((1,) * (ndim - 1) + (-1,))`, folded
  by the exporter): onnxruntime's graph optimizer fuses MatMul + Add into a Gemm whose C input keeps that
  2-D shape, and onnxruntime's QDQ quantizer, per-channel, then raises "The truth value of an array with
  more than one element is ambiguous" in `_adjust_weight_scale_for_int32_bias` (`head_bias_shape="C"`
  builds the same model with a 1-D bias, which quantizes). The LayerNorm squares with Mul (tf2onnx's
  Square), not Pow: a family detector that looks for Pow sees a CNN, and picks static QDQ.
- `mobilenetv3_small_style(folder)`: torchvision's MobileNetV3-small architecture written out here (depthwise
  convolutions, hard-swish, squeeze-excitation with hard-sigmoid, inverted residuals; 2.5M parameters with
  1000 classes), random weights with BatchNorm statistics from a few train-mode passes on smooth random
  images, exported at opset 17 with a fixed 1x3x224x224 input. No labels (the weights are random).
- `crnn_pt2(folder)`: a CRNN text recogniser as a `torch.export` program (`.pt2`): VGG-style convolutions over
  a 1x32x160 grey strip, height collapsed, two bidirectional LSTM layers, a linear CTC head; output
  `[N, T, 11]` log-probabilities (10 digits + blank, blank = 10). Trained briefly with CTC loss on 80 px strips
  of 2-3 scikit-learn digits; evaluated on 160 px strips of 3-5 digits. Its eval data has no `labels` (not a
  classifier): the target digit strings are in `Built.targets` (an `.npz` with `digits` padded with -1 and
  `lengths`); `sequence_accuracy` scores outputs by greedy CTC decoding.

Issue 19 section 2 (LayerNorm in every form):

- `norm_form_model(form, opset, affine, shuffle)`: a MatMul -> one decomposed LayerNorm/RMSNorm -> residual
  Add -> MatMul graph, in each form of `NORM_FORMS` (torch's Pow/Sqrt/Div, tf2onnx's Mul x*x with
  Reciprocal, 1/Sqrt, Keras's x*inv + (beta - mean*inv), flax's E[x^2] - E[x]^2 with ReduceSum / n and
  Max(., 0), the same broadcast with Reshape + Expand to a computed shape as in Magika's model, RMSNorm with
  Pow or Mul), with or without the affine scale/shift, at opset 12, 13 or 17, nodes
  optionally shuffled; also returns the names of the norm's nodes (what a detector must find, exactly).
- `einsum_byte_classifier(folder)`: a byte classifier as jax2tf -> tf2onnx writes a flax model: int32 bytes,
  one-hot, dense layers as `Einsum` + bias, one Conv, three LayerNorms in the E[x^2] - E[x]^2 form, GELU
  (tanh form), residual blocks; trained in torch on the file-type windows, written with onnx.helper.

- `magika_byte_classifier(folder)`: not a stand-in: Google's Magika model from the `magika` wheel, the real
  model of issue 19's byte-classifier class, with its input features computed from real files of this
  machine's Python installation.

`python scripts/make_realworld_models.py OUTDIR` writes all of them.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SEED = 0


@dataclass(frozen=True)
class Built:
    """What a builder wrote. `float_accuracy`: top-1 accuracy of the float model on the eval data (sequence
    accuracy for the CRNN; None without labels). `targets`: the CRNN's target strings, else None."""

    name: str
    model: Path
    calibration: Path
    eval: Path
    float_accuracy: float | None = None
    targets: Path | None = None
    info: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _torch_session(seed: int = SEED) -> Iterator[object]:
    """Seeded, deterministic torch for one build, on one thread (reproducible bytes, and no thread-pool
    stalls when the test suite runs beside other work); the caller's torch settings are restored after."""
    import torch

    deterministic = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    rng_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    try:
        yield torch
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        torch.random.set_rng_state(rng_state)


def _torch_to_onnx(
    model, example: tuple, opset: int, inputs: list[str], outputs: list[str], dynamic, preserve: bool = False
):
    """TorchScript exporter (dynamo=False), its notices silenced; returns the ModelProto. `preserve`: keep
    BatchNormalization nodes (training mode PRESERVE on an eval model) instead of folding them."""
    import onnx
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            example,
            buf,
            dynamo=False,
            opset_version=opset,
            do_constant_folding=True,
            training=torch.onnx.TrainingMode.PRESERVE if preserve else torch.onnx.TrainingMode.EVAL,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
        )
    model_proto = onnx.load_from_string(buf.getvalue())
    model_proto.producer_version = ""
    for node in model_proto.graph.node:
        node.doc_string = ""
    return model_proto


def _save(model_proto, path: Path) -> Path:
    import onnx

    onnx.checker.check_model(model_proto, full_check=True)
    path.write_bytes(model_proto.SerializeToString(deterministic=True))
    return path


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez_compressed(path, **arrays)  # fixed zip timestamps: reproducible bytes
    return path


def _ort_outputs(model: Path, feeds: dict[str, np.ndarray], batch: int = 64) -> np.ndarray:
    """First output of an ONNX model on all samples, `batch` samples per run."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    count = len(next(iter(feeds.values())))
    parts = [session.run(None, {k: v[i : i + batch] for k, v in feeds.items()})[0] for i in range(0, count, batch)]
    return np.concatenate(parts)


def _digits(seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits in [0, 1], split 70/30 (stratified): x_train, y_train, x_test, y_test."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)
    return x_train, y_train, x_test, y_test


def _upsample(images: np.ndarray, size: int) -> np.ndarray:
    """[N, h, w] -> [N, size, size], bilinear (torch's interpolate, align_corners=False)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    out = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return out[:, 0].numpy().clip(0.0, 1.0)


# ------------------------------------------------------------------------------ 1. opset 11/12 Constant CNN

CNN_CLASSES = 10
CNN_SIZE = 32


def _colour_digits(gray: np.ndarray, seed: int) -> np.ndarray:
    """[N, 8, 8] digits -> [N, 3, 32, 32] float32: ink and paper colours drawn per image, light noise,
    normalised with mean 0.5 / std 0.25 per channel (a typical exporter-side preprocessing)."""
    rng = np.random.default_rng(seed)
    big = _upsample(gray, CNN_SIZE)[:, None]  # [N, 1, 32, 32]
    n = len(gray)
    paper = rng.uniform(0.55, 1.0, size=(n, 3, 1, 1))
    ink = rng.uniform(0.0, 0.4, size=(n, 3, 1, 1))
    rgb = paper * (1.0 - big) + ink * big + rng.normal(0.0, 0.03, size=(n, 3, CNN_SIZE, CNN_SIZE))
    return ((rgb.clip(0.0, 1.0) - 0.5) / 0.25).astype(np.float32)


def _small_resnet():
    import torch
    from torch import nn

    def cbr(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    class SmallResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(*cbr(3, 16, 2), *cbr(16, 24))  # 16x16
            self.block = nn.Sequential(*cbr(24, 24), nn.Conv2d(24, 24, 3, 1, 1, bias=False), nn.BatchNorm2d(24))
            self.down = nn.Sequential(*cbr(24, 48, 2))  # 8x8
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(48, CNN_CLASSES)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            x = self.stem(image)
            x = torch.relu(x + self.block(x))  # residual add
            x = self.pool(self.down(x))
            return self.fc(torch.flatten(x, 1))

    return SmallResNet()


def constants_instead_of_initializers(model_proto) -> int:
    """Move every initializer into a `Constant` node at the top of the graph (PaddlePaddle's style). Returns
    how many were moved."""
    from onnx import helper

    graph = model_proto.graph
    constants = [
        helper.make_node("Constant", [], [t.name], name=f"const_{i}", value=t) for i, t in enumerate(graph.initializer)
    ]
    names = {t.name for t in graph.initializer}
    kept_inputs = [i for i in graph.input if i.name not in names]
    del graph.input[:]
    graph.input.extend(kept_inputs)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend([*constants, *nodes])
    del graph.initializer[:]
    return len(constants)


def opset11_constant_cnn(folder: Path, opset: int = 11, epochs: int = 8) -> Built:
    """Digits CNN (1x3x32x32, dynamic batch, 10 classes) at opset 11 or 12 with all weights as Constant nodes.

    Writes cnn_opset{11|12}.onnx, .calibration.npz (`image`, 128 train samples), .eval.npz (`image`,
    `labels`: the 540-image test split). Conv + BatchNormalization + Relu stay separate nodes (as Paddle
    exports them); a residual Add; GlobalAveragePool; Flatten; Gemm.
    """
    import onnx

    if opset not in (11, 12):
        raise ValueError("opset 11 or 12: the class of issue 8 is opset < 13")
    folder.mkdir(parents=True, exist_ok=True)
    name = f"cnn_opset{opset}"
    x_train, y_train, x_test, y_test = _digits()
    train_images = _colour_digits(x_train, seed=1)
    test_images = _colour_digits(x_test, seed=2)
    with _torch_session() as torch:
        model = _small_resnet()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        per_epoch = (len(train_images) + 63) // 64
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 1e-2, total_steps=epochs * per_epoch, pct_start=0.25)
        xt, yt = torch.from_numpy(train_images), torch.from_numpy(y_train)
        generator = torch.Generator().manual_seed(SEED)
        for _ in range(epochs):
            model.train()
            order = torch.randperm(len(xt), generator=generator)
            for i in range(0, len(xt), 64):
                index = order[i : i + 64]
                loss = torch.nn.functional.cross_entropy(model(xt[index]), yt[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
        model.eval()
        # PRESERVE on an eval model keeps BatchNormalization as its own node (EVAL folds it into the Conv);
        # PaddlePaddle's exporter writes Conv -> BatchNormalization -> Relu.
        proto = _torch_to_onnx(
            model,
            (torch.from_numpy(test_images[:1]),),
            opset,
            ["image"],
            ["logits"],
            {"image": {0: "batch"}, "logits": {0: "batch"}},
            preserve=True,
        )
    proto.producer_name = "PaddlePaddle"
    proto.graph.name = name
    moved = constants_instead_of_initializers(proto)
    path = _save(proto, folder / f"{name}.onnx")
    assert onnx.load(str(path)).opset_import[0].version == opset
    calibration = _npz(folder / f"{name}.calibration.npz", image=train_images[:128])
    evaluation = _npz(folder / f"{name}.eval.npz", image=test_images, labels=y_test)
    accuracy = float((_ort_outputs(path, {"image": test_images}).argmax(1) == y_test).mean())
    return Built(name, path, calibration, evaluation, accuracy, info={"opset": opset, "constants": moved})


def opset12_constant_cnn(folder: Path) -> Built:
    """`opset11_constant_cnn` exported at opset 12."""
    return opset11_constant_cnn(folder, opset=12)


# ------------------------------------------------------------------- 1b. Paddle-style text detector (issue 19)


def _db_detector():
    """A DB-style text detector as PaddleOCR's det models are built: a small MobileNetV3-like backbone
    (strided and depthwise-separable convolutions, hard-swish), an FPN (1x1 laterals, nearest Resize x2 and
    Add top-down, 3x3 smoothing), all levels resized to 1/4 and concatenated, and the DB head (3x3 conv,
    two ConvTranspose x2, Sigmoid): a probability map at the input's resolution."""
    import torch
    from torch import nn

    def cba(cin: int, cout: int, kernel: int, stride: int, groups: int = 1, act: type | None = nn.Hardswish):
        layers = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)]
        layers.append(nn.BatchNorm2d(cout))
        if act is not None:
            layers.append(act())
        return nn.Sequential(*layers)

    def separable(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(cba(cin, cin, 3, stride, groups=cin, act=nn.ReLU), cba(cin, cout, 1, 1))

    def up(t: torch.Tensor, factor: int) -> torch.Tensor:
        return nn.functional.interpolate(t, scale_factor=factor, mode="nearest")

    class DBDetector(nn.Module):
        def __init__(self, channels: tuple[int, ...] = (18, 36, 72, 108, 144), inner: int = 72) -> None:
            super().__init__()
            c = channels
            self.stem = cba(3, c[0], 3, 2)  # 1/2
            self.stages = nn.ModuleList(
                [
                    nn.Sequential(cba(c[0], c[1], 3, 2), separable(c[1], c[1], 1)),  # 1/4
                    *[nn.Sequential(separable(c[i], c[i + 1], 2), cba(c[i + 1], c[i + 1], 3, 1)) for i in (1, 2, 3)],
                ]
            )  # 1/8, 1/16, 1/32
            self.laterals = nn.ModuleList([nn.Conv2d(ch, inner, 1, bias=False) for ch in c[1:]])
            self.smooth = nn.ModuleList([nn.Conv2d(inner, inner // 4, 3, 1, 1, bias=False) for _ in c[1:]])
            self.head = nn.Sequential(
                cba(inner, inner // 4, 3, 1, act=nn.ReLU),
                nn.ConvTranspose2d(inner // 4, inner // 4, 2, 2),
                nn.BatchNorm2d(inner // 4),
                nn.ReLU(),
                nn.ConvTranspose2d(inner // 4, 1, 2, 2),
            )

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            features, x = [], self.stem(image)
            for stage in self.stages:
                x = stage(x)
                features.append(x)
            levels = [lateral(f) for lateral, f in zip(self.laterals, features, strict=True)]
            for i in (2, 1, 0):  # top-down
                levels[i] = levels[i] + up(levels[i + 1], 2)
            smoothed = [s(level) for s, level in zip(self.smooth, levels, strict=True)]
            fused = torch.cat([smoothed[0], *(up(p, 2 ** (i + 1)) for i, p in enumerate(smoothed[1:]))], 1)
            return torch.sigmoid(self.head(fused))

    return DBDetector()


def paddle_style_detector(folder: Path, size: int = 320, samples: int = 32) -> Built:
    """The text-detector class of issue 19: opset 12, every weight in a `Constant` node, depthwise
    convolutions, HardSigmoid (hard-swish at opset 12), nearest Resize, Concat, ConvTranspose; input `image`
    [1, 3, size, size] -> `maps` [1, 1, size, size] (probabilities). Random weights with BatchNorm statistics
    from a few train-mode passes on smooth random images. INT8 pays on it: modelforge's everything-INT8 model
    ran 1.47-1.48x faster than FP32 at 2 threads on an idle machine (320 px, AMD EPYC with AVX-512 VNNI,
    onnxruntime 1.32, three fresh session pairs in one process). Its width is chosen for that gain: 16 channels
    at the first stage (inner 64) gave 1.06x idle, 20 (inner 80) 1.56x; an earlier 1.32x figure for the
    16-channel model was taken on a loaded machine. Writes
    paddle_detector.onnx, .calibration.npz and .eval.npz (`image`, `samples` each, no labels)."""
    folder.mkdir(parents=True, exist_ok=True)
    name = "paddle_detector"
    with _torch_session() as torch:
        model = _db_detector()
        model.train()
        for m in model.modules():  # BatchNorm statistics: the cumulative average of 3 batches
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None
        with torch.no_grad():
            for step in range(3):
                model(torch.from_numpy(natural_ish_images(8, size, seed=100 + step)))
        model.eval()
        proto = _torch_to_onnx(model, (torch.zeros(1, 3, size, size),), 12, ["image"], ["maps"], None)
    proto.producer_name = "PaddlePaddle"
    proto.graph.name = name
    moved = constants_instead_of_initializers(proto)
    path = _save(proto, folder / f"{name}.onnx")
    calibration = _npz(folder / f"{name}.calibration.npz", image=natural_ish_images(samples, size, seed=1))
    evaluation = _npz(folder / f"{name}.eval.npz", image=natural_ish_images(samples, size, seed=2))
    return Built(name, path, calibration, evaluation, None, info={"opset": 12, "constants": moved, "size": size})


# -------------------------------------------------------------------------- 2. jax2tf -> tf2onnx classifier

BYTES = 256  # window length (bytes per sample)
FILE_TYPES = ("text", "html", "json", "csv", "base64", "binary")
JAX_EMBED, JAX_CONV, JAX_KERNEL = 32, 64, 5


def _words(rng: np.random.Generator, count: int = 300) -> list[str]:
    letters = np.array(list("etaoinshrdlucmfwypvbgkjqxz"))
    weights = np.linspace(2.0, 0.2, len(letters))
    weights /= weights.sum()
    return ["".join(rng.choice(letters, size=rng.integers(2, 10), p=weights)) for _ in range(count)]


def _file_text(kind: str, rng: np.random.Generator, words: list[str]) -> bytes:
    """A synthetic document of one file type, longer than a window."""

    def sentence() -> str:
        s = " ".join(words[i] for i in rng.integers(0, len(words), rng.integers(4, 14)))
        return s[0].upper() + s[1:] + rng.choice([".", ".", "?", "!", ","])

    out: list[str] = []
    size = 0
    while size < 2 * BYTES:
        if kind == "text":
            piece = " ".join(sentence() for _ in range(rng.integers(1, 4))) + rng.choice([" ", "\n", "\n\n"])
        elif kind == "html":
            tag = rng.choice(["p", "div", "span", "li", "a", "h2", "td"])
            attr = f' class="{rng.choice(words)}"' if rng.random() < 0.5 else ""
            attr += f' href="/{rng.choice(words)}/{rng.choice(words)}.html"' if tag == "a" else ""
            piece = f"<{tag}{attr}>{sentence()}</{tag}>\n" + "  " * int(rng.integers(0, 3))
        elif kind == "json":
            key, value = rng.choice(words), rng.random()
            item = (
                f'"{rng.choice(words)}"'
                if value < 0.4
                else str(int(rng.integers(-500, 100000)))
                if value < 0.7
                else f"{rng.normal() * 100:.3f}"
                if value < 0.85
                else rng.choice(["true", "false", "null"])
            )
            piece = f'{"  " * int(rng.integers(1, 4))}"{key}": {item},\n' + ("{\n" if rng.random() < 0.1 else "")
            piece += "},\n" if rng.random() < 0.1 else ""
        elif kind == "csv":
            cells = [
                str(int(rng.integers(0, 10000)))
                if rng.random() < 0.5
                else f"{rng.normal() * 50:.2f}"
                if rng.random() < 0.6
                else rng.choice(words)
                for _ in range(6)
            ]
            piece = ",".join(cells) + "\n"
        elif kind == "base64":
            raw = rng.integers(0, 256, size=57, dtype=np.uint8).tobytes()
            piece = base64.b64encode(raw).decode() + "\n"
        else:  # binary: compressed-looking bytes with a few structured runs
            raw = rng.integers(0, 256, size=int(rng.integers(32, 128)), dtype=np.uint8)
            if rng.random() < 0.3:
                raw[: int(rng.integers(4, 16))] = 0
            piece = raw.tobytes().decode("latin-1")
        out.append(piece)
        size += len(piece)
    return "".join(out).encode("latin-1")


def file_type_windows(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` windows of BYTES byte values (int32 [count, BYTES]) and their file-type ids (int64)."""
    rng = np.random.default_rng(seed)
    words = _words(np.random.default_rng(1234))  # one vocabulary for every split
    labels = np.arange(count) % len(FILE_TYPES)
    rng.shuffle(labels)
    windows = np.zeros((count, BYTES), dtype=np.int32)
    for i, label in enumerate(labels):
        doc = _file_text(FILE_TYPES[label], rng, words)
        start = int(rng.integers(0, len(doc) - BYTES + 1))
        windows[i] = np.frombuffer(doc[start : start + BYTES], dtype=np.uint8)
        if rng.random() < 0.6:  # embedded content (a base64 image in HTML, text in JSON...): a minority span
            other = _file_text(FILE_TYPES[int(rng.integers(0, len(FILE_TYPES)))], rng, words)
            span = int(rng.integers(BYTES // 8, int(BYTES * 0.48)))
            at = int(rng.integers(0, BYTES - span + 1))
            windows[i, at : at + span] = np.frombuffer(other[:span], dtype=np.uint8)
    return windows, labels.astype(np.int64)


def _train_byte_classifier(x: np.ndarray, y: np.ndarray, steps: int) -> dict[str, np.ndarray]:
    """The torch twin of the ONNX graph (embedding == one-hot @ W), trained; returns its weights."""
    with _torch_session() as torch:
        from torch import nn

        class ByteNet(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.embed = nn.Embedding(256, JAX_EMBED)
                self.embed_bias = nn.Parameter(torch.zeros(JAX_EMBED))
                self.conv = nn.Conv2d(JAX_EMBED, JAX_CONV, (1, JAX_KERNEL), padding=(0, JAX_KERNEL // 2))
                self.norm = nn.LayerNorm(JAX_CONV, eps=1e-6)
                self.head = nn.Linear(JAX_CONV, len(FILE_TYPES))

            def forward(self, data: torch.Tensor) -> torch.Tensor:
                e = self.embed(data) + self.embed_bias  # [N, L, E]
                h = self.conv(e.permute(0, 2, 1)[:, :, None, :])[:, :, 0, :].permute(0, 2, 1)  # [N, L, C]
                h = self.norm(torch.relu(h))
                return self.head(h.mean(1))

        model = ByteNet()
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        xt, yt = torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y)
        generator = torch.Generator().manual_seed(SEED)
        for _ in range(steps):
            index = torch.randint(0, len(xt), (64,), generator=generator)
            loss = nn.functional.cross_entropy(model(xt[index]), yt[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        return {
            "embed": model.embed.weight.detach().numpy(),
            "embed_bias": model.embed_bias.detach().numpy(),
            "conv_w": model.conv.weight.detach().numpy(),
            "conv_b": model.conv.bias.detach().numpy(),
            "gamma": model.norm.weight.detach().numpy(),
            "beta": model.norm.bias.detach().numpy(),
            "head_w": model.head.weight.detach().numpy().T,
            "head_b": model.head.bias.detach().numpy(),
        }


def jax_style_graph(weights: dict[str, np.ndarray], head_bias_shape: str = "1,C"):
    """The classifier as jax2tf -> tf2onnx writes it (opset 15). `head_bias_shape`: "1,C" (flax, the
    quantizer-crashing form) or "C" (1-D)."""
    from onnx import TensorProto, helper, numpy_helper

    classes = weights["head_w"].shape[1]
    f32 = np.float32

    def const(name: str, value) -> object:
        return numpy_helper.from_array(np.asarray(value), name)

    head_b = weights["head_b"].astype(f32)
    head_b = head_b.reshape(1, classes) if head_bias_shape == "1,C" else head_b.reshape(classes)
    prefix = "jax2tf_infer_fn_/pjit_content_model_/"
    initializers = [
        const("const_fold_opt__iota", np.arange(256, dtype=np.int32)),
        const("const_axes__last", np.array([-1], dtype=np.int64)),
        const("const_fold_opt__flat", np.array([-1, 256], dtype=np.int64)),
        const(f"{prefix}Embed/kernel", weights["embed"].astype(f32)),
        const("const_fold_opt__seq", np.array([-1, BYTES, JAX_EMBED], dtype=np.int64)),
        const(f"{prefix}Embed/bias", weights["embed_bias"].astype(f32).reshape(1, 1, JAX_EMBED)),
        const("const_fold_opt__nhwc", np.array([-1, 1, BYTES, JAX_EMBED], dtype=np.int64)),
        const(f"{prefix}Conv/kernel", weights["conv_w"].astype(f32)),
        const(f"{prefix}Conv/bias", weights["conv_b"].astype(f32)),
        const("const_fold_opt__nlc", np.array([-1, BYTES, JAX_CONV], dtype=np.int64)),
        const(f"{prefix}LayerNorm/epsilon", np.array(1e-6, dtype=f32)),
        const(f"{prefix}LayerNorm/scale", weights["gamma"].astype(f32)),
        const(f"{prefix}LayerNorm/bias", weights["beta"].astype(f32)),
        const(f"{prefix}Dense/kernel", weights["head_w"].astype(f32)),
        const(f"{prefix}Dense/bias", head_b),
    ]
    p = prefix
    nodes = [
        helper.make_node("Unsqueeze", ["bytes", "const_axes__last"], [f"{p}one_hot/expand"], name=f"{p}ExpandDims"),
        helper.make_node("Equal", [f"{p}one_hot/expand", "const_fold_opt__iota"], [f"{p}one_hot/eq"], name=f"{p}Eq"),
        helper.make_node("Cast", [f"{p}one_hot/eq"], [f"{p}one_hot"], name=f"{p}Cast", to=TensorProto.FLOAT),
        helper.make_node("Reshape", [f"{p}one_hot", "const_fold_opt__flat"], [f"{p}Einsum/flat"], name=f"{p}R1"),
        helper.make_node("MatMul", [f"{p}Einsum/flat", f"{p}Embed/kernel"], [f"{p}Einsum/mm"], name=f"{p}Einsum"),
        helper.make_node("Reshape", [f"{p}Einsum/mm", "const_fold_opt__seq"], [f"{p}Einsum"], name=f"{p}R2"),
        helper.make_node("Add", [f"{p}Einsum", f"{p}Embed/bias"], [f"{p}Embed/add"], name=f"{p}Embed/add"),
        helper.make_node("Reshape", [f"{p}Embed/add", "const_fold_opt__nhwc"], [f"{p}conv/in"], name=f"{p}R3"),
        helper.make_node("Transpose", [f"{p}conv/in"], [f"{p}conv/nchw"], name=f"{p}T1", perm=[0, 3, 1, 2]),
        helper.make_node(
            "Conv",
            [f"{p}conv/nchw", f"{p}Conv/kernel", f"{p}Conv/bias"],
            [f"{p}conv/out"],
            name=f"{p}Conv",
            kernel_shape=[1, JAX_KERNEL],
            pads=[0, JAX_KERNEL // 2, 0, JAX_KERNEL // 2],
            strides=[1, 1],
            dilations=[1, 1],
            group=1,
        ),
        helper.make_node("Transpose", [f"{p}conv/out"], [f"{p}conv/nhwc"], name=f"{p}T2", perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", [f"{p}conv/nhwc", "const_fold_opt__nlc"], [f"{p}conv"], name=f"{p}R4"),
        helper.make_node("Relu", [f"{p}conv"], [f"{p}relu"], name=f"{p}Relu"),
        # LayerNorm as tf2onnx writes it (no LayerNormalization op before opset 17); square as x * x.
        helper.make_node("ReduceMean", [f"{p}relu"], [f"{p}ln/mean"], name=f"{p}ln/mean", axes=[-1], keepdims=1),
        helper.make_node("Sub", [f"{p}relu", f"{p}ln/mean"], [f"{p}ln/centered"], name=f"{p}ln/sub"),
        helper.make_node("Mul", [f"{p}ln/centered", f"{p}ln/centered"], [f"{p}ln/square"], name=f"{p}ln/square"),
        helper.make_node("ReduceMean", [f"{p}ln/square"], [f"{p}ln/var"], name=f"{p}ln/var", axes=[-1], keepdims=1),
        helper.make_node("Add", [f"{p}ln/var", f"{p}LayerNorm/epsilon"], [f"{p}ln/var_eps"], name=f"{p}ln/add_eps"),
        helper.make_node("Sqrt", [f"{p}ln/var_eps"], [f"{p}ln/std"], name=f"{p}ln/sqrt"),
        helper.make_node("Div", [f"{p}ln/centered", f"{p}ln/std"], [f"{p}ln/normed"], name=f"{p}ln/div"),
        helper.make_node("Mul", [f"{p}ln/normed", f"{p}LayerNorm/scale"], [f"{p}ln/scaled"], name=f"{p}ln/mul"),
        helper.make_node("Add", [f"{p}ln/scaled", f"{p}LayerNorm/bias"], [f"{p}ln"], name=f"{p}ln/add"),
        helper.make_node("ReduceMean", [f"{p}ln"], [f"{p}pooled"], name=f"{p}pool", axes=[1], keepdims=0),
        helper.make_node("MatMul", [f"{p}pooled", f"{p}Dense/kernel"], [f"{p}Dense/mm"], name=f"{p}Dense/MatMul"),
        helper.make_node("Add", [f"{p}Dense/mm", f"{p}Dense/bias"], [f"{p}logits"], name=f"{p}Dense/add"),
        helper.make_node("Softmax", [f"{p}logits"], ["probabilities"], name=f"{p}Softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "tf2onnx",
        [helper.make_tensor_value_info("bytes", TensorProto.INT32, ["unk__0", BYTES])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["unk__1", classes])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)], producer_name="tf2onnx")
    model.producer_version = "1.16.1 15c810"
    model.ir_version = 8
    labels = model.metadata_props.add()
    labels.key, labels.value = "labels", json.dumps(list(FILE_TYPES))
    return model


def jax_style_classifier(folder: Path, steps: int = 150, head_bias_shape: str = "1,C") -> Built:
    """Content-type classifier shaped like a jax2tf -> tf2onnx export (opset 15, int32 `bytes` [N, 256] in,
    `probabilities` [N, 6] out). Writes jax_classifier.onnx, .calibration.npz (`bytes`, 128 windows) and
    .eval.npz (`bytes`, `labels`: 300 windows). With head_bias_shape "1,C" (default) onnxruntime's QDQ
    quantizer fails on it per-channel after onnxruntime's graph optimizer; "C" is the same model with a 1-D
    head bias."""
    folder.mkdir(parents=True, exist_ok=True)
    name = "jax_classifier" if head_bias_shape == "1,C" else "jax_classifier_1d_bias"
    x_train, y_train = file_type_windows(1200, seed=11)
    weights = _train_byte_classifier(x_train, y_train, steps)
    path = _save(jax_style_graph(weights, head_bias_shape), folder / f"{name}.onnx")
    x_cal, _ = file_type_windows(128, seed=12)
    x_eval, y_eval = file_type_windows(300, seed=13)
    calibration = _npz(folder / f"{name}.calibration.npz", bytes=x_cal)
    evaluation = _npz(folder / f"{name}.eval.npz", bytes=x_eval, labels=y_eval)
    accuracy = float((_ort_outputs(path, {"bytes": x_eval}).argmax(1) == y_eval).mean())
    return Built(name, path, calibration, evaluation, accuracy, info={"classes": list(FILE_TYPES)})


# ---------------------------------------------------------------------------------- 3. MobileNetV3-small

# torchvision's mobilenet_v3_small configuration: (in, kernel, expanded, out, squeeze-excite, activation, stride)
MOBILENET_V3_SMALL = (
    (16, 3, 16, 16, True, "RE", 2),
    (16, 3, 72, 24, False, "RE", 2),
    (24, 3, 88, 24, False, "RE", 1),
    (24, 5, 96, 40, True, "HS", 2),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1),
    (48, 5, 144, 48, True, "HS", 1),
    (48, 5, 288, 96, True, "HS", 2),
    (96, 5, 576, 96, True, "HS", 1),
    (96, 5, 576, 96, True, "HS", 1),
)


def _make_divisible(value: float, divisor: int = 8) -> int:
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def _mobilenet_v3_small(num_classes: int):
    import torch
    from torch import nn

    def conv_bn_act(cin: int, cout: int, kernel: int, stride: int, groups: int, act: type | None) -> nn.Sequential:
        layers = [
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout, eps=0.001, momentum=0.01),
        ]
        if act is not None:
            layers.append(act())
        return nn.Sequential(*layers)

    class SqueezeExcitation(nn.Module):
        def __init__(self, channels: int, squeeze: int) -> None:
            super().__init__()
            self.fc1 = nn.Conv2d(channels, squeeze, 1)
            self.fc2 = nn.Conv2d(squeeze, channels, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            scale = nn.functional.adaptive_avg_pool2d(x, 1)
            scale = nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(scale))))
            return x * scale

    class InvertedResidual(nn.Module):
        def __init__(self, cin, kernel, expanded, cout, se, activation, stride) -> None:
            super().__init__()
            act = nn.Hardswish if activation == "HS" else nn.ReLU
            self.residual = stride == 1 and cin == cout
            layers: list[nn.Module] = []
            if expanded != cin:
                layers.append(conv_bn_act(cin, expanded, 1, 1, 1, act))
            layers.append(conv_bn_act(expanded, expanded, kernel, stride, expanded, act))  # depthwise
            if se:
                layers.append(SqueezeExcitation(expanded, _make_divisible(expanded // 4)))
            layers.append(conv_bn_act(expanded, cout, 1, 1, 1, None))
            self.block = nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.block(x)
            return x + y if self.residual else y

    class MobileNetV3Small(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = [conv_bn_act(3, 16, 3, 2, 1, nn.Hardswish)]
            layers += [InvertedResidual(*config) for config in MOBILENET_V3_SMALL]
            layers.append(conv_bn_act(96, 576, 1, 1, 1, nn.Hardswish))
            self.features = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(
                nn.Linear(576, 1024), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(1024, num_classes)
            )
            for m in self.modules():  # torchvision's initialisation
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.zeros_(m.bias)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.classifier(torch.flatten(self.pool(self.features(image)), 1))

    return MobileNetV3Small()


def natural_ish_images(count: int, size: int, seed: int) -> np.ndarray:
    """Smooth random colour images (blobs at several scales, edges, a little noise), ImageNet-normalised:
    float32 [count, 3, size, size]."""
    import torch

    rng = np.random.default_rng(seed)
    images = np.zeros((count, 3, size, size), dtype=np.float32)
    for scale, weight in ((4, 0.5), (16, 0.3), (56, 0.15)):
        low = torch.from_numpy(rng.normal(size=(count, 3, scale, scale)).astype(np.float32))
        images += weight * torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic").numpy()
    # A hard-edged rectangle per image: edges as real photos have them.
    for i in range(count):
        y0, x0 = rng.integers(0, size // 2, size=2)
        h, w = rng.integers(size // 8, size // 2, size=2)
        images[i, :, y0 : y0 + h, x0 : x0 + w] += rng.normal(0, 0.6, size=(3, 1, 1)).astype(np.float32)
    images += rng.normal(0, 0.05, size=images.shape).astype(np.float32)
    pixels = (0.45 + 0.25 * images).clip(0.0, 1.0)
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)[:, None, None]
    return ((pixels - mean) / std).astype(np.float32)


def mobilenetv3_small_style(
    folder: Path, num_classes: int = 1000, samples: int = 32, dynamic_batch: bool = False
) -> Built:
    """MobileNetV3-small (torchvision's architecture), random weights with BatchNorm statistics from a few
    train-mode passes, opset 17, input `image` [1, 3, 224, 224] (batch dynamic with dynamic_batch) ->
    `logits`. Writes mobilenetv3_small.onnx, .calibration.npz and .eval.npz (`image`, `samples` each,
    no labels)."""
    folder.mkdir(parents=True, exist_ok=True)
    name = "mobilenetv3_small"
    with _torch_session() as torch:
        model = _mobilenet_v3_small(num_classes)
        model.train()
        for m in model.modules():  # BatchNorm statistics: the cumulative average of 4 batches of 16 images
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None
        with torch.no_grad():
            for step in range(4):
                model(torch.from_numpy(natural_ish_images(16, 224, seed=100 + step)))
        model.eval()
        with torch.no_grad():  # a classifier head with realistic logit spread (torchvision's init is tiny)
            last = model.classifier[-1]
            last.weight.mul_(100.0)
        proto = _torch_to_onnx(
            model,
            (torch.zeros(1, 3, 224, 224),),
            17,
            ["image"],
            ["logits"],
            {"image": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None,
        )
        params = sum(p.numel() for p in model.parameters())
    proto.graph.name = name
    path = _save(proto, folder / f"{name}.onnx")
    calibration = _npz(folder / f"{name}.calibration.npz", image=natural_ish_images(samples, 224, seed=1))
    evaluation = _npz(folder / f"{name}.eval.npz", image=natural_ish_images(samples, 224, seed=2))
    return Built(name, path, calibration, evaluation, None, info={"parameters": int(params)})


# -------------------------------------------------------------------------------------------- 4. CRNN .pt2

CRNN_HEIGHT, CRNN_WIDTH, CRNN_BLANK, CRNN_CLASSES = 32, 160, 10, 11
GLYPH_WIDTH = 24  # digits upscaled to 32x32, then cropped to their 24 inner columns


def digit_strips(
    count: int,
    seed: int,
    pool: tuple[np.ndarray, np.ndarray],
    frames: bool = False,
    width: int = CRNN_WIDTH,
    digits: tuple[int, int] = (3, 5),
) -> tuple[np.ndarray, ...]:
    """Strips of 3-5 digits (`digits`, inclusive) from `pool` (images [N, 8, 8], labels): float32
    [count, 1, 32, width] in [0, 1] (ink bright, as the digits data is) and int64 targets [count, 5], padded
    with -1. With `frames`, also the alignment: int64 [count, width // 4], the digit on the 3 time steps
    (4 px each) at each glyph's centre, blank elsewhere."""
    rng = np.random.default_rng(seed)
    glyphs = _upsample(pool[0], CRNN_HEIGHT)[:, :, 4 : 4 + GLYPH_WIDTH]
    labels = pool[1]
    strips = np.zeros((count, 1, CRNN_HEIGHT, width), dtype=np.float32)
    targets = np.full((count, 5), -1, dtype=np.int64)
    alignment = np.full((count, width // 4), CRNN_BLANK, dtype=np.int64)
    for i in range(count):
        n = int(rng.integers(digits[0], digits[1] + 1))
        picks = rng.integers(0, len(labels), size=n)
        gaps = rng.integers(0, 7, size=n)
        while n * GLYPH_WIDTH + gaps.sum() > width:
            gaps //= 2
        used = int(n * GLYPH_WIDTH + gaps.sum())
        x = int(rng.integers(0, width - used + 1))
        for pick, gap in zip(picks, gaps, strict=True):
            x += int(gap)
            strips[i, 0, :, x : x + GLYPH_WIDTH] = np.maximum(strips[i, 0, :, x : x + GLYPH_WIDTH], glyphs[pick])
            centre = (x + GLYPH_WIDTH // 2) // 4
            alignment[i, centre - 1 : centre + 2] = labels[pick]
            x += GLYPH_WIDTH
        targets[i, :n] = labels[picks]
    strips += rng.normal(0.0, 0.04, size=strips.shape).astype(np.float32)
    strips = strips.clip(0.0, 1.0)
    return (strips, targets, alignment) if frames else (strips, targets)


def ctc_greedy_decode(log_probs: np.ndarray, blank: int = CRNN_BLANK, time_major: bool = False) -> list[list[int]]:
    """Best-path CTC decoding of [N, T, C] (or [T, N, C] with time_major) scores: argmax per step, repeats
    collapsed, blanks dropped."""
    scores = np.asarray(log_probs)
    if time_major:
        scores = scores.transpose(1, 0, 2)
    best = scores.argmax(-1)
    decoded = []
    for row in best:
        keep = np.ones(len(row), dtype=bool)
        keep[1:] = row[1:] != row[:-1]
        decoded.append([int(c) for c in row[keep] if c != blank])
    return decoded


def sequence_accuracy(log_probs: np.ndarray, targets: np.ndarray, time_major: bool = False) -> float:
    """Share of samples whose greedy-decoded string equals the target (targets padded with -1)."""
    decoded = ctc_greedy_decode(log_probs, time_major=time_major)
    hits = [d == [int(t) for t in row if t >= 0] for d, row in zip(decoded, np.asarray(targets), strict=True)]
    return float(np.mean(hits))


def load_targets(path: Path) -> np.ndarray:
    """The CRNN eval targets written by `crnn_pt2` (int64 [N, 5], padded with -1)."""
    with np.load(path) as data:
        return data["digits"]


def _crnn(channels: tuple[int, int, int, int], hidden: int):
    import torch
    from torch import nn

    c1, c2, c3, c4 = channels

    def cbr(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    class CRNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                *cbr(1, c1),
                nn.MaxPool2d(2),  # 16 x 80
                *cbr(c1, c2),
                nn.MaxPool2d(2),  # 8 x 40
                *cbr(c2, c3),
                *cbr(c3, c3),
                nn.MaxPool2d((2, 1)),  # 4 x 40
                *cbr(c3, c4),
                nn.MaxPool2d((4, 1)),  # 1 x 40: height collapsed
            )
            self.rnn = nn.LSTM(c4, hidden, num_layers=2, bidirectional=True, batch_first=True)
            self.head = nn.Linear(2 * hidden, CRNN_CLASSES)

        def sequence(self, image: torch.Tensor) -> torch.Tensor:
            return self.features(image).squeeze(2).permute(0, 2, 1)  # [N, T, C]

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            x, _ = self.rnn(self.sequence(image))
            return self.head(x).log_softmax(-1)

    return CRNN()


def _warm_start_recurrent(torch, model, probe, features, hidden: int, seed: int = SEED) -> None:
    """Initialise the BiLSTM layers near a memoryless pass-through (input and output gates open, forget gate
    closed, the cell input a scaled random orthogonal projection of the layer input) and fit the head by least
    squares so that the whole network starts out computing what `probe` (a linear CTC head trained on the
    convolutional features) computes. From there CTC fine-tuning trains every weight, recurrent ones included,
    without the hundreds of steps a 2-layer BiLSTM otherwise spends on CTC's all-blank plateau."""
    from torch import nn

    generator = torch.Generator().manual_seed(seed)
    rnn = model.rnn
    layer_input = features
    with torch.no_grad():
        for layer in range(rnn.num_layers):
            size = layer_input.shape[-1]
            scale = 0.3 / float(layer_input.std())
            one = nn.LSTM(size, hidden, bidirectional=True, batch_first=True)
            for suffix in ("", "_reverse"):
                w_ih = getattr(rnn, f"weight_ih_l{layer}{suffix}")
                w_hh = getattr(rnn, f"weight_hh_l{layer}{suffix}")
                b_ih = getattr(rnn, f"bias_ih_l{layer}{suffix}")
                b_hh = getattr(rnn, f"bias_hh_l{layer}{suffix}")
                n = max(hidden, size)
                q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator))
                w_ih.mul_(0.1)
                w_hh.mul_(0.1)
                cell = slice(2 * hidden, 3 * hidden)  # gate order: input, forget, cell, output
                w_ih[cell] = q[:hidden, :size] * scale * (n / size) ** 0.5
                b_hh.zero_()
                b_ih.zero_()
                b_ih[:hidden] = 4.0
                b_ih[hidden : 2 * hidden] = -4.0
                b_ih[3 * hidden :] = 4.0
                b_ih[cell] = -(w_ih[cell] @ layer_input.reshape(-1, size).mean(0))
                for kind, value in (("weight_ih", w_ih), ("weight_hh", w_hh), ("bias_ih", b_ih), ("bias_hh", b_hh)):
                    getattr(one, f"{kind}_l0{suffix}").copy_(value)
            layer_input = one(layer_input)[0]
        states = layer_input.reshape(-1, 2 * hidden)
        target = probe(features).reshape(-1, CRNN_CLASSES)
        design = torch.cat([states, torch.ones(len(states), 1)], 1)
        solution = torch.linalg.lstsq(design, target).solution
        model.head.weight.copy_(solution[:-1].T)
        model.head.bias.copy_(solution[-1])


def crnn_pt2(
    folder: Path,
    conv_steps: int = 80,
    tune_steps: int = 60,
    channels: tuple[int, int, int, int] = (24, 48, 64, 96),
    hidden: int = 64,
    batch: int = 32,
    train_width: int = CRNN_WIDTH // 2,
) -> Built:
    """CRNN digit-strip recogniser saved with torch.export.save: crnn.pt2, input `image` float32
    [batch (dynamic), 1, 32, 160], output log-probabilities [N, 40, 11] (blank 10). Writes
    crnn.calibration.npz (`image`, 64 strips), crnn.eval.npz (`image`, 200 strips, no labels) and
    crnn.targets.npz (`digits` [200, 5] padded with -1, `lengths`).

    Training, CTC loss on fresh strips every step: `conv_steps` of the convolutions under a temporary linear
    CTC head, a warm start of the BiLSTMs and the real head from it (`_warm_start_recurrent`), then
    `tune_steps` of the whole network. Training strips are `train_width` px wide (2-3 digits: half the cost;
    the network is convolutional and recurrent along the width, and reads the 160 px strips as well).

    The default size puts about two thirds of onnxruntime's CPU time in the convolutions and a fifth in the
    LSTMs (as in issue 8's CRNN: dynamic INT8 on the LSTMs alone ~1.2x, static convolutions + dynamic LSTMs
    ~2x on a VNNI CPU); narrower convolutions (16, 32, 48, 64) build faster but their INT8 gain is small."""
    folder.mkdir(parents=True, exist_ok=True)
    name = "crnn"
    x_train, y_train, x_test, y_test = _digits()
    with _torch_session() as torch:
        from torch import nn

        model = _crnn(channels, hidden)
        ctc = nn.CTCLoss(blank=CRNN_BLANK, zero_infinity=True)
        probe = nn.Linear(channels[-1], CRNN_CLASSES)  # phase 1 only; not part of the model

        def train(forward, parameters: list, count: int, seed: int, lr: float, warmup: float, width: int) -> None:
            optimizer = torch.optim.Adam(parameters, lr=lr)
            schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=count, pct_start=warmup)
            digits = (3, 5) if width >= CRNN_WIDTH else (2, 3)
            for step in range(count):
                strips, targets = digit_strips(
                    batch, seed=seed + step, pool=(x_train, y_train), width=width, digits=digits
                )
                out = forward(torch.from_numpy(strips))  # [N, T, C] log-probabilities
                loss = ctc(
                    out.permute(1, 0, 2),
                    torch.from_numpy(targets[targets >= 0]),
                    torch.full((batch,), out.shape[1], dtype=torch.long),
                    torch.from_numpy((targets >= 0).sum(1)),
                )
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(parameters, 5.0)
                optimizer.step()
                schedule.step()

        model.train()
        conv_params = [*model.features.parameters(), *probe.parameters()]
        train(lambda x: probe(model.sequence(x)).log_softmax(-1), conv_params, conv_steps, 1000, 5e-3, 0.2, train_width)
        model.eval()
        with torch.no_grad():
            warm, _ = digit_strips(64, seed=999, pool=(x_train, y_train))
            features = model.sequence(torch.from_numpy(warm))
        _warm_start_recurrent(torch, model, probe, features, hidden)
        model.train()
        train(model, list(model.parameters()), tune_steps, 5000, 1e-3, 0.1, train_width)
        model.eval()
        eval_strips, eval_targets = digit_strips(200, seed=2, pool=(x_test, y_test))
        cal_strips, _ = digit_strips(64, seed=1, pool=(x_train, y_train))
        with torch.no_grad():
            accuracy = sequence_accuracy(model(torch.from_numpy(eval_strips)).numpy(), eval_targets)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "tensor attributes self.rnn._flat_weights ... assigned during export"
            program = torch.export.export(
                model,
                (torch.from_numpy(eval_strips[:2]),),
                dynamic_shapes={"image": {0: torch.export.Dim("batch", min=1, max=1024)}},
            )
        path = folder / f"{name}.pt2"
        torch.export.save(program, str(path))
    calibration = _npz(folder / f"{name}.calibration.npz", image=cal_strips)
    evaluation = _npz(folder / f"{name}.eval.npz", image=eval_strips)
    targets_path = _npz(folder / f"{name}.targets.npz", digits=eval_targets, lengths=(eval_targets >= 0).sum(1))
    return Built(
        name,
        path,
        calibration,
        evaluation,
        accuracy,
        targets=targets_path,
        info={"time_steps": CRNN_WIDTH // 4, "classes": CRNN_CLASSES, "blank": CRNN_BLANK},
    )


# ------------------------------------------------------------ issue 19 section 2: LayerNorm in every form

NORM_FORMS = (
    "centred-pow-sqrt-div",  # torch's LayerNorm export before opset 17: Pow 2, Sqrt, Div
    "centred-mul-rsqrt-mul",  # tf2onnx: Square as Mul x*x, Rsqrt as Sqrt + Reciprocal, scale folded into it
    "centred-mul-one-over-sqrt",  # Div(1, Sqrt(.)) then Mul
    "centred-tf-fused",  # Keras via tf2onnx: x * inv + (beta - mean * inv), inv = gamma / sqrt(var + eps)
    "moments",  # flax via jax2tf: E[x^2] - E[x]^2 with ReduceSum / n, Max(., 0), Sqrt + Reciprocal
    # Magika's export (jax2tf -> tf2onnx): moments with / n as Mul(1/n), Max(0, .), and each statistic broadcast
    # with Reshape + Expand to a shape computed from Shape(x)
    "moments-broadcast",
    "rms-pow-sqrt-div",  # RMSNorm (T5, LLaMA): x / sqrt(mean(x^2) + eps)
    "rms-mul-reciprocal",  # RMSNorm with Mul x*x and Reciprocal
)
NORM_WIDTH = 16


def norm_form_model(form: str, opset: int = 13, affine: bool = True, shuffle: bool = False, seed: int = SEED):
    """A small graph: MatMul -> one decomposed normalisation of `form` -> residual Add -> MatMul, plus a sum of
    squares that is not a normalisation (an "energy" output). Returns (ModelProto, names of the norm's nodes).
    `shuffle` writes the nodes in a seeded random order (not valid ONNX, which wants dataflow order: it tests
    that the detector matches by dataflow; `topologically_sorted` makes it runnable); opset 13 on gives
    ReduceSum its axes as an input, opset 12 as an attribute."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    f32 = np.float32
    inits = [
        numpy_helper.from_array(rng.normal(size=(NORM_WIDTH, NORM_WIDTH)).astype(f32), "w_in"),
        numpy_helper.from_array(rng.normal(size=(NORM_WIDTH, 4)).astype(f32), "w_out"),
        numpy_helper.from_array(np.array(1e-5, f32), "eps"),
        numpy_helper.from_array(np.array(float(NORM_WIDTH), f32), "count"),
        numpy_helper.from_array(np.array(2.0, f32), "two"),
        numpy_helper.from_array(np.array(1.0, f32), "one"),
        numpy_helper.from_array(np.array(0.0, f32), "zero"),
        numpy_helper.from_array((1 + 0.1 * rng.normal(size=NORM_WIDTH)).astype(f32), "gamma"),
        numpy_helper.from_array((0.1 * rng.normal(size=NORM_WIDTH)).astype(f32), "beta"),
        numpy_helper.from_array(np.array([-1], np.int64), "axes_last"),
        numpy_helper.from_array(np.array(1.0 / NORM_WIDTH, f32), "inv_count"),
        numpy_helper.from_array(np.array([0], np.int64), "zero_i"),
        numpy_helper.from_array(np.array([2], np.int64), "two_i"),
        numpy_helper.from_array(np.array([1], np.int64), "one_i"),
    ]
    norm: list = []
    shape_math: list = []  # a converter's shape arithmetic: not part of the normalisation

    def n(op: str, inputs: list[str], output: str, **attrs) -> str:
        norm.append(helper.make_node(op, inputs, [output], name=f"norm/{output}", **attrs))
        return output

    def reduce(op: str, x: str, output: str) -> str:
        if op == "ReduceSum" and opset >= 13:
            return n(op, [x, "axes_last"], output, keepdims=1)
        return n(op, [x], output, axes=[-1], keepdims=1)

    x = "h"
    if form.startswith("centred"):
        mean = reduce("ReduceMean", x, "mean")
        centred = n("Sub", [x, mean], "centred")
        square = n("Pow", [centred, "two"], "sq") if "pow" in form else n("Mul", [centred, centred], "sq")
        var = n("Add", [reduce("ReduceMean", square, "var"), "eps"], "var_eps")
        std = n("Sqrt", [var], "std")
        if form == "centred-tf-fused":
            inv = n("Reciprocal", [std], "inv")
            inv = n("Mul", [inv, "gamma"], "inv_scaled") if affine else inv
            shift = n("Mul", [mean, inv], "mean_inv")
            x_inv = n("Mul", [x, inv], "x_inv")
            out = (
                n("Add", [x_inv, n("Sub", ["beta", shift], "shift")], "out")
                if affine
                else n("Sub", [x_inv, shift], "out")
            )
        elif form.endswith("sqrt-div"):
            normed = n("Div", [centred, std], "normed")
            scaled = n("Mul", [normed, "gamma"], "scaled") if affine else normed
        else:
            inv = n("Reciprocal", [std], "inv") if "rsqrt" in form else n("Div", ["one", std], "inv")
            if affine and "rsqrt" in form:  # flax/tf: the scale multiplies the inverse deviation
                inv = n("Mul", [inv, "gamma"], "inv_scaled")
            normed = n("Mul", [centred, inv], "normed")
            scaled = n("Mul", ["gamma", normed], "scaled") if affine and "rsqrt" not in form else normed
        if form != "centred-tf-fused":
            out = n("Add", [scaled, "beta"], "out") if affine else scaled
    elif form == "moments":
        mean = n("Div", [reduce("ReduceSum", x, "sum"), "count"], "mean")
        mean_sq = n("Div", [reduce("ReduceSum", n("Mul", [x, x], "sq"), "sum_sq"), "count"], "mean_sq")
        var = n("Max", [n("Sub", [mean_sq, n("Mul", [mean, mean], "mean2")], "var_raw"), "zero"], "var")
        inv = n("Reciprocal", [n("Sqrt", [n("Add", [var, "eps"], "var_eps")], "std")], "inv")
        if affine:
            inv = n("Mul", [inv, "gamma"], "inv_scaled")
        normed = n("Mul", [n("Sub", [x, mean], "centred"), inv], "normed")
        out = n("Add", [normed, "beta"], "out") if affine else normed
    elif form == "moments-broadcast":
        shape_math.extend([
            helper.make_node("Shape", [x], ["x_shape"], name="shape/Shape"),
            helper.make_node("Slice", ["x_shape", "zero_i", "two_i", "zero_i"], ["lead"], name="shape/strided_slice"),
            helper.make_node("Concat", ["lead", "one_i"], ["stat_shape_raw"], name="shape/Concat", axis=0),
            helper.make_node("Cast", ["stat_shape_raw"], ["stat_shape"], name="shape/Cast", to=TensorProto.INT64),
        ])  # fmt: skip

        def broadcast(stat: str) -> str:
            return n("Expand", [n("Reshape", [stat, "stat_shape"], f"{stat}_r"), "stat_shape"], f"{stat}_b")

        mean = n("Mul", [reduce("ReduceSum", x, "sum"), "inv_count"], "mean")
        mean_sq = n("Mul", [reduce("ReduceSum", n("Mul", [x, x], "sq"), "sum_sq"), "inv_count"], "mean_sq")
        var = n("Max", ["zero", n("Sub", [mean_sq, n("Mul", [mean, mean], "mean2")], "var_raw")], "var")
        var = broadcast(var)
        inv = n("Reciprocal", [n("Sqrt", [n("Add", [var, "eps"], "var_eps")], "std")], "inv")
        if affine:
            inv = n("Mul", [inv, "gamma"], "inv_scaled")
        normed = n("Mul", [n("Sub", [x, broadcast(mean)], "centred"), inv], "normed")
        out = n("Add", [normed, "beta"], "out") if affine else normed
    elif form.startswith("rms"):
        square = n("Pow", [x, "two"], "sq") if "pow" in form else n("Mul", [x, x], "sq")
        var = n("Add", [reduce("ReduceMean", square, "ms"), "eps"], "ms_eps")
        std = n("Sqrt", [var], "rms")
        normed = (
            n("Div", [x, std], "normed") if "div" in form else n("Mul", [x, n("Reciprocal", [std], "inv")], "normed")
        )
        out = n("Mul", ["gamma", normed], "out") if affine else normed
    else:
        raise ValueError(f"unknown norm form {form!r}")
    nodes = [
        helper.make_node("MatMul", ["x", "w_in"], ["h"], name="dense_in"),
        *shape_math,
        *norm,
        helper.make_node("Add", [out, "h"], ["residual"], name="residual"),
        helper.make_node("MatMul", ["residual", "w_out"], ["y"], name="dense_out"),
        # Not a normalisation: a sum of squares that is never turned into a scale of its input.
        helper.make_node("Mul", ["h", "h"], ["h_sq"], name="energy/square"),
        helper.make_node("ReduceSum", ["h_sq", "axes_last"] if opset >= 13 else ["h_sq"], ["energy"],
                         name="energy/sum", keepdims=1, **({} if opset >= 13 else {"axes": [-1]})),
    ]  # fmt: skip
    if shuffle:
        nodes = [nodes[i] for i in rng.permutation(len(nodes))]
    graph = helper.make_graph(
        nodes,
        f"norm_{form}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8, NORM_WIDTH])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8, 4]),
            helper.make_tensor_value_info("energy", TensorProto.FLOAT, ["batch", 8, 1]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model, [node.name for node in norm]


def topologically_sorted(model):
    """A copy of `model` with its nodes in dataflow order (ONNX requires it; the shuffled models test that the
    detector does not)."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    known = {i.name for i in copy.graph.input} | {t.name for t in copy.graph.initializer} | {""}
    pending, ordered = list(copy.graph.node), []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        for node in ready:
            known.update(node.output)
        ordered += ready
        done = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in done]
    del copy.graph.node[:]
    copy.graph.node.extend(ordered)
    return copy


# ------------------------------------------- issue 19 section 2: byte classifier, Einsum dense, moments LN

EINSUM_EMBED, EINSUM_WIDTH, EINSUM_HIDDEN, EINSUM_KERNEL, EINSUM_BLOCKS = 48, 96, 384, 3, 2
_GELU_C = float(np.sqrt(2.0 / np.pi))


def _train_einsum_classifier(x: np.ndarray, y: np.ndarray, steps: int) -> dict[str, np.ndarray]:
    """The torch twin of `einsum_classifier_graph` (same arithmetic, LayerNorm as E[x^2] - E[x]^2), trained."""
    with _torch_session() as torch:
        from torch import nn

        def layer_norm(h, gamma, beta):  # flax's form: var = max(E[x^2] - E[x]^2, 0), scale folded into rsqrt
            mean = h.mean(-1, keepdim=True)
            var = torch.clamp((h * h).mean(-1, keepdim=True) - mean * mean, min=0.0)
            return (h - mean) * (torch.rsqrt(var + 1e-6) * gamma) + beta

        class EinsumNet(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.embed = nn.Embedding(256, EINSUM_EMBED)
                self.embed_bias = nn.Parameter(torch.zeros(EINSUM_EMBED))
                self.conv = nn.Conv2d(EINSUM_EMBED, EINSUM_WIDTH, (1, EINSUM_KERNEL), padding=(0, EINSUM_KERNEL // 2))
                self.gammas = nn.ParameterList([nn.Parameter(torch.ones(EINSUM_WIDTH)) for _ in range(3)])
                self.betas = nn.ParameterList([nn.Parameter(torch.zeros(EINSUM_WIDTH)) for _ in range(3)])
                self.up = nn.ModuleList([nn.Linear(EINSUM_WIDTH, EINSUM_HIDDEN) for _ in range(EINSUM_BLOCKS)])
                self.down = nn.ModuleList([nn.Linear(EINSUM_HIDDEN, EINSUM_WIDTH) for _ in range(EINSUM_BLOCKS)])
                self.head = nn.Linear(EINSUM_WIDTH, len(FILE_TYPES))

            def forward(self, data):
                e = self.embed(data) + self.embed_bias  # [N, L, E]
                h = self.conv(e.permute(0, 2, 1)[:, :, None, :])[:, :, 0, :].permute(0, 2, 1)
                h = layer_norm(torch.relu(h), self.gammas[0], self.betas[0])
                for i in range(EINSUM_BLOCKS):
                    a = self.up[i](layer_norm(h, self.gammas[i + 1], self.betas[i + 1]))
                    h = h + self.down[i](nn.functional.gelu(a, approximate="tanh"))
                return self.head(h.mean(1))

        model = EinsumNet()
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
        xt, yt = torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y)
        generator = torch.Generator().manual_seed(SEED)
        for _ in range(steps):
            index = torch.randint(0, len(xt), (32,), generator=generator)
            loss = nn.functional.cross_entropy(model(xt[index]), yt[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        weights = {
            "embed": model.embed.weight,
            "embed_bias": model.embed_bias,
            "conv_w": model.conv.weight,
            "conv_b": model.conv.bias,
            "head_w": model.head.weight.T,
            "head_b": model.head.bias,
        }
        for i in range(3):
            weights[f"gamma{i}"], weights[f"beta{i}"] = model.gammas[i], model.betas[i]
        for i in range(EINSUM_BLOCKS):
            weights[f"up{i}_w"], weights[f"up{i}_b"] = model.up[i].weight.T, model.up[i].bias
            weights[f"down{i}_w"], weights[f"down{i}_b"] = model.down[i].weight.T, model.down[i].bias
        return {k: v.detach().numpy().astype(np.float32).copy() for k, v in weights.items()}


def einsum_classifier_graph(weights: dict[str, np.ndarray]):
    """The classifier as a jax2tf -> tf2onnx export writes a flax model (opset 13): one-hot bytes, dense layers
    as Einsum + bias Add, a (1, k) Conv between NHWC/NCHW Transposes, LayerNorm as E[x^2] - E[x]^2 (ReduceSum
    / n, Square as Mul x*x, Maximum as Max, Rsqrt as Sqrt + Reciprocal, the scale folded into it), GELU in
    its tanh form (the AddV2 of the activation), mean pooling, softmax."""
    from onnx import TensorProto, helper, numpy_helper

    f32 = np.float32
    p = "jax2tf_infer_fn_/pjit_byte_model_/"
    inits = [
        numpy_helper.from_array(np.arange(256, dtype=np.int32), "const_fold_opt__iota"),
        numpy_helper.from_array(np.array([-1], np.int64), "const_axes__last"),
        numpy_helper.from_array(np.array([1], np.int64), "const_axes__seq"),
        numpy_helper.from_array(np.array([-1, 1, BYTES, EINSUM_EMBED], np.int64), "const_fold_opt__nhwc"),
        numpy_helper.from_array(np.array([-1, BYTES, EINSUM_WIDTH], np.int64), "const_fold_opt__nlc"),
        numpy_helper.from_array(np.array(float(EINSUM_WIDTH), f32), "const_fold_opt__width"),
        numpy_helper.from_array(np.array(0.0, f32), "const_zero"),
        numpy_helper.from_array(np.array(1.0, f32), "const_one"),
        numpy_helper.from_array(np.array(0.5, f32), "const_half"),
        numpy_helper.from_array(np.array(0.044715, f32), "const_gelu_cubic"),
        numpy_helper.from_array(np.array(_GELU_C, f32), "const_gelu_scale"),
        numpy_helper.from_array(np.array(1e-6, f32), "const_epsilon"),
    ]
    inits += [numpy_helper.from_array(value.astype(f32), f"{p}{key}") for key, value in sorted(weights.items())]
    nodes: list = []

    def node(op: str, inputs: list[str], name: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [f"{p}{name}:0"], name=f"{p}{name}", **attrs))
        return f"{p}{name}:0"

    def dense(x: str, scope: str, weight: str, equation: str) -> str:
        y = node("Einsum", [x, f"{p}{weight}_w" if weight != "embed" else f"{p}embed"], f"{scope}/einsum",
                 equation=equation)  # fmt: skip
        return node("Add", [y, f"{p}{weight}_b" if weight != "embed" else f"{p}embed_bias"], f"{scope}/add")

    def layer_norm(x: str, scope: str, index: int) -> str:
        total = node("ReduceSum", [x, "const_axes__last"], f"{scope}/Sum", keepdims=1)
        mean = node("Div", [total, "const_fold_opt__width"], f"{scope}/truediv")
        square = node("Mul", [x, x], f"{scope}/Square")
        total_sq = node("ReduceSum", [square, "const_axes__last"], f"{scope}/Sum_1", keepdims=1)
        mean_sq = node("Div", [total_sq, "const_fold_opt__width"], f"{scope}/truediv_1")
        var = node("Sub", [mean_sq, node("Mul", [mean, mean], f"{scope}/Square_1")], f"{scope}/sub")
        var = node("Max", [var, "const_zero"], f"{scope}/Maximum")
        std = node("Sqrt", [node("Add", [var, "const_epsilon"], f"{scope}/add")], f"{scope}/Rsqrt/sqrt")
        scale = node("Mul", [node("Reciprocal", [std], f"{scope}/Rsqrt"), f"{p}gamma{index}"], f"{scope}/mul")
        centred = node("Sub", [x, mean], f"{scope}/sub_1")
        return node("Add", [node("Mul", [centred, scale], f"{scope}/mul_1"), f"{p}beta{index}"], f"{scope}/add_1")

    def gelu(x: str, scope: str) -> str:
        cube = node("Mul", [node("Mul", [x, x], f"{scope}/mul"), x], f"{scope}/mul_1")
        inner = node("Add", [x, node("Mul", [cube, "const_gelu_cubic"], f"{scope}/mul_2")], f"{scope}/AddV2")
        t = node("Tanh", [node("Mul", [inner, "const_gelu_scale"], f"{scope}/mul_3")], f"{scope}/Tanh")
        half = node("Mul", [x, "const_half"], f"{scope}/mul_4")
        return node("Mul", [half, node("Add", [t, "const_one"], f"{scope}/AddV2_1")], f"{scope}/mul_5")

    expanded = node("Unsqueeze", ["bytes", "const_axes__last"], "one_hot/ExpandDims")
    one_hot = node("Cast", [node("Equal", [expanded, "const_fold_opt__iota"], "one_hot/Equal")], "one_hot/Cast",
                   to=TensorProto.FLOAT)  # fmt: skip
    h = dense(one_hot, "Embed_0", "embed", "blv,ve->ble")
    h = node("Transpose", [node("Reshape", [h, "const_fold_opt__nhwc"], "Conv_0/ExpandDims")], "Conv_0/nchw",
             perm=[0, 3, 1, 2])  # fmt: skip
    pad = EINSUM_KERNEL // 2
    h = node("Conv", [h, f"{p}conv_w", f"{p}conv_b"], "Conv_0/conv", kernel_shape=[1, EINSUM_KERNEL],
             pads=[0, pad, 0, pad], strides=[1, 1], dilations=[1, 1], group=1)  # fmt: skip
    h = node("Reshape", [node("Transpose", [h], "Conv_0/nhwc", perm=[0, 2, 3, 1]), "const_fold_opt__nlc"],
             "Conv_0/Squeeze")  # fmt: skip
    h = layer_norm(node("Relu", [h], "Relu_0"), "LayerNorm_0", 0)
    for i in range(EINSUM_BLOCKS):
        a = dense(layer_norm(h, f"Block_{i}/LayerNorm", i + 1), f"Block_{i}/Dense_0", f"up{i}", "...d,df->...f")
        z = dense(gelu(a, f"Block_{i}/gelu"), f"Block_{i}/Dense_1", f"down{i}", "...f,fd->...d")
        h = node("Add", [h, z], f"Block_{i}/AddV2")
    pooled = node("ReduceMean", [h], "mean", axes=[1], keepdims=0)
    logits = dense(pooled, "Head", "head", "bd,dc->bc")
    nodes.append(helper.make_node("Softmax", [logits], ["probabilities"], name=f"{p}Softmax", axis=-1))
    graph = helper.make_graph(
        nodes,
        "tf2onnx",
        [helper.make_tensor_value_info("bytes", TensorProto.INT32, ["unk__0", BYTES])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["unk__1", len(FILE_TYPES)])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="tf2onnx")
    model.producer_version = "1.16.1 15c810"
    model.ir_version = 7
    labels = model.metadata_props.add()
    labels.key, labels.value = "labels", json.dumps(list(FILE_TYPES))
    return model


def einsum_byte_classifier(folder: Path, steps: int = 250) -> Built:
    """Issue 19's byte classifier: int32 `bytes` [N, 256] -> one-hot -> Einsum dense layers, one Conv, three
    LayerNorms in the E[x^2] - E[x]^2 form (flax through jax2tf and tf2onnx), GELU, 6 file types out. Writes
    einsum_classifier.onnx, .calibration.npz (128 windows) and .eval.npz (300 windows with `labels`)."""
    folder.mkdir(parents=True, exist_ok=True)
    name = "einsum_classifier"
    x_train, y_train = file_type_windows(1200, seed=21)
    weights = _train_einsum_classifier(x_train, y_train, steps)
    path = _save(einsum_classifier_graph(weights), folder / f"{name}.onnx")
    x_cal, _ = file_type_windows(128, seed=22)
    x_eval, y_eval = file_type_windows(300, seed=23)
    calibration = _npz(folder / f"{name}.calibration.npz", bytes=x_cal)
    evaluation = _npz(folder / f"{name}.eval.npz", bytes=x_eval, labels=y_eval)
    accuracy = float((_ort_outputs(path, {"bytes": x_eval}).argmax(1) == y_eval).mean())
    return Built(name, path, calibration, evaluation, accuracy, info={"classes": list(FILE_TYPES)})


# ------------------------------------------------------------------ issue 19: the real byte classifier

MAGIKA_PER_EXTENSION = 12  # at most this many files of one extension, so .py files do not fill the set


def magika_model_path() -> Path:
    """Google's Magika content-type model, as its wheel ships it (`magika` is in the test extra): the real
    model of issue 19's class (jax2tf -> tf2onnx, opset 15: int32 bytes [N, 2048], one-hot, Einsum dense
    layers as MatMul, GELU in its tanh form, one Conv, two LayerNorms as E[x^2] - E[x]^2 broadcast with
    Reshape + Expand, 200+ content types)."""
    import importlib.util

    spec = importlib.util.find_spec("magika")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the magika package is not installed (pip install magika)")
    [model] = sorted(Path(next(iter(spec.submodule_search_locations)), "models").glob("*/model.onnx"))
    return model


def magika_features(path: Path, beg: int = 1024, end: int = 1024, block: int = 4096, pad: int = 256) -> list[int]:
    """Magika's model input for one file (its features v2): up to `block` bytes from each end, whitespace
    stripped, the first `beg` and last `end` bytes as ints, padded with `pad`."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(min(block, size)).lstrip()[:beg]
        handle.seek(max(0, size - block))
        tail = handle.read().rstrip()[-end:] if end else b""
    return list(head) + [pad] * (beg - len(head)) + [pad] * (end - len(tail)) + list(tail)


def files_on_this_machine(count: int, seed: int) -> list[Path]:
    """Real files of many types from this Python's standard library and installed packages (sources, text,
    JSON, shared objects, images, archives...), at most MAGIKA_PER_EXTENSION per extension, a seeded choice."""
    import os
    import sysconfig

    per_extension: dict[str, list[Path]] = {}
    for root in sorted({sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]}):
        for folder, dirs, names in os.walk(root):
            dirs.sort()
            for name in sorted(names):
                path = Path(folder, name)
                if path.is_file() and not path.is_symlink() and path.stat().st_size >= 16:
                    per_extension.setdefault(path.suffix.lower() or name, []).append(path)
    rng = np.random.default_rng(seed)
    chosen: list[Path] = []
    for extension in sorted(per_extension):
        paths = per_extension[extension]
        picks = rng.choice(len(paths), size=min(MAGIKA_PER_EXTENSION, len(paths)), replace=False)
        chosen.extend(paths[i] for i in sorted(picks))
    order = rng.permutation(len(chosen))[:count]
    return [chosen[i] for i in order]


def magika_byte_classifier(folder: Path, calibration: int = 128, evaluation: int = 512) -> Built:
    """Issue 19's real byte classifier: Magika's shipped model with its features of real files from this
    machine. Writes magika.onnx, .calibration.npz and .eval.npz (`bytes`, disjoint files). No labels: the
    float model's own answers are the reference (top-1 agreement)."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    model = Path(shutil.copyfile(magika_model_path(), folder / "magika.onnx"))
    files = files_on_this_machine(calibration + evaluation, seed=SEED)
    x = np.array([magika_features(path) for path in files], dtype=np.int32)
    cal = _npz(folder / "magika.calibration.npz", bytes=x[:calibration])
    ev = _npz(folder / "magika.eval.npz", bytes=x[calibration:])
    return Built("magika", model, cal, ev, None, info={"files": len(files)})


BUILDERS = {
    "cnn_opset11": opset11_constant_cnn,
    "cnn_opset12": opset12_constant_cnn,
    "paddle_detector": paddle_style_detector,
    "jax_classifier": jax_style_classifier,
    "mobilenetv3_small": mobilenetv3_small_style,
    "crnn": crnn_pt2,
    "einsum_classifier": einsum_byte_classifier,
    "magika": magika_byte_classifier,
}
