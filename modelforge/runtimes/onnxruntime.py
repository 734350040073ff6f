"""onnxruntime sessions configured the same way for every model we compare (threads, optimizations)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from modelforge.errors import PassError, first_line
from modelforge.model.artifact import IOSpec
from modelforge.runtimes.base import RuntimeInfo

if TYPE_CHECKING:
    import onnxruntime as ort


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# Idle intra-op worker threads spin (busy-wait) for work by default. Two sessions measured in one process, or
# a model measured beside any other busy process, then steal each other's cores: on a loaded 2-core machine
# the same FP32 model read 5.8 ms with spinning and 2.8 ms without, and speed-up ratios flipped. With it off,
# in-process interleaved figures agree with isolated per-process runs (benchmarks/bench_realworld.py).
SESSION_CONFIG = {"session.intra_op.allow_spinning": "0"}


OPTIMIZATION_LEVELS = ("all", "basic", "none")


def session_options(threads: int | None, *, optimization: str = "all", log_severity: int = 3) -> ort.SessionOptions:
    """The one place onnxruntime sessions are configured (evaluation, calibration, debugging, preflight).

    `optimization`: "all" to measure speed; "basic" where intermediate tensors must survive (calibration and
    per-layer debugging read them); "none" for a cheap load check. `log_severity` 4 keeps stderr quiet where
    the exception already says why.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[optimization]
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = log_severity
    for key, value in SESSION_CONFIG.items():
        options.add_session_config_entry(key, value)
    return options


def new_session(model: Path | bytes, options: ort.SessionOptions) -> ort.InferenceSession:
    """A CPU session; onnxruntime's own (untyped) errors propagate for the caller to word."""
    import onnxruntime as ort

    return ort.InferenceSession(
        model if isinstance(model, bytes) else str(model), options, providers=["CPUExecutionProvider"]
    )


def create_session(model: Path | bytes, threads: int | None = None, stage: str = "evaluate") -> ort.InferenceSession:
    """A CPU session with all graph optimizations, a fixed intra-op thread count, and no spinning threads."""
    try:
        return new_session(model, session_options(threads))
    except Exception as exc:  # onnxruntime raises its own untyped errors (Fail, InvalidGraph, NotImplemented...)
        raise PassError(stage, f"onnxruntime cannot load the model: {first_line(exc)}") from exc


class OnnxRuntimeBackend:
    """onnxruntime's CPU provider behind the `Backend` interface (`create_session` settings)."""

    def __init__(self, session: ort.InferenceSession, threads: int, precision: str = "fp32"):
        import onnxruntime as ort

        self.session = session
        self.input_names = tuple(i.name for i in session.get_inputs())
        self.output_names = tuple(o.name for o in session.get_outputs())
        self.info = RuntimeInfo("onnxruntime", ort.__version__, "CPU", precision, threads, dict(SESSION_CONFIG))

    @classmethod
    def open(
        cls, model: Path | bytes, *, precision: str = "fp32", threads: int | None = None, stage: str = "evaluate"
    ) -> OnnxRuntimeBackend:
        # The precision is the graph's own (float or QDQ INT8): onnxruntime's CPU provider has no precision hint.
        threads = threads or default_threads()
        return cls(create_session(model, threads, stage=stage), threads, precision)

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, dict(feeds))


def fixed_batch_size(io: IOSpec) -> int | None:
    """A model exported with a fixed batch dimension can only be fed batches of that size."""
    sizes = {t.shape[0] for t in io.inputs if t.shape and isinstance(t.shape[0], int)}
    return sizes.pop() if len(sizes) == 1 else None
