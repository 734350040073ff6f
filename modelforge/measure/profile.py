"""Latency profile of one or more models on this machine, each on its runtime (any `Backend`): cold start and
memory, a batch-size sweep of interleaved runs (p50/p90/p99/mean/std, throughput), and latency-SLO verdicts.

Used by the pipeline (baseline vs result), by `modelforge bench` (models x runtimes x precisions) and by
`--target auto` (every candidate side by side).

Cold start: `create_ms` (backend construction: load, graph optimizations or compilation, kernel setup) and
`first_run_ms` (the first inference, which also sizes the memory arena), timed in this process after a
"primer" model has paid the runtime's one-time start-up (environment, thread pools), which would otherwise
be billed to whichever model happens to be opened first.

Memory: each model is also opened in a fresh Python process, with the same session options, primed the same
way, and run once on inputs of the same shapes. `peak_rss_growth_bytes` is how far that process's peak
resident set (Linux VmHWM, reset through /proc/self/clear_refs just before) rose above its resident set just
before the session was created: weights, optimized graph, arena of the first run. `process_peak_rss_bytes` is
that process's whole peak (Python + onnxruntime + this model): what a minimal serving process needs. A fresh
process is used because in a long-running one, memory freed earlier (by calibration, by the other model) is
reused and the growth reads near zero. Where no child process can run, the figure is measured in this
process instead (a lower bound) and `memory_measured_in` says so; where VmHWM cannot be reset (not Linux),
the growth of `ru_maxrss` is used.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelforge.measure.latency import BLOCK, DROPPED_PER_BLOCK, UPPER_BOUND_CONFIDENCE, interleaved_runs
from modelforge.progress import Progress

if TYPE_CHECKING:
    from modelforge.runtimes.base import Backend

MEMORY_METHOD = (
    "in a fresh process per model: growth of its peak RSS (VmHWM, reset before) over its RSS before the session "
    "was created, through creation and one run; and that process's whole peak RSS"
)
MEMORY_METHOD_FALLBACK = (
    "in a fresh process per model: growth of its peak RSS (ru_maxrss) through session creation and one run"
)
INTERLEAVE_METHOD = (
    f"interleaved blocks of {BLOCK} runs (first {DROPPED_PER_BLOCK} of each block dropped), same input, "
    "same session options, intra-op thread-pool spinning off (spinning threads of one session steal the cores of "
    "the other and of any process beside it, which skews the ratio)"
)


def stop_rule(min_runs: int, stable_within: float, max_seconds: float, min_seconds: float = 0.0) -> str:
    return (
        f"at least {min_runs} runs and {min(min_seconds, max_seconds):g} s, then until the p50 of the last half "
        "of the runs is within "
        f"{stable_within:.0%} of the p50 of all runs, or {max_seconds:g} s per batch size"
    )


def _proc_status() -> dict[str, int]:
    """VmRSS / VmHWM of this process in bytes (empty where /proc is missing)."""
    values: dict[str, int] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return values


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _max_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


@dataclass(frozen=True)
class SessionLoad:
    """What opening a model costs: cold-start time and memory (see the module docstring)."""

    create_ms: float
    first_run_ms: float
    peak_rss_growth_bytes: int | None
    process_peak_rss_bytes: int | None  # fresh process only
    memory_measured_in: str  # "fresh process" | "this process"


_primed: set[str] = set()


def primer_model() -> bytes:
    """A one-node ONNX model (Relu on [1, 4]) every runtime can load."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "primer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = min(model.ir_version, 8)
    return model.SerializeToString()


ONNX_READERS = ("onnxruntime", "openvino")  # runtimes the ONNX primer model can warm up


def prime_runtime(runtime: str, threads: int) -> None:
    """Pay a runtime's one-time process start-up with a one-node model, outside any measurement."""
    if runtime in _primed or runtime not in ONNX_READERS:
        return
    from modelforge.runtimes.base import open_backend

    backend = open_backend(primer_model(), runtime=runtime, threads=threads, stage="primer")
    backend.run({"x": np.zeros((1, 4), dtype=np.float32)})
    _primed.add(runtime)


def memory_method() -> str:
    return MEMORY_METHOD if _reset_peak_rss() else MEMORY_METHOD_FALLBACK


def _peak_growth(can_reset: bool, before: dict[str, int], before_max: int, after: dict[str, int]) -> int:
    if can_reset and "VmHWM" in after and "VmRSS" in before:
        return max(0, after["VmHWM"] - before["VmRSS"])
    return max(0, _max_rss_bytes() - before_max)


