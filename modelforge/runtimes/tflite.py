"""LiteRT (`ai_edge_litert.interpreter`) behind the `Backend` interface: .tflite models on the CPU.

Evaluation feeds the float samples every model gets: inputs of a full-integer model (int8/uint8 IO) are
quantized with the input's own scale and zero point, and quantized outputs are dequantized, so its outputs
compare directly with the float baseline. The interpreter's batch dimension is resized to each batch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelforge.errors import PassError, first_line
from modelforge.model.tensorflow.runtime import quiet_native
from modelforge.optional import require
from modelforge.runtimes.base import RuntimeInfo


def tensor_name(name: str) -> str:
    """'serving_default_input:0' -> 'input': the signature name, as the ONNX form and the data files use it."""
    return re.sub(r"^serving_default_", "", name.split(":")[0])


def model_precision(details: list[dict[str, Any]]) -> str:
    """What the flatbuffer computes in: int8 when it holds int8 weights/activations, fp16 weights, else fp32."""
    dtypes = {np.dtype(d["dtype"]).name for d in details}
    if "int8" in dtypes or "uint8" in dtypes:
        return "int8"
    return "fp16" if "float16" in dtypes else "fp32"


class TfliteBackend:
    """A LiteRT interpreter (default op resolver: XNNPACK for float and int8 kernels), `threads` threads."""

    def __init__(self, interpreter: Any, threads: int, precision: str, version: str):
        self.interpreter = interpreter
        self.inputs = interpreter.get_input_details()
        self.outputs = interpreter.get_output_details()
        self.input_names = tuple(tensor_name(d["name"]) for d in self.inputs)
        self.output_names = tuple(tensor_name(d["name"]) for d in self.outputs)
        config = {"op_resolver": "BUILTIN (XNNPACK delegate applied by default)"}
        self.info = RuntimeInfo("tflite", version, "CPU", precision, threads, config)

    @classmethod
    def open(
        cls, model: Path | bytes, *, precision: str | None = None, threads: int | None = None, stage: str = "evaluate"
    ) -> TfliteBackend:
        with quiet_native():
            litert = require("ai_edge_litert.interpreter", "running a .tflite model")
        from importlib.metadata import version

        threads = threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
        try:
            with quiet_native():  # LiteRT logs the XNNPACK delegate from C++ when it allocates
                if isinstance(model, bytes):
                    interpreter = litert.Interpreter(model_content=model, num_threads=threads)
                else:
                    interpreter = litert.Interpreter(model_path=str(model), num_threads=threads)
                interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise PassError(stage, f"LiteRT cannot load the model: {first_line(exc)}") from exc
        measured = model_precision(interpreter.get_tensor_details())
        return cls(
            interpreter, threads, measured if precision in (None, "fp32") else precision, version("ai-edge-litert")
        )

    def _input_for(self, index: int, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        name = self.input_names[index]
        if name in feeds:
            return feeds[name]
        if len(self.inputs) == 1 and len(feeds) == 1:
            return next(iter(feeds.values()))
        raise PassError("evaluate", f"no feed for the .tflite input '{name}' (got {', '.join(feeds)})")

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        for index, detail in enumerate(self.inputs):
            value = np.asarray(self._input_for(index, feeds))
            if tuple(detail["shape"]) != value.shape:
                self.interpreter.resize_tensor_input(detail["index"], list(value.shape), strict=False)
                with quiet_native():
                    self.interpreter.allocate_tensors()
                self.inputs = self.interpreter.get_input_details()
                self.outputs = self.interpreter.get_output_details()
            self.interpreter.set_tensor(detail["index"], quantize(value, self.inputs[index]))
        self.interpreter.invoke()
        return [dequantize(self.interpreter.get_tensor(d["index"]), d) for d in self.outputs]


def quantize(value: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Float samples into an integer input's domain (round, add the zero point, saturate)."""
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if dtype.kind in "iu" and value.dtype.kind == "f" and scale:
        info = np.iinfo(dtype)
        return np.clip(np.round(value / scale) + zero_point, info.min, info.max).astype(dtype)
    return value.astype(dtype, copy=False)


def dequantize(value: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if np.dtype(detail["dtype"]).kind in "iu" and scale:
        return ((value.astype(np.float32) - zero_point) * scale).astype(np.float32)
    return value.astype(np.float32, copy=False) if value.dtype == np.float16 else value.copy()
