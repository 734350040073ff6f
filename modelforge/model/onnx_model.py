"""ONNX model helpers: loading (with external data), IO specs, graph clean-up and statistics."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelforge.errors import InputError, first_line
from modelforge.model.artifact import IOSpec, ModelArtifact, TensorSpec
from modelforge.model.external_data import external_data_files

if TYPE_CHECKING:
    import onnx

# Models above this size must keep their weights in external data files (protobuf's 2 GB limit).
EXTERNAL_DATA_THRESHOLD = 1 << 30


def load_onnx(path: Path, load_external_data: bool = True) -> onnx.ModelProto:
    import onnx
    from google.protobuf.message import DecodeError

    if path.is_dir():
        raise InputError(f"model {path} is a directory, expected an ONNX file")
    if not path.is_file():
        raise InputError(f"model {path} not found")
    try:
        return onnx.load(str(path), load_external_data=load_external_data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise InputError(f"{path}: not a readable ONNX model ({exc})") from exc
    except onnx.checker.ValidationError as exc:  # e.g. an external data location outside the model's folder
        raise InputError(f"{path}: not a valid ONNX model ({first_line(exc)})") from exc
    except FileNotFoundError as exc:
        raise InputError(f"{path}: external data file missing ({exc.filename})") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def save_onnx(model: onnx.ModelProto, path: Path) -> None:
    """Save self-contained when small; large models keep one external data file beside them."""
    import onnx

    if _approximate_size(model) > EXTERNAL_DATA_THRESHOLD or _has_external_data(model):
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=path.name + ".data",
            size_threshold=1024,
        )
    else:
        onnx.save_model(model, str(path))


def _approximate_size(model: onnx.ModelProto) -> int:
    """Serialized size; protobuf cannot even measure a message over 2 GB, so count the weights then."""
    from google.protobuf.message import EncodeError

    try:
        return model.ByteSize()
    except (EncodeError, ValueError):
        return sum(len(t.raw_data) for t in model.graph.initializer) + (1 << 31)


def _has_external_data(model: onnx.ModelProto) -> bool:
    import onnx

    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def _numpy_dtype_name(elem_type: int) -> str:
    import onnx

    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name
    except (KeyError, TypeError):
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def _tensor_spec(value_info: Any) -> TensorSpec:
    tensor_type = value_info.type.tensor_type
    dims: list[int | str | None] = []
    if tensor_type.HasField("shape"):
        for d in tensor_type.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            elif d.HasField("dim_param"):
                dims.append(d.dim_param)
            else:
                dims.append(None)
    return TensorSpec(value_info.name, _numpy_dtype_name(tensor_type.elem_type), tuple(dims))


def io_spec(model: onnx.ModelProto) -> IOSpec:
    initializers = {t.name for t in model.graph.initializer}
    inputs = tuple(_tensor_spec(vi) for vi in model.graph.input if vi.name not in initializers)
    outputs = tuple(_tensor_spec(vi) for vi in model.graph.output)
    return IOSpec(inputs, outputs)


def check_structure(model: onnx.ModelProto, path: Path) -> None:
    """What every runnable model has; an empty, truncated or random file can parse as a ModelProto without it."""
    initializers = {t.name for t in model.graph.initializer}
    problem = None
    if not model.HasField("graph") or model.ir_version <= 0:
        problem = "no graph" if not model.HasField("graph") else "no IR version"
    elif not model.graph.node:
        problem = "a graph without nodes"
    elif not [vi for vi in model.graph.input if vi.name not in initializers]:
        problem = "a graph without inputs"
    elif not model.graph.output:
        problem = "a graph without outputs"
    elif not any(o.domain in ("", "ai.onnx") for o in model.opset_import):
        problem = "no opset import for the default ONNX domain"
    if problem:
        raise InputError(f"{path}: not a valid ONNX model ({problem}; truncated or not an ONNX file?)")


def onnx_artifact(path: Path, model: onnx.ModelProto | None = None) -> ModelArtifact:
    """The artifact of an ONNX file; its metadata_props are kept as the model's own metadata, never as control.
    `model`: the file's content when the caller has just read or written it (not parsed again)."""
    if model is None:
        model = load_onnx(path, load_external_data=False)
    check_structure(model, path)
    missing = [f for f in external_data_files(path, model) if not f.is_file()]
    if missing:
        raise InputError(
            f"{path}: external data file missing ({missing[0]})",
            hint="keep the weight files the model references beside it",
        )
    own = {p.key: p.value for p in model.metadata_props}
    return ModelArtifact(path=path, format="onnx", io=io_spec(model), model_metadata=own)


def opset_version(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def constants_to_initializers(model: onnx.ModelProto) -> int:
    """Turn tensor-valued Constant nodes into initializers, so quantizers see them as weights.

    Exporters (and hand-built graphs) often store weights as Constant nodes; quantizers look only at
    initializers, and would otherwise leave those weights in float. Returns how many were moved.
    """
    import onnx

    moved, kept = 0, []
    existing = {t.name for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.attribute) == 1:
            attr = node.attribute[0]
            if attr.name == "value" and node.output[0] not in existing:
                tensor = onnx.TensorProto()
                tensor.CopyFrom(attr.t)
                tensor.name = node.output[0]
                model.graph.initializer.append(tensor)
                moved += 1
                continue
        kept.append(node)
    if moved:
        del model.graph.node[:]
        model.graph.node.extend(kept)
    return moved


def parameter_count(model: onnx.ModelProto) -> int:
    import numpy as np

    total = 0
    for t in model.graph.initializer:
        total += int(np.prod(t.dims)) if t.dims else 1
    return total


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    return dict(Counter(n.op_type for n in model.graph.node).most_common())


def is_quantized(model: onnx.ModelProto) -> bool:
    quant_ops = {
        "QuantizeLinear",
        "DequantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "MatMulInteger",
        "ConvInteger",
        "MatMulNBits",
        "DynamicQuantizeLinear",
    }
    return any(n.op_type in quant_ops for n in model.graph.node)
