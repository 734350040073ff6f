"""Streaming calibration: run the float model batch by batch and keep only running statistics.

onnxruntime's calibrators keep every intermediate output of every sample in memory (about 29 MB per
sample on ResNet-18); here each batch's activations are reduced to per-tensor statistics and dropped,
so peak memory is set by the batch size, not by the number of samples.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from modelforge.data import BoundDataset

# Float tensors feeding or leaving these ops are the ones a QDQ quantizer may place Q/DQ pairs on.
FLOAT_TYPES = (1, 10)  # onnx.TensorProto.FLOAT, FLOAT16


def tensors_to_calibrate(model, op_types: set[str]) -> list[str]:
    """Float activations (not weights) entering or leaving quantizable nodes, in graph order."""
    value_types = {}
    for vi in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        if vi.type.HasField("tensor_type"):
            value_types[vi.name] = vi.type.tensor_type.elem_type
    initializers = {t.name for t in model.graph.initializer}
    seen: dict[str, None] = {}
    for node in model.graph.node:
        if node.op_type not in op_types:
            continue
        for name in [*node.input, *node.output]:
            if name and name not in initializers and value_types.get(name) in FLOAT_TYPES:
                seen.setdefault(name)
    return list(seen)


def add_outputs(model, tensors: list[str]) -> None:
    """Expose every calibrated tensor as a graph output (graph inputs are read from the feeds)."""
    import onnx

    existing = {o.name for o in model.graph.output} | {i.name for i in model.graph.input}
    for name in tensors:
        if name not in existing:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))


class MinMaxObserver:
    """Running min and max of each tensor: constant memory per tensor."""

    def __init__(self, names: list[str]):
        self.names = names
        self.low = {n: np.inf for n in names}
        self.high = {n: -np.inf for n in names}

    def update(self, values: dict[str, np.ndarray]) -> None:
        for name, value in values.items():
            if value.size:
                self.low[name] = min(self.low[name], float(value.min()))
                self.high[name] = max(self.high[name], float(value.max()))

    def ranges(self) -> dict[str, tuple[float, float]]:
        return {n: (self.low[n], self.high[n]) for n in self.names if np.isfinite(self.low[n])}


def calibrate_minmax(
    model_path: Path,
    tensors: list[str],
    data: BoundDataset,
    batch_size: int,
    threads: int | None,
    advance: Callable[[int], None],
    pass_name: str,
) -> dict[str, tuple[float, float]]:
    """Min/max of every tensor over the calibration samples, reading the data once, batch by batch."""
    from modelforge.backends.onnxruntime import create_session
    from modelforge.onnx_model import load_onnx, save_onnx

    model = load_onnx(model_path)
    add_outputs(model, tensors)
    augmented = model_path.with_name("calibration-augmented.onnx")
    save_onnx(model, augmented)
    del model
    session = create_session(augmented, threads, stage=pass_name)
    output_names = [o.name for o in session.get_outputs()]
    wanted = set(tensors)
    observer = MinMaxObserver(tensors)
    for feeds in data.batches(batch_size):
        outputs = session.run(None, feeds)
        observer.update({n: v for n, v in zip(output_names, outputs, strict=True) if n in wanted})
        # Graph inputs are not graph outputs: observe them from the feeds.
        observer.update({n: v for n, v in feeds.items() if n in wanted})
        advance(len(next(iter(feeds.values()))))
    return observer.ranges()
