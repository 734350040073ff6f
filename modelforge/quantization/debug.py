"""Per-layer debugging: where does a quantized model lose accuracy?

Runs the float model and the quantized model side by side on the same samples, with every intermediate
tensor they share exposed as an output, and compares each pair batch by batch (memory stays flat):

- `sqnr_db`: signal-to-quantization-noise ratio of the tensor, 10 log10(sum a^2 / sum (a - b)^2), with
  a the float tensor and b the quantized model's. Errors accumulate along the graph, so late layers
  always look worse; hence
- `added_sqnr_db`: the SQNR of the noise this node adds itself: its relative noise power minus the worst
  relative noise power among its inputs. The lowest values are where accuracy goes: they come first.
- `cosine`: cosine similarity of the flattened tensors over all samples.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from modelforge.data import BoundDataset


@dataclass(frozen=True)
class LayerError:
    node: str
    op_type: str
    tensor: str
    sqnr_db: float | None  # None: identical
    added_sqnr_db: float | None
    cosine: float
    max_abs_error: float
    quantized: bool  # the node runs on quantized inputs in the quantized model

    def record(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _db(noise: float) -> float | None:
    return None if noise <= 0 else -10.0 * math.log10(noise)


def _float_outputs(model) -> dict[str, int]:
    types = {}
    for vi in [*model.graph.value_info, *model.graph.output]:
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    return types


def shared_tensors(float_model, quant_model) -> list[tuple[str, str, str]]:
    """(tensor, node, op_type) for float node outputs of the float model that the quantized model also
    computes (under the same name), in graph order."""
    produced_q = {o for n in quant_model.graph.node for o in n.output}
    types = _float_outputs(float_model)
    out = []
    for node in float_model.graph.node:
        for name in node.output:
            if name and name in produced_q and types.get(name, 1) in (1, 10):
                out.append((name, node.name, node.op_type))
    return out


def _session(model, tensors: list[str], workdir: Path, label: str, threads: int | None):
    import onnxruntime as ort

    from modelforge.backends.onnxruntime import default_threads
    from modelforge.onnx_model import save_onnx
    from modelforge.quantization.calibration import add_outputs

    add_outputs(model, tensors)
    path = workdir / f"debug-{label}.onnx"
    save_onnx(model, path)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.intra_op_num_threads = threads or default_threads()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session, [o.name for o in session.get_outputs()]


def compare_layers(
    float_path: Path,
    quant_path: Path,
    data: BoundDataset,
    workdir: Path,
    *,
    samples: int = 32,
    batch_size: int = 8,
    threads: int | None = None,
    advance=lambda _: None,
) -> list[LayerError]:
    """Every shared tensor's error, worst added noise first."""
    from modelforge.onnx_model import load_onnx
    from modelforge.quantization.qdq import quantized_nodes

    float_model = load_onnx(float_path)
    quant_model = load_onnx(quant_path)
    table = shared_tensors(float_model, quant_model)
    names = [t for t, _, _ in table]
    quantized = {name for name, _ in quantized_nodes(quant_model)}
    integer_ops = {"MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul", "MatMulNBits", "DynamicQuantizeLSTM"}
    producers_q = {o: n for n in quant_model.graph.node for o in n.output}
    inputs_of = {n.name: [i for i in n.input if i] for n in float_model.graph.node}
    float_a, outs_a = _session(float_model, names, workdir, "float", threads)
    quant_b, outs_b = _session(quant_model, names, workdir, "quantized", threads)
    del float_model

    wanted = set(names)
    sums = {n: np.zeros(4) for n in names}  # a.a, d.d, a.b, b.b
    max_err = dict.fromkeys(names, 0.0)
    seen = 0
    window = data.window(0, min(samples, data.num_samples))
    for feeds in window.batches(batch_size):
        ra = dict(zip(outs_a, float_a.run(None, feeds), strict=True))
        rb = dict(zip(outs_b, quant_b.run(None, feeds), strict=True))
        for name in wanted:
            if name not in ra or name not in rb or ra[name].shape != rb[name].shape:
                continue
            a = ra[name].astype(np.float64, copy=False).ravel()
            b = rb[name].astype(np.float64, copy=False).ravel()
            d = a - b
            sums[name] += (a @ a, d @ d, a @ b, b @ b)
            if d.size:
                max_err[name] = max(max_err[name], float(np.abs(d).max()))
        n = len(next(iter(feeds.values())))
        seen += n
        advance(n)
        del ra, rb

    noise = {}
    for name in names:
        aa, dd, _, _ = sums[name]
        noise[name] = dd / aa if aa > 0 else (0.0 if dd == 0 else 1.0)
    rows = []
    for tensor, node, op_type in table:
        aa, dd, ab, bb = sums[tensor]
        inputs = [noise[i] for i in inputs_of.get(node, []) if i in noise]
        added = noise[tensor] - max(inputs, default=0.0)
        q_node = producers_q.get(tensor)
        is_quantized = q_node is not None and (q_node.name in quantized or q_node.op_type in integer_ops)
        rows.append(
            LayerError(
                node=node,
                op_type=op_type,
                tensor=tensor,
                sqnr_db=_db(noise[tensor]),
                added_sqnr_db=_db(added) if added > 0 else None,
                cosine=float(ab / math.sqrt(aa * bb)) if aa > 0 and bb > 0 else float(aa == bb),
                max_abs_error=max_err[tensor],
                quantized=is_quantized,
            )
        )
    # Worst first: the least added SQNR (None = adds no noise, last).
    rows.sort(key=lambda r: (r.added_sqnr_db is None, r.added_sqnr_db if r.added_sqnr_db is not None else 0.0))
    return rows
