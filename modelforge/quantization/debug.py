"""Per-layer debugging: where does a quantized model lose accuracy?

Runs the float model and the quantized model side by side on the same samples, with every intermediate
tensor they share exposed as an output, and compares each pair batch by batch (memory stays flat):

- `sqnr_db`: signal-to-quantization-noise ratio of the tensor, 10 log10(sum a^2 / sum (a - b)^2), with
  a the float tensor and b the quantized model's as its consumers read it (after its own Q/DQ pair).
  Errors accumulate along the graph, so late layers always look worse; hence
- `added_sqnr_db`: the SQNR of the noise this node adds itself: its relative noise power minus the worst
  relative noise power among its inputs. The lowest values are where accuracy goes: quantized layers come
  first, each group worst first (a float layer can amplify the noise it receives: it is listed after).
- `local_sqnr_db` (static QDQ models): the node alone, fed the float model's inputs through its own Q/DQ
  pairs and dequantized weights, against the float node. It ranks the layers: a layer that feeds the next
  one an unrepresentable activation (an outlier channel) shows here, not where the damage surfaces later.
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
    local_sqnr_db: float | None  # the node alone: float inputs through its own Q/DQ (static QDQ models)
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


def _as_consumed(quant_model) -> tuple[dict[str, str], dict[str, object]]:
    """For each tensor, the name of what its consumers read in the quantized model (the DequantizeLinear
    output of its Q/DQ pair, when it has one: that includes the tensor's own quantization, and the clipping
    of a Relu the quantizer folded away), and the node that really computes it (through Q/DQ, for a tensor
    that is a DequantizeLinear output such as a graph output)."""
    producers = {o: n for n in quant_model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in quant_model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    read_as, computed_by = {}, {}
    for tensor, node in producers.items():
        origin = node
        while origin is not None and origin.op_type in ("QuantizeLinear", "DequantizeLinear"):
            origin = producers.get(origin.input[0])
        computed_by[tensor] = origin
        q = next((c for c in consumers.get(tensor, []) if c.op_type == "QuantizeLinear"), None)
        dq = next((c for c in consumers.get(q.output[0], []) if c.op_type == "DequantizeLinear"), None) if q else None
        read_as[tensor] = dq.output[0] if dq is not None else tensor
    return read_as, computed_by


def _session(model, tensors: list[str], workdir: Path, label: str, threads: int | None):
    from modelforge.model.onnx_model import save_onnx
    from modelforge.quantization.calibration import add_outputs
    from modelforge.runtimes.onnxruntime import new_session, session_options

    add_outputs(model, tensors)
    path = workdir / f"debug-{label}.onnx"
    save_onnx(model, path)
    session = new_session(path, session_options(threads, optimization="basic"))
    return session, [o.name for o in session.get_outputs()]


def add_local_probes(float_model, quant_model) -> list[tuple[str, str, str]]:
    """Add to `float_model`, for each node the QDQ model quantizes, a copy fed with the node's float inputs
    passed through that node's own Q/DQ pairs and its dequantized weights: the error of the copy against the
    float node is the error this node causes alone. Returns (node, float output, probe output) triples."""
    import onnx

    q_producers = {o: n for n in quant_model.graph.node for o in n.output}
    q_inits = {t.name: t for t in quant_model.graph.initializer}
    present = {t.name for t in float_model.graph.initializer}
    float_nodes = {n.name: n for n in float_model.graph.node if n.name}
    probes, new_nodes = [], []

    def copy_init(name: str) -> None:
        if name in q_inits and name not in present:
            float_model.graph.initializer.append(q_inits[name])
            present.add(name)

    def clone(node, name: str, inputs: list[str], outputs: list[str]):
        out = onnx.NodeProto()
        out.CopyFrom(node)
        out.name = name
        del out.input[:]
        out.input.extend(inputs)
        del out.output[:]
        out.output.extend(outputs)
        return out

    for node in quant_model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or node.name not in float_nodes:
            continue
        source = float_nodes[node.name]
        if len(source.input) != len(node.input):
            continue
        inputs, quantized = [], False
        for index, name in enumerate(node.input):
            dq = q_producers.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                inputs.append(source.input[index])
                continue
            quantized = True
            q = q_producers.get(dq.input[0])
            tag = f"{source.input[index]}__{node.name}"
            for extra in (*dq.input, *(q.input[1:] if q is not None else ())):
                copy_init(extra)
            if q is not None and q.op_type == "QuantizeLinear":
                q_out = f"{tag}__q"
                new_nodes.append(clone(q, f"{tag}__probe_q", [source.input[index], *q.input[1:]], [q_out]))
                new_nodes.append(clone(dq, f"{tag}__probe_dq", [q_out, *dq.input[1:]], [f"{tag}__dq"]))
            else:  # a quantized initializer (weight, bias)
                new_nodes.append(clone(dq, f"{tag}__probe_dq", list(dq.input), [f"{tag}__dq"]))
            inputs.append(f"{tag}__dq")
        if not quantized or not source.output:
            continue
        outputs = [f"{o}__probe" for o in source.output]
        new_nodes.append(clone(source, f"{source.name}__probe", inputs, outputs))
        probes.append((source.name, source.output[0], outputs[0]))
    float_model.graph.node.extend(new_nodes)  # appended last: every input they read already exists
    return probes


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
    from modelforge.model.onnx_model import io_spec, load_onnx
    from modelforge.quantization.qdq import quantized_nodes
    from modelforge.runtimes.onnxruntime import fixed_batch_size

    float_model = load_onnx(float_path)
    quant_model = load_onnx(quant_path)
    table = shared_tensors(float_model, quant_model)
    names = [t for t, _, _ in table]
    quantized = {name for name, _ in quantized_nodes(quant_model)}
    integer_ops = {"MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul", "MatMulNBits", "DynamicQuantizeLSTM"}
    read_as, computed_by = _as_consumed(quant_model)
    quant_names = {n.name for n in quant_model.graph.node}
    float_producers = {o: n for n in float_model.graph.node for o in n.output}
    probes = add_local_probes(float_model, quant_model)
    probe_tensors = [t for _, float_out, probe_out in probes for t in (float_out, probe_out)]
    float_a, outs_a = _session(float_model, names + probe_tensors, workdir, "float", threads)
    quant_b, outs_b = _session(quant_model, sorted({read_as[t] for t in names}), workdir, "quantized", threads)
    del float_model

    wanted = set(names)
    sums = {n: np.zeros(4) for n in names}  # a.a, d.d, a.b, b.b
    max_err = dict.fromkeys(names, 0.0)
    local = {node: np.zeros(2) for node, _, _ in probes}
    seen = 0
    count = min(samples, data.num_samples)
    fixed = fixed_batch_size(io_spec(quant_model))
    if fixed:  # a fixed-batch model takes only whole batches of its size
        batch_size = fixed
        count = max(fixed, count // fixed * fixed)
    window = data.window(0, count)
    for feeds in window.batches(batch_size):
        ra = dict(zip(outs_a, float_a.run(None, feeds), strict=True))
        rb = dict(zip(outs_b, quant_b.run(None, feeds), strict=True))
        for name in wanted:
            other = read_as[name]
            if name not in ra or other not in rb or ra[name].shape != rb[other].shape:
                continue
            a = ra[name].astype(np.float64, copy=False).ravel()
            b = rb[other].astype(np.float64, copy=False).ravel()
            d = a - b
            sums[name] += (a @ a, d @ d, a @ b, b @ b)
            if d.size:
                max_err[name] = max(max_err[name], float(np.abs(d).max()))
        for node, float_out, probe_out in probes:
            if float_out in ra and probe_out in ra and ra[float_out].shape == ra[probe_out].shape:
                a = ra[float_out].astype(np.float64, copy=False).ravel()
                d = a - ra[probe_out].astype(np.float64, copy=False).ravel()
                local[node] += (a @ a, d @ d)
        n = len(next(iter(feeds.values())))
        seen += n
        advance(n)
        del ra, rb

    noise = {}
    for name in names:
        aa, dd, _, _ = sums[name]
        noise[name] = dd / aa if aa > 0 else (0.0 if dd == 0 else 1.0)
    local_db = {node: _db(dd / aa) if aa > 0 else None for node, (aa, dd) in local.items()}

    def upstream(tensor: str, depth: int = 0) -> float:
        """Relative noise reaching a tensor: its own if measured, else the worst of its producer's inputs."""
        if tensor in noise:
            return noise[tensor]
        producer = float_producers.get(tensor)
        if producer is None or depth > 8:
            return 0.0  # a graph input or a weight: exact
        return max((upstream(i, depth + 1) for i in producer.input if i), default=0.0)

    rows = []
    for tensor, node, op_type in table:
        aa, dd, ab, bb = sums[tensor]
        producer = float_producers.get(tensor)
        inputs = [upstream(i) for i in (producer.input if producer is not None else ()) if i]
        added = noise[tensor] - max(inputs, default=0.0)
        q_node = computed_by.get(tensor)
        dynamic = f"{node}_quant" in quant_names  # onnxruntime's name for a dynamically quantized node
        is_quantized = dynamic or (q_node is not None and (q_node.name in quantized or q_node.op_type in integer_ops))
        local_node = q_node.name if q_node is not None and q_node.name in local_db else node
        if q_node is not None and not dynamic and q_node.name != node and q_node.op_type not in integer_ops:
            # The quantizer folded this node (a Relu) into the one computing its tensor: name both.
            node, op_type = f"{q_node.name} + {node}", f"{q_node.op_type}+{op_type}"
        rows.append(
            LayerError(
                node=node,
                op_type=op_type,
                tensor=tensor,
                sqnr_db=_db(noise[tensor]),
                added_sqnr_db=_db(added) if added > 0 else None,
                local_sqnr_db=local_db.get(local_node),
                cosine=float(ab / math.sqrt(aa * bb)) if aa > 0 and bb > 0 else float(aa == bb),
                max_abs_error=max_err[tensor],
                quantized=is_quantized,
            )
        )

    # Quantized layers first (they are what a fallback can change), each group worst first: the lowest local
    # SQNR (or added SQNR where no local probe exists: dynamic models). Float layers can amplify noise.
    def score(row: LayerError) -> float | None:
        return row.local_sqnr_db if row.local_sqnr_db is not None else row.added_sqnr_db

    rows.sort(key=lambda r: (not r.quantized, score(r) is None, score(r) if score(r) is not None else 0.0))
    return rows
