"""OpenVINO's CPU plugin behind the `Backend` interface (the `openvino` package, `[openvino]` extra).

Reads ONNX or IR (model.xml + model.bin). The precision is an execution hint: `fp32` runs float as float
(OpenVINO would otherwise pick bf16 by itself on CPUs with AVX-512 BF16 or AMX), `bf16` asks for bf16 compute,
`int8` runs a QDQ model's quantized ops as INT8 (OpenVINO's low-precision transformations) and the rest in f32.
Latency hint, one stream, a fixed thread count: the same single-request set-up as onnxruntime's sessions.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from modelforge.errors import PassError, first_line
from modelforge.optional import installed, require
from modelforge.runtimes.base import RuntimeInfo

# precision -> OpenVINO inference precision hint
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def require_openvino(purpose: str = "the OpenVINO runtime") -> Any:
    """The `openvino` module, or a one-line error naming the pip command."""
    return require("openvino", purpose)


def openvino_installed() -> bool:
    return installed("openvino")


@cache
def _core() -> Any:
    return require_openvino().Core()


def compile_config(precision: str, threads: int) -> dict[str, Any]:
    """The CPU plugin settings every OpenVINO model we compare is compiled with."""
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    if precision not in PRECISION_HINTS:
        raise PassError("openvino", f"precision '{precision}': expected one of {', '.join(PRECISION_HINTS)}")
    return {
        hints.inference_precision: getattr(ov.Type, PRECISION_HINTS[precision]),
        hints.performance_mode: hints.PerformanceMode.LATENCY,
        props.num_streams: 1,
        props.inference_num_threads: threads,
    }


class OpenVinoBackend:
    """A compiled OpenVINO model with one infer request; outputs come back in the model's output order."""

    def __init__(self, compiled: Any, precision: str, threads: int):
        import openvino as ov

        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.input_names = tuple(i.get_any_name() for i in compiled.inputs)
        self.output_names = tuple(o.get_any_name() for o in compiled.outputs)
        self._outputs = list(compiled.outputs)
        config = {
            "inference_precision_hint": PRECISION_HINTS[precision],
            "performance_hint": "LATENCY",
            "num_streams": "1",
        }
        self.info = RuntimeInfo("openvino", ov.get_version().split("-")[0], "CPU", precision, threads, config)

    @classmethod
    def open(
        cls, model: Path | bytes, *, precision: str = "fp32", threads: int | None = None, stage: str = "evaluate"
    ) -> OpenVinoBackend:
        from modelforge.runtimes.onnxruntime import default_threads

        require_openvino()
        threads = threads or default_threads()
        config = compile_config(precision, threads)
        core = _core()
        try:
            read = core.read_model(model if isinstance(model, bytes) else str(model))
            compiled = core.compile_model(read, "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError / its own types with multi-line messages
            raise PassError(stage, f"OpenVINO cannot load the model: {first_line(exc, 300)}") from exc
        return cls(compiled, precision, threads)

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        result = self.request.infer(dict(feeds))
        return [np.asarray(result[output]) for output in self._outputs]


def write_ir(onnx_path: Path, xml_path: Path, *, compress_to_fp16: bool, stage: str = "output") -> list[Path]:
    """OpenVINO IR (model.xml + model.bin) converted from an ONNX file with `convert_model` + `save_model`."""
    ov = require_openvino("writing OpenVINO IR")
    try:
        converted = ov.convert_model(str(onnx_path))
        ov.save_model(converted, str(xml_path), compress_to_fp16=compress_to_fp16)
    except Exception as exc:
        raise PassError(stage, f"OpenVINO cannot convert {onnx_path.name}: {first_line(exc, 300)}") from exc
    return [xml_path, xml_path.with_suffix(".bin")]
