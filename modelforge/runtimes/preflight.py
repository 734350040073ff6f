"""Pre-flight: before any work, find every reason the run would fail later, and report them all at once.

- every node's operator must be known to onnxruntime (the runtime of calibration, evaluation and the
  CPU target) at the model's opset; all blockers are listed together, not one per attempt;
- the model must load in onnxruntime; when it does not, the ONNX checker tells an invalid file (bad input,
  exit 2: dangling references, short weights, a truncated graph) from a valid one the runtime lacks support
  for (exit 3);
- calibration must fit in memory: activations of one calibration batch are estimated from shapes.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from modelforge.errors import InputError, PassError, first_line


@cache
def _runtime_ops() -> dict[tuple[str, str], int]:
    """(domain, op_type) -> lowest opset version onnxruntime has a schema for."""
    from onnxruntime.capi import _pybind_state

    known: dict[tuple[str, str], int] = {}
    for schema in _pybind_state.get_all_operator_schema():
        domain = "" if schema.domain == "ai.onnx" else schema.domain
        key = (domain, schema.name)
        known[key] = min(known.get(key, schema.since_version), schema.since_version)
    return known


def operator_blockers(model) -> list[dict[str, str]]:
    """Nodes onnxruntime cannot run: unknown operators, or operators newer than the model's opset."""
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    local_functions = {(f.domain, f.name) for f in model.functions}
    known = _runtime_ops()
    blockers = []
    for index, node in enumerate(model.graph.node):
        domain = "" if node.domain == "ai.onnx" else node.domain
        key = (domain, node.op_type)
        name = node.name or f"#{index}"
        if key in local_functions:
            continue
        if key not in known:
            where = f" in domain '{domain}'" if domain else ""
            why = f"onnxruntime has no operator {node.op_type}{where}"
            blockers.append({"node": name, "op_type": node.op_type, "why": why})
        elif domain in opsets and known[key] > opsets[domain]:
            blockers.append(
                {
                    "node": name,
                    "op_type": node.op_type,
                    "why": f"needs opset {known[key]}, model imports opset {opsets[domain]}",
                }
            )
    return blockers


def check_loads(path: Path) -> None:
    """Load the model in onnxruntime once, without optimizations (cheap, quiet): every later stage needs it."""
    from modelforge.runtimes.onnxruntime import new_session, session_options

    options = session_options(1, optimization="none", log_severity=4)  # fatal only: the exception says why
    try:
        session = new_session(path, options)
    except Exception as exc:  # onnxruntime's untyped errors (Fail, InvalidGraph, InvalidArgument...)
        reason = first_line(exc)
        invalid = _checker_error(path)
        if invalid is not None:
            raise InputError(f"{path}: not a valid ONNX model ({invalid})") from exc
        raise PassError("preflight", f"onnxruntime cannot load the model: {reason}") from exc
    del session


def _checker_error(path: Path) -> str | None:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)  # with strict shape inference: type errors
    except Exception as exc:  # ValidationError, or a file the checker cannot even parse
        return first_line(exc)
    return None


def activation_bytes_per_sample(model, data_shapes: dict[str, tuple[int, ...]]) -> int:
    """Bytes of all float intermediate tensors for one sample (symbolic dims taken from the data)."""
    import onnx

    named: dict[str, int] = {}
    for vi in model.graph.input:
        sample = data_shapes.get(vi.name)
        if sample is None:
            continue
        for dim, size in zip(vi.type.tensor_type.shape.dim[1:], sample, strict=False):
            if dim.HasField("dim_param"):
                named[dim.dim_param] = size
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    total = 0
    for vi in inferred.graph.value_info:
        tensor_type = vi.type.tensor_type
        if tensor_type.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
            continue
        dims = list(tensor_type.shape.dim)
        count = 1
        for position, dim in enumerate(dims):
            if dim.HasField("dim_value"):
                count *= dim.dim_value if position or len(dims) == 1 else 1  # axis 0 is the batch
            elif dim.dim_param in named:
                count *= named[dim.dim_param]
        total += count * (2 if tensor_type.elem_type == onnx.TensorProto.FLOAT16 else 4)
    return total


def available_memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def run_preflight(artifact, pass_specs, calibration) -> dict[str, Any]:
    """Raise with every blocker listed; return what was checked and estimated for the report."""
    from modelforge.model.onnx_model import load_onnx

    model = load_onnx(artifact.path, load_external_data=False)
    blockers = operator_blockers(model)
    if blockers:
        listed = "; ".join(f"node '{b['node']}' ({b['op_type']}): {b['why']}" for b in blockers[:20])
        more = f" (and {len(blockers) - 20} more)" if len(blockers) > 20 else ""
        raise PassError("preflight", f"{len(blockers)} node(s) cannot run on onnxruntime: {listed}{more}")
    check_loads(artifact.path)
    record: dict[str, Any] = {"nodes_checked": len(model.graph.node), "blockers": 0}
    if calibration is not None:
        shapes = {
            name: info.shape[1:]
            for name, info in ((n, calibration.dataset.arrays[k]) for n, k in calibration.keys.items())
        }
        per_sample = activation_bytes_per_sample(model, shapes)
        record["activation_bytes_per_sample"] = per_sample
        for spec, cls in pass_specs:
            batch = spec.config.get("calibration_batch_size")
            if not cls.needs_calibration or not batch:
                continue
            weights = artifact.size_bytes()
            needed = int(per_sample * batch + 2 * weights)
            record[f"{spec.name}_calibration_bytes_estimate"] = needed
            available = available_memory_bytes()
            if available is not None and needed > available:
                raise InputError(
                    f"pass '{spec.name}': calibration needs about {needed / 2**30:.1f} GiB "
                    f"(batch {batch} × {per_sample / 2**20:.0f} MiB of activations + weights), "
                    f"{available / 2**30:.1f} GiB available",
                    hint="lower calibration_batch_size",
                )
    return record
