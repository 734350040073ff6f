"""`modelforge bench`: the latency profile on its own, for ONNX models produced anywhere.

All models run interleaved at each batch size (see evaluate.latency), with the same session options, on
the same inputs when their inputs match: rows of a data file, or seeded random tensors.
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


def _load(path: Path):
    from modelforge.loader import load_model

    artifact = load_model(path)
    if artifact.format != "onnx":
        raise InputError(
            f"model {path}: bench measures ONNX models, got {artifact.format}",
            hint="convert it first (e.g. `modelforge run` with no passes writes the ONNX baseline)",
        )
    from modelforge.preflight import check_loads

    check_loads(artifact.path)  # an invalid file is bad input (exit 2), found before any model is measured
    return artifact


def _feeds_source(artifact, settings: BenchSettings):
    """A function batch_size -> feeds for one model (memoised: the same arrays on every call)."""
    cache: dict[int, dict[str, np.ndarray]] = {}
    bound = None
    if settings.data is not None:
        from modelforge.data import bind, open_dataset
        from modelforge.recipe import DataSource

        first = artifact.io.inputs[0].shape if artifact.io.inputs else None
        bound = bind(open_dataset(DataSource(path=settings.data), first), artifact.io, "bench data")

    def feeds(batch_size: int) -> dict[str, np.ndarray]:
        if batch_size not in cache:
            if bound is not None:
                from modelforge.evaluate.evaluator import latency_feeds

                cache[batch_size] = latency_feeds(bound, batch_size)
            else:
                from modelforge.evaluate.profile import random_feeds

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


def run_bench(models: Sequence[Path], settings: BenchSettings, progress: Progress | None = None) -> dict[str, Any]:
    from modelforge import __version__
    from modelforge.backends.onnxruntime import default_threads, fixed_batch_size
    from modelforge.evaluate.profile import (
        INTERLEAVE_METHOD,
        Subject,
        batch_sweep,
        memory_method,
        open_measured_backend,
        slo_verdicts,
        stop_rule,
    )
    from modelforge.machine import machine_record

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

    subjects, sessions = [], {}
    for name, artifact, feed, fixed_batch in zip(names, artifacts, feeds, fixed, strict=True):
        first_batch = fixed_batch or sizes[0]
        session, load = open_measured_backend(artifact.path, threads, feed(first_batch), stage="bench")
        sessions[name] = asdict(load)
        subjects.append(Subject(name, session, feed, fixed_batch))

    sweep = batch_sweep(
        subjects,
        sizes,
        warmup=settings.warmup,
        min_runs=settings.min_runs,
        max_seconds=settings.max_seconds,
        stable_within=settings.stable_within,
        min_seconds=settings.min_seconds,
        progress=progress,
    )
    slo = slo_verdicts(slo_limits, settings.slo_batch, sweep, names) if slo_limits else None
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
        "inputs": f"rows of {settings.data}" if settings.data else f"random tensors (seed {settings.seed})",
        "sessions": {"threads": threads, "memory_method": memory_method(), **sessions},
        "latency": {
            "threads": threads,
            "inter_op_threads": 1,
            "method": INTERLEAVE_METHOD,
            "stop_rule": stop_rule(
                settings.min_runs, settings.stable_within, settings.max_seconds, settings.min_seconds
            ),
            "warmup": settings.warmup,
            "batch_sizes": sizes,
            "sweep": sweep,
            "slo": slo,
        },
        "passed": slo is None or all(v["met"] for v in slo["models"].values()),
        "machine": machine_record(),
    }
