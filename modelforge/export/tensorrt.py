"""Build a TensorRT engine from ONNX (TensorRT 10's builder), then measure it against the ONNX original.

FP16, or INT8 either explicit (the Q/DQ a `--target tensorrt` quantization wrote) or implicit (an entropy
calibrator fed from the calibration data, or a calibration cache); optimization profiles from
export.shapes; a workspace limit; a timing cache reused across builds; sparse weights after 2:4 pruning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelforge.errors import PassError
from modelforge.export.shapes import Shape
from modelforge.runtimes.tensorrt import require_tensorrt, trt_logger


@dataclass(frozen=True)
class BuildSettings:
    precision: str  # fp32 | fp16 | int8
    profiles: dict[str, tuple[Shape, Shape, Shape]]
    workspace_mib: int
    implicit_int8: bool = False
    sparse_weights: bool = False
    dla_core: int | None = None


def _entropy_calibrator(trt: Any, torch: Any, batches: list[dict[str, np.ndarray]], cache: Path) -> Any:
    """TensorRT's IInt8EntropyCalibrator2 fed from calibration batches (device copies via torch)."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = iter(batches)
            self.batch_size = len(next(iter(batches[0].values())))
            self.current: list[Any] = []

        def get_batch_size(self) -> int:
            return self.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self.batches, None)
            if batch is None:
                return None
            self.current = [torch.from_numpy(np.ascontiguousarray(batch[n])).cuda() for n in names]
            return [int(t.data_ptr()) for t in self.current]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            from modelforge.safe_files import write_bytes

            write_bytes(cache, bytes(data))

    return EntropyCalibrator()


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    settings: BuildSettings,
    *,
    timing_cache: Path,
    calibration_batches: list[dict[str, np.ndarray]] | None = None,
    calibration_cache: Path | None = None,
) -> dict[str, Any]:
    """Parse, configure, build and serialize; returns build facts (seconds, size, TensorRT version)."""
    trt, torch = require_tensorrt("building a TensorRT engine")
    logger = trt_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise PassError("export", f"TensorRT's ONNX parser rejected the model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mib << 20)
    if settings.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if settings.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    if settings.sparse_weights:
        config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
    if settings.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = settings.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    profile = builder.create_optimization_profile()
    for name, (low, mid, high) in settings.profiles.items():
        profile.set_shape(name, low, mid, high)
    config.add_optimization_profile(profile)
    if settings.precision == "int8" and settings.implicit_int8:
        if not calibration_batches and not (calibration_cache and calibration_cache.is_file()):
            raise PassError("export", "implicit INT8 needs calibration data or a calibration cache")
        config.int8_calibrator = _entropy_calibrator(
            trt, torch, calibration_batches or [], calibration_cache or engine_path.with_suffix(".cache")
        )
        config.set_calibration_profile(profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - started
    if serialized is None:
        raise PassError("export", "TensorRT could not build an engine (see its log above)")
    from modelforge.safe_files import write_bytes

    write_bytes(engine_path, bytes(serialized))
    write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    return {
        "tensorrt_version": trt.__version__,
        "build_seconds": seconds,
        "engine_bytes": engine_path.stat().st_size,
        "precision": settings.precision,
        "implicit_int8": settings.implicit_int8,
        "gpu": torch.cuda.get_device_name(0),
    }


def compare_engine(onnx_path: Path, engine_path: Path, data: Any, precision: str, threads: int | None) -> dict:
    """The engine against the ONNX original on the same samples: top-1 agreement, accuracy, cosine, p50."""
    from modelforge.measure.latency import interleaved_runs
    from modelforge.measure.metrics import ComparisonAccumulator
    from modelforge.runtimes.base import open_backend

    reference = open_backend(onnx_path, threads=threads, stage="export")
    engine = open_backend(engine_path, runtime="tensorrt", precision=precision, stage="export")
    # The evaluator's own comparison (agreement, cosine, accuracy, SQNR), so engine figures read like any other.
    accumulator = ComparisonAccumulator()
    labels = data.labels()
    seen = 0
    for feeds in data.batches(32):
        out_a = reference.run(feeds)
        out_b = [np.asarray(o, dtype=np.float32) for o in engine.run(feeds)]
        n = len(out_a[0])
        accumulator.update(out_a, out_b, labels[seen : seen + n] if labels is not None else None)
        seen += n
    metrics = accumulator.summary(has_labels=labels is not None)
    feeds = next(data.batches(1))
    timings = interleaved_runs(
        [lambda: reference.run(feeds), lambda: engine.run(feeds)], warmup=10, min_runs=50, max_seconds=10
    )
    onnx_stats, engine_stats = timings.stats(1)
    return {
        "samples": metrics["samples"],
        "top1_agreement": metrics["top1_agreement"],
        "output_cosine": metrics["output_cosine"],
        "sqnr_db": metrics["sqnr_db"],
        "accuracy_onnx": metrics["accuracy_baseline"],
        "accuracy_engine": metrics["accuracy_result"],
        "latency_p50_ms_onnx": onnx_stats.p50_ms,
        "latency_p50_ms_engine": engine_stats.p50_ms,
        "onnx_runtime": reference.info.to_dict(),
        "engine_runtime": engine.info.to_dict(),
    }