def measure_in_child(spec: dict[str, Any]) -> dict[str, int | None]:
    """Runs in the fresh process: prime, open the model, run once, report memory."""
    from modelforge.runtimes.base import open_backend

    runtime = spec.get("runtime", "onnxruntime")
    prime_runtime(runtime, spec["threads"])
    feeds = {name: np.zeros(shape, dtype=dtype) for name, (shape, dtype) in spec["feeds"].items()}
    can_reset = _reset_peak_rss()
    before, before_max = _proc_status(), _max_rss_bytes()
    backend = open_backend(
        Path(spec["model"]),
        runtime=runtime,
        precision=spec.get("precision", "fp32"),
        threads=spec["threads"],
        stage=spec["stage"],
    )
    backend.run(feeds)
    after = _proc_status()
    return {
        "peak_rss_growth_bytes": _peak_growth(can_reset, before, before_max, after),
        "process_peak_rss_bytes": after.get("VmHWM") or _max_rss_bytes(),
    }


CHILD_CODE = (
    "import json, sys\n"
    "from modelforge.measure.profile import measure_in_child\n"
    "print(json.dumps(measure_in_child(json.loads(sys.argv[1]))))\n"
)


def fresh_process_memory(
    model: Path,
    threads: int,
    feeds: dict[str, np.ndarray],
    stage: str,
    timeout: float = 300,
    runtime: str = "onnxruntime",
    precision: str = "fp32",
) -> dict[str, int | None] | None:
    """Memory of one session in a fresh Python process; None when the child could not run."""
    import json
    import subprocess

    spec = {
        "model": str(Path(model).resolve()),
        "threads": threads,
        "stage": stage,
        "runtime": runtime,
        "precision": precision,
        "feeds": {name: [list(a.shape), a.dtype.str] for name, a in feeds.items()},
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD_CODE, json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            return None
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def open_measured_backend(
    model: Path,
    threads: int,
    feeds: dict[str, np.ndarray],
    stage: str = "evaluate",
    fresh_process: bool = True,
    *,
    runtime: str | None = None,
    precision: str = "fp32",
) -> tuple[Backend, SessionLoad]:
    """Open `model` on its runtime and run it once, timing both; its memory is measured in a fresh process."""
    from modelforge.runtimes.base import open_backend, runtime_for

    runtime = runtime or runtime_for(Path(model))
    prime_runtime(runtime, threads)
    can_reset = _reset_peak_rss()
    before, before_max = _proc_status(), _max_rss_bytes()
    started = time.perf_counter()
    backend = open_backend(model, runtime=runtime, precision=precision, threads=threads, stage=stage)
    created = time.perf_counter()
    backend.run(feeds)
    first_run = time.perf_counter()
    after = _proc_status()
    child = (
        fresh_process_memory(model, threads, feeds, stage, runtime=runtime, precision=precision)
        if fresh_process
        else None
    )
    load = SessionLoad(
        create_ms=(created - started) * 1e3,
        first_run_ms=(first_run - created) * 1e3,
        peak_rss_growth_bytes=(child or {}).get("peak_rss_growth_bytes")
        if child
        else _peak_growth(can_reset, before, before_max, after),
        process_peak_rss_bytes=child.get("process_peak_rss_bytes") if child else None,
        memory_measured_in="fresh process" if child else "this process",
    )
    return backend, load


@dataclass
class Subject:
    """One model in a latency profile: a loaded backend, the batch it is fixed to (if any), and its inputs."""

    name: str
    backend: Backend
    feeds: Callable[[int], dict[str, np.ndarray]]
    fixed_batch: int | None = None


def sweep_batch_sizes(main: int, extra: Sequence[int], slo_batch: int | None, fixed: int | None) -> list[int]:
    if fixed is not None:
        return [fixed]
    sizes = {main, *extra}
    if slo_batch is not None:
        sizes.add(slo_batch)
    return sorted(sizes)


def batch_sweep(
    subjects: Sequence[Subject],
    batch_sizes: Sequence[int],
    *,
    warmup: int,
    min_runs: int,
    max_seconds: float,
    stable_within: float,
    progress: Progress,
    min_seconds: float = 0.0,
) -> list[dict[str, Any]]:
    """At each batch size, the models that accept it run interleaved; one entry per batch size with each
    model's statistics and kept samples (ms)."""
    entries = []
    for batch_size in batch_sizes:
        group = [s for s in subjects if s.fixed_batch in (None, batch_size)]
        if not group:
            continue
        runs = [partial(s.backend.run, s.feeds(batch_size)) for s in group]
        # Runs until stable or out of time: no total is known in advance (min_runs is a floor, not a total).
        progress.start(f"Measuring latency, batch {batch_size}, runs per model", None)
        try:
            timings = interleaved_runs(
                runs,
                warmup=warmup,
                min_runs=min_runs,
                max_seconds=max_seconds,
                tolerance=stable_within,
                min_seconds=min_seconds,
                advance=progress.advance,
            )
        finally:
            progress.stop()
        stats = timings.stats(batch_size)
        samples = timings.samples_ms()
        entries.append(
            {
                "batch_size": batch_size,
                "stopped": timings.stopped,
                "seconds": timings.elapsed_s,
                "stats": {s.name: asdict(st) for s, st in zip(group, stats, strict=True)},
                "samples_ms": {s.name: sm for s, sm in zip(group, samples, strict=True)},
            }
        )
    return entries


def sweep_entry(sweep: Sequence[dict[str, Any]], batch_size: int) -> dict[str, Any] | None:
    return next((e for e in sweep if e["batch_size"] == batch_size), None)


SLO_LIMITS = (("latency_p99_ms", "p99_ms"), ("latency_p50_ms", "p50_ms"))
# A p99 judged on a few hundred runs is the second or third slowest run: one scheduler hiccup decides it. With
# 1,000 runs per model the limit is judged on the tenth slowest, so a verdict against a p99 limit takes at least that.
P99_MIN_RUNS = 1000


def runs_for_limits(min_runs: int, limits: dict[str, float] | None) -> int:
    """The runs per model a measurement needs: `min_runs`, at least P99_MIN_RUNS when a p99 limit is judged."""
    return max(min_runs, P99_MIN_RUNS) if limits and "p99_ms" in limits else min_runs


def judged_value(stats: dict[str, Any], stat: str) -> float:
    """What an SLO limit on `stat` (p99_ms, p50_ms) is judged on: its 95% upper confidence bound where the
    statistics carry one (`measure.latency.quantile_upper_bound`), else the measured value."""
    bound = stats.get(stat.replace("_ms", "_upper_ms"))
    return stats[stat] if bound is None else bound


def slo_verdicts(
    limits: dict[str, float], batch_size: int, sweep: Sequence[dict[str, Any]], names: Sequence[str]
) -> dict[str, Any]:
    """`limits`: statistic (p99_ms, p50_ms) -> max ms. For each model: the values at the SLO's batch size, their
    95% upper bounds (`judged_ms`), whether every limit holds on those bounds, and the largest measured batch
    size at which they do."""
    models: dict[str, Any] = {}
    for name in names:
        entry = sweep_entry(sweep, batch_size)
        stats = entry["stats"].get(name) if entry else None
        values = {stat: stats[stat] for stat in limits} if stats else None
        judged = {stat: judged_value(stats, stat) for stat in limits} if stats else None
        meeting = [
            e["batch_size"]
            for e in sweep
            if name in e["stats"]
            and all(judged_value(e["stats"][name], stat) <= limit for stat, limit in limits.items())
        ]
        models[name] = {
            "values_ms": values,
            "judged_ms": judged,
            "met": None if judged is None else all(judged[stat] <= limit for stat, limit in limits.items()),
            "largest_batch_meeting": max(meeting) if meeting else None,
        }
    return {
        "batch_size": batch_size,
        "limits_ms": dict(limits),
        "judged_on": f"{UPPER_BOUND_CONFIDENCE:.0%} upper confidence bound of each statistic",
        "measured_batch_sizes": [e["batch_size"] for e in sweep],
        "models": models,
    }


def slo_values_text(verdict: dict[str, Any], fmt: Callable[[float], str]) -> str:
    """ "p99 0.412 ms (bound 0.431)" for each limited statistic of one model's SLO verdict; "" when unmeasured."""
    judged = verdict.get("judged_ms") or {}
    parts = []
    for stat, value in (verdict.get("values_ms") or {}).items():
        bound = judged.get(stat)
        shown = f"{stat.removesuffix('_ms')} {fmt(value)}"
        parts.append(shown + (f" (bound {fmt(bound)})" if bound is not None and bound != value else ""))
    return ", ".join(parts)


def slo_limits(slo: Any) -> dict[str, float]:
    """{p99_ms: ..., p50_ms: ...} from an SLOConfig (only the limits it sets)."""
    return {stat: getattr(slo, key) for key, stat in SLO_LIMITS if getattr(slo, key) is not None}


def random_feeds(io: Any, batch_size: int, dims: dict[str, int], seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for a model with no data given: the batch axis set to `batch_size`, other symbolic dims from
    `dims`; floats are standard normal, integers zeros (valid token ids / indices), booleans False."""
    from modelforge.errors import InputError

    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in io.inputs:
        shape = []
        for axis, dim in enumerate(spec.shape):
            if axis == 0 and not isinstance(dim, int):
                shape.append(batch_size)
            elif isinstance(dim, int):
                shape.append(dim)
            elif isinstance(dim, str) and dim in dims:
                shape.append(dims[dim])
            else:
                raise InputError(
                    f"input '{spec.name}' {spec.shape_text()}: axis {axis} has no fixed size",
                    hint=f"give it one with --dim {dim or 'NAME'}=SIZE, or pass --data",
                )
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[spec.name] = np.zeros(shape, dtype=dtype)
    return feeds
