"""TensorRT engines behind the `Backend` interface (TensorRT 10's Python API; device memory as torch CUDA tensors).

Needs an NVIDIA GPU, `pip install 'modelforge[tensorrt]'` and a CUDA build of torch. Without them `open`
stops with one line saying what is missing (exit 2), before any work.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelforge.errors import InputError, PassError
from modelforge.optional import require
from modelforge.runtimes.base import RuntimeInfo


def require_tensorrt(purpose: str = "a TensorRT engine") -> tuple[Any, Any]:
    """(tensorrt, torch) when both import and a CUDA GPU is visible; a one-line InputError otherwise."""
    trt = require("tensorrt", purpose)
    torch = require("torch", purpose)
    if not torch.cuda.is_available():
        raise InputError(
            f"{purpose} needs an NVIDIA GPU with CUDA: none is visible to torch (torch.cuda.is_available() is False)",
            hint="run on a GPU machine with a CUDA build of torch, or export --target jetson to build on the device",
        )
    return trt, torch


def trt_logger(trt: Any) -> Any:
    return trt.Logger(trt.Logger.WARNING)


class TensorRtBackend:
    """A deserialized engine with one execution context; inputs and outputs live in torch CUDA tensors."""

    def __init__(self, engine: Any, trt: Any, torch: Any, precision: str):
        self.engine, self.trt, self.torch = engine, trt, torch
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        is_input = {n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = tuple(n for n in names if is_input[n])
        self.output_names = tuple(n for n in names if not is_input[n])
        self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        device = torch.cuda.get_device_name(0)
        self.info = RuntimeInfo("tensorrt", trt.__version__, f"GPU:0 ({device})", precision, None, {})
        self.stream = torch.cuda.Stream()

    @classmethod
    def open(
        cls, model: Path | bytes, *, precision: str = "fp32", threads: int | None = None, stage: str = "evaluate"
    ) -> TensorRtBackend:
        trt, torch = require_tensorrt("running a TensorRT engine")
        data = model if isinstance(model, bytes) else Path(model).read_bytes()
        runtime = trt.Runtime(trt_logger(trt))
        if hasattr(runtime, "engine_host_code_allowed"):  # TensorRT 8.6+: plugin libraries serialized into an
            runtime.engine_host_code_allowed = False  # engine are code; never loaded (TensorRT's default, made sure)
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise PassError(stage, "TensorRT cannot deserialize the engine (built for another GPU or TensorRT?)")
        backend = cls(engine, trt, torch, precision)
        backend.runtime = runtime  # the engine must not outlive its runtime
        return backend

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        torch = self.torch
        keep = []
        with torch.cuda.stream(self.stream):
            for name in self.input_names:
                array = np.ascontiguousarray(feeds[name], dtype=self.dtypes[name])
                tensor = torch.from_numpy(array).to("cuda", non_blocking=False)
                keep.append(tensor)
                self.context.set_input_shape(name, tuple(array.shape))
                self.context.set_tensor_address(name, tensor.data_ptr())
            outputs = []
            for name in self.output_names:
                shape = tuple(self.context.get_tensor_shape(name))
                out = torch.empty(shape, dtype=_torch_dtype(torch, self.dtypes[name]), device="cuda")
                outputs.append(out)
                self.context.set_tensor_address(name, out.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise PassError("evaluate", "TensorRT execution failed")
        self.stream.synchronize()
        return [o.cpu().numpy() for o in outputs]


def _torch_dtype(torch: Any, dtype: np.dtype) -> Any:
    return {
        np.dtype("float32"): torch.float32,
        np.dtype("float16"): torch.float16,
        np.dtype("int32"): torch.int32,
        np.dtype("int64"): torch.int64,
        np.dtype("int8"): torch.int8,
        np.dtype("uint8"): torch.uint8,
        np.dtype("bool"): torch.bool,
    }[dtype]
