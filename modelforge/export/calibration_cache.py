"""TensorRT's INT8 calibration cache: the file `trtexec --calib` and IInt8EntropyCalibrator2 read.

Format (what TensorRT writes itself): a first line `TRT-<version>-EntropyCalibration2`, then one line per
tensor `<tensor name>: <scale>` with the scale (amax / 127) as the big-endian hex of its float32 bits.
The scales come from the quantizer: the Q/DQ scales of a model quantized with `--target tensorrt`, or
modelforge's own calibration of a float model (entropy, symmetric, as TensorRT's entropy calibrator).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

CALIBRATOR = "EntropyCalibration2"


def tensorrt_version_number(version: str) -> int:
    """NV_TENSORRT_VERSION as TensorRT stamps caches: 8.5.2 -> 8502; 10.3.0 -> 100300 (10.x uses 10000s)."""
    parts = [int(p) for p in (version.split(".") + ["0", "0"])[:3]]
    major, minor, patch = parts
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch


def scale_hex(scale: float) -> str:
    return struct.pack(">f", scale).hex()


def write_calibration_cache(path: Path, scales: dict[str, float], tensorrt_version: str) -> None:
    lines = [f"TRT-{tensorrt_version_number(tensorrt_version)}-{CALIBRATOR}"]
    lines += [f"{name}: {scale_hex(scale)}" for name, scale in sorted(scales.items())]
    from modelforge.safe_files import write_text

    write_text(path, "\n".join(lines) + "\n")


def read_calibration_cache(path: Path) -> tuple[str, dict[str, float]]:
    """(header, {tensor: scale}): the inverse of write_calibration_cache (also reads TensorRT's own caches)."""
    header, *rows = path.read_text().splitlines()
    scales = {}
    for row in rows:
        name, _, value = row.rpartition(": ")
        scales[name] = struct.unpack(">f", bytes.fromhex(value.strip()))[0]
    return header, scales


def qdq_scales(model: Any) -> dict[str, float]:
    """Per-tensor activation scales of a Q/DQ model, keyed by the float tensor each QuantizeLinear reads
    (weights, whose scales are per channel and constant-folded by TensorRT, are left out)."""
    from onnx import numpy_helper

    initializers = {t.name: t for t in model.graph.initializer}
    scales = {}
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in initializers:
            continue
        scale = initializers.get(node.input[1])
        if scale is None:
            continue
        values = numpy_helper.to_array(scale).reshape(-1)
        if values.size == 1:
            scales[node.input[0]] = float(values[0])
    return scales


def calibrated_scales(
    model_path: Path, data: Any, threads: int | None, batch_size: int = 8, advance: Any = lambda _: None
) -> dict[str, float]:
    """Scales for every float activation of a float model: entropy calibration, symmetric (amax / 127)."""
    import onnx

    from modelforge.model.onnx_model import load_onnx
    from modelforge.quantization.calibration import calibrate, tensors_to_calibrate

    model = onnx.shape_inference.infer_shapes(load_onnx(model_path))
    # Every float activation of every node: TensorRT's implicit INT8 may run any layer in INT8.
    tensors = tensors_to_calibrate(model, {node.op_type for node in model.graph.node})
    del model
    result = calibrate(
        model_path,
        tensors,
        data,
        method="entropy",
        symmetric=True,
        batch_size=batch_size,
        threads=threads,
        advance=advance,
        pass_name="export",
    )
    return {name: max(abs(low), abs(high), 1e-8) / 127.0 for name, (low, high) in result.ranges.items()}
