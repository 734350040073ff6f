"""`modelforge bench`: the latency profile on its own, for ONNX models produced anywhere, on any set of
runtimes x precisions (`--runtime onnxruntime,openvino --precision fp32,bf16,int8`).

All subjects (model x runtime x precision) run interleaved at each batch size (see evaluate.latency), through
the `Backend` interface, on the same inputs when their inputs match: rows of a data file, or seeded random
tensors. A combination that cannot run is listed under `skipped` with why (bf16 on a CPU without native bf16 or
on onnxruntime; int8 of a float model, which must be quantized first; a runtime that is not installed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelforge.errors import InputError
from modelforge.progress import Progress

BENCH_SCHEMA_VERSION = 1
DEFAULT_BATCH_SIZES = (1, 8, 32, 64)


@dataclass
class BenchSettings:
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES
    threads: int | None = None
    warmup: int = 10
    min_runs: int = 50
    min_seconds: float = 1.0  # per batch size, all models together
    max_seconds: float = 10.0  # per batch size
    stable_within: float = 0.02
    data: Path | None = None
    dims: dict[str, int] = field(default_factory=dict)
    seed: int = 0
    slo_p99_ms: float | None = None
    slo_p50_ms: float | None = None
    slo_batch: int = 1
    runtimes: Sequence[str] = ("onnxruntime",)
    precisions: Sequence[str] | None = None  # None: each model in its own precision (int8 if quantized, else fp32)


def _load(path: Path):
    from modelforge.model.loader import detect_format, load_model

    fmt = detect_format(path)  # before loading: a model that is a program is never loaded here
    if fmt != "onnx":
        raise InputError(
            f"model {path}: bench measures ONNX models, got {fmt}",
            hint="convert it first (e.g. `modelforge run` with no passes writes the ONNX baseline)",
        )
    artifact = load_model(path, "onnx")
    from modelforge.runtimes.preflight import check_loads

    check_loads(artifact.path)  # an invalid file is bad input (exit 2), found before any model is measured
    return artifact


def _feeds_source(artifact, settings: BenchSettings):
    """A function batch_size -> feeds for one model (memoised: the same arrays on every call)."""
    cache: dict[int, dict[str, np.ndarray]] = {}
    bound = None
    if settings.data is not None:
        from modelforge.data import bind, open_dataset
        from modelforge.recipe.schema import DataSource

        first = artifact.io.inputs[0].shape if artifact.io.inputs else None
        bound = bind(open_dataset(DataSource(path=settings.data), first), artifact.io, "bench data")

    def feeds(batch_size: int) -> dict[str, np.ndarray]:
        if batch_size not in cache:
            if bound is not None:
                from modelforge.evaluate.evaluator import latency_feeds

                cache[batch_size] = latency_feeds(bound, batch_size)
            else:
                from modelforge.measure.profile import random_feeds

                cache[batch_size] = random_feeds(artifact.io, batch_size, settings.dims, settings.seed)
        return cache[batch_size]

    return feeds


def model_labels(paths: Sequence[Path]) -> list[str]:
    """Short unique names: the file name, with as many parent folders as it takes to tell them apart."""
    parts = [p.resolve().parts for p in paths]
    for depth in range(1, max(len(x) for x in parts) + 1):
        labels = ["/".join(x[-depth:]) for x in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(p) for p in paths]


def model_precision(artifact) -> str:
    """The precision a model file computes in by itself: int8 when it holds quantized ops, else fp32."""
    from modelforge.model.onnx_model import is_quantized, load_onnx

    return "int8" if is_quantized(load_onnx(artifact.path, load_external_data=False)) else "fp32"


def plan_subjects(
    names: Sequence[str], artifacts: Sequence[Any], settings: BenchSettings
) -> tuple[list[tuple[str, int, str, str]], list[dict[str, str]]]:
    """(label, model index, runtime, precision) to measure, and the combinations skipped with why."""
    from modelforge.runtimes.serving import RUNTIME_PRECISIONS, offer, runtime_installed

    for runtime in settings.runtimes:
        if runtime not in RUNTIME_PRECISIONS:
            raise InputError(f"--runtime {runtime}: expected one of {', '.join(RUNTIME_PRECISIONS)}")
    for precision in settings.precisions or ():
        if precision not in ("fp32", "bf16", "int8"):
            raise InputError(f"--precision {precision}: expected fp32, bf16 or int8")
    for runtime in settings.runtimes:
        if not runtime_installed(runtime):
            from modelforge.optional import missing

            raise missing(runtime, f"--runtime {runtime}")
    combos = len(settings.runtimes) > 1 or settings.precisions is not None
    subjects, skipped = [], []
    for index, (name, artifact) in enumerate(zip(names, artifacts, strict=True)):
        own = model_precision(artifact)
        for runtime in settings.runtimes:
            for precision in settings.precisions or (own,):
                why = None
                if own == "int8" and precision != "int8":
                    why = "an INT8 (quantized) model runs as int8"
                elif own != "int8" and precision == "int8":
                    why = "a float model: quantize it first (modelforge quantize), then bench the result"
                else:
                    usable, reason = offer(runtime, precision)
                    why = None if usable else reason
                if why is not None:
                    skipped.append({"model": name, "runtime": runtime, "precision": precision, "why": why})
                    continue
                label = f"{name} [{runtime} {precision}]" if combos else name
                subjects.append((label, index, runtime, precision))
    if not subjects:
        raise InputError(
            "no model x runtime x precision combination can run here",
            hint="; ".join(f"{s['model']} {s['runtime']} {s['precision']}: {s['why']}" for s in skipped[:3]),
        )
    return subjects, skipped


def run_bench(models: Sequence[Path], settings: BenchSettings, progress: Progress | None = None) -> dict[str, Any]:
    from modelforge import __version__
    from modelforge.machine import machine_record
    from modelforge.measure.profile import (
        INTERLEAVE_METHOD,
        Subject,
        batch_sweep,
        memory_method,
        open_measured_backend,
        runs_for_limits,
        slo_verdicts,
        stop_rule,
    )
    from modelforge.runtimes.onnxruntime import default_threads, fixed_batch_size

    progress = progress or Progress()
    if not models:
        raise InputError("no model given", hint="modelforge bench MODEL [MODEL...]")
    if len({p.resolve() for p in models}) != len(models):
        raise InputError("the same model is named twice", hint="list each model once")
    names = model_labels(models)
    threads = settings.threads or default_threads()
    artifacts = [_load(p) for p in models]  # all validated before anything is measured
    feeds = [_feeds_source(a, settings) for a in artifacts]
    fixed = [fixed_batch_size(a.io) for a in artifacts]
    sizes = sorted({*settings.batch_sizes, *(b for b in fixed if b is not None)})
    slo_limits = {
        stat: limit for stat, limit in (("p99_ms", settings.slo_p99_ms), ("p50_ms", settings.slo_p50_ms)) if limit
    }
    if slo_limits:
        sizes = sorted({*sizes, settings.slo_batch})

    planned, skipped = plan_subjects(names, artifacts, settings)
    subjects, sessions, runtimes = [], {}, {}
    for label, index, runtime, precision in planned:
        feed, fixed_batch = feeds[index], fixed[index]
        first_batch = fixed_batch or sizes[0]
        backend, load = open_measured_backend(
            artifacts[index].path, threads, feed(first_batch), stage="bench", runtime=runtime, precision=precision
        )
        sessions[label] = asdict(load)
        runtimes[label] = {"model": names[index], **backend.info.to_dict()}
        subjects.append(Subject(label, backend, feed, fixed_batch))
    labels = [label for label, *_ in planned]

    runs = runs_for_limits(settings.min_runs, slo_limits)
    sweep = batch_sweep(
        subjects,
        sizes,
        warmup=settings.warmup,
        min_runs=runs,
        max_seconds=settings.max_seconds,
        stable_within=settings.stable_within,
        min_seconds=settings.min_seconds,
        progress=progress,
    )
    slo = slo_verdicts(slo_limits, settings.slo_batch, sweep, labels) if slo_limits else None
    return {
        "schema_version": BENCH_SCHEMA_VERSION,
        "kind": "bench",
        "tool": {"name": "modelforge", "version": __version__},
        "models": [
            {
                "name": name,
                "path": str(a.path),
                "size_bytes": a.size_bytes(),
                "fixed_batch": fb,
                "inputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in a.io.inputs],
            }
            for name, a, fb in zip(names, artifacts, fixed, strict=True)
        ],
        "runtimes": runtimes,
        "skipped": skipped,
        "inputs": f"rows of {settings.data}" if settings.data else f"random tensors (seed {settings.seed})",
        "sessions": {"threads": threads, "memory_method": memory_method(), **sessions},
        "latency": {
            "threads": threads,
            "inter_op_threads": 1,
            "method": INTERLEAVE_METHOD,
            "stop_rule": stop_rule(runs, settings.stable_within, settings.max_seconds, settings.min_seconds),
            "warmup": settings.warmup,
            "batch_sizes": sizes,
            "sweep": sweep,
            "slo": slo,
        },
        "passed": slo is None or all(v["met"] for v in slo["models"].values()),
        "machine": machine_record(("openvino",) if "openvino" in settings.runtimes else ()),
    }
