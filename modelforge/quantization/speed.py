"""Speed-aware quantization: keep in float what INT8 makes slower on this machine, never ship a slower model.

INT8 is not faster everywhere: on onnxruntime's CPU kernels a depthwise convolution, a hard-swish or a
squeeze-excitation multiply can run slower quantized than in float (Q/DQ around cheap ops costs more than it
saves), and on some models every INT8 configuration loses to FP32. Latency is what users quantize for, so
it is measured here, on this machine, at the batch size and threads the run reports:

1. The quantized nodes are grouped by the kind of work they do (op type; convolutions split into
   depthwise, 1x1 and spatial, whose INT8 kernels differ most).
2. First, all groups but convolutions and dense layers go back to float at once (float islands among INT8
   ops pay a Q/DQ at each border, so one group at a time can miss this); then a greedy search: each group in
   turn is put back in float; the change is kept when that model is faster than the current one by more
   than the noise margin (both measured interleaved in one process, thread
   pools not spinning: `backends.onnxruntime.SESSION_CONFIG`).
3. The best model is measured against the float model the pass was given; unless it is clearly faster, the
   float model ships unchanged (onnxruntime applies its graph optimizations at load), and the report says
   so plainly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelforge.evaluate.latency import BLOCK, DROPPED_PER_BLOCK, interleaved_runs

# A group goes back to float when that makes the model at least this much faster (shared machines are noisy).
KEEP_FLOAT_MARGIN = 1.03
# The quantized model ships when it is faster than float by more than the noise of a shared machine;
# otherwise the float model does (what a user sees is then ~1.0x, never a slower model).
MIN_WORTHWHILE_SPEEDUP = 1.10
COMPARE_SECONDS = 1.5  # time budget per side-by-side comparison of the search
FINAL_SECONDS = 3.0  # the ship-or-not comparison with float
COMPUTE_GROUPS = ("Conv", "MatMul", "Gemm", "LSTM")  # group names starting so carry the MACs


@dataclass
class SpeedChoice:
    """What the search kept in float, the measured speed-ups, and the model to ship."""

    model_path: Path
    float_groups: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    speedup_vs_float: float | None = None
    shipped: str = "quantized"  # quantized | float
    reason: str = ""

    def record(self) -> dict[str, Any]:
        return {
            "shipped": self.shipped,
            "reason": self.reason,
            "speedup_vs_float": self.speedup_vs_float,
            "float_groups": self.float_groups,
            "steps": self.steps,
        }


def conv_kind(node, weight_dims: list[int] | None) -> str:
    """depthwise (one input channel per group), 1x1, or spatial: their INT8 kernels differ most."""
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    if weight_dims and len(weight_dims) >= 3:
        if group > 1 and weight_dims[1] == 1:
            return f"{node.op_type} depthwise"
        if all(d == 1 for d in weight_dims[2:]):
            return f"{node.op_type} 1x1"
        return f"{node.op_type} spatial"
    return node.op_type


def node_groups(quantized_nodes: list[tuple[str, str]], float_model) -> dict[str, list[str]]:
    """Quantized node names grouped by kind of work, largest group first."""
    dims = {t.name: list(t.dims) for t in float_model.graph.initializer}
    originals = {n.name: n for n in float_model.graph.node}
    groups: dict[str, list[str]] = {}
    for name, op_type in quantized_nodes:
        node = originals.get(name)
        key = op_type
        if node is not None and op_type in ("Conv", "ConvTranspose") and len(node.input) > 1:
            key = conv_kind(node, dims.get(node.input[1]))
        groups.setdefault(key, []).append(name)
    return dict(sorted(groups.items(), key=lambda item: -len(item[1])))


class LatencyJudge:
    """Side-by-side p50 ratios of model files on one batch of real inputs; backends kept per file.

    Every file runs on `runtime` with `precision` (the target the pass quantizes for: onnxruntime by default,
    OpenVINO for `target: openvino`), so variants are judged where they will be served."""

    def __init__(
        self,
        feeds: dict[str, np.ndarray],
        threads: int | None,
        stage: str,
        *,
        runtime: str = "onnxruntime",
        precision: str = "fp32",
    ):
        self.feeds = feeds
        self.threads = threads
        self.stage = stage
        self.runtime = runtime
        self.precision = precision
        self._sessions: dict[Path, Any] = {}

    def _runner(self, path: Path) -> Callable[[], object]:
        from modelforge.backends.base import open_backend

        if path not in self._sessions:
            self._sessions[path] = open_backend(
                path, runtime=self.runtime, precision=self.precision, threads=self.threads, stage=self.stage
            )
        backend = self._sessions[path]
        feeds = {k: v for k, v in self.feeds.items() if k in set(backend.input_names)}
        return lambda: backend.run(feeds)

    def ratio(self, slower_candidate: Path, faster_candidate: Path, seconds: float = COMPARE_SECONDS) -> float:
        """How many times faster the second model is (paired-block ratio, see `paired_block_ratio`)."""
        runs = (self._runner(slower_candidate), self._runner(faster_candidate))
        timings = interleaved_runs(
            runs, warmup=3, min_runs=24, max_seconds=seconds, tolerance=0.02, min_seconds=seconds / 3
        )
        return paired_block_ratio(*timings.seconds)

    def forget(self, path: Path) -> None:
        self._sessions.pop(path, None)


def paired_block_ratio(first: tuple[float, ...], second: tuple[float, ...]) -> float:
    """Median over blocks of median(first's block) / median(second's block run just after it).

    Blocks run back to back, so each pair saw the same machine load; a neighbour process that takes the
    cores for a while slows both sides of the pairs it hits, and the median of pair ratios ignores it where
    a ratio of overall medians would not."""
    per_block = BLOCK - DROPPED_PER_BLOCK
    blocks = min(len(first), len(second)) // per_block
    if blocks == 0:
        return float(np.median(first)) / float(np.median(second))
    ratios = [
        np.median(first[i * per_block : (i + 1) * per_block]) / np.median(second[i * per_block : (i + 1) * per_block])
        for i in range(blocks)
    ]
    return float(np.median(ratios))


def choose_fastest(
    float_path: Path,
    quantized_path: Path,
    groups: dict[str, list[str]],
    build: Callable[[frozenset[str], Path], Path],
    judge: LatencyJudge,
    workdir: Path,
    *,
    log: Callable[[str], None] = lambda _: None,
    advance: Callable[[int], None] = lambda _: None,
    time_budget: float = 60.0,
) -> SpeedChoice:
    """Greedy search over `groups` (see the module docstring); `build(float_nodes, path)` writes a variant."""
    started = time.perf_counter()
    steps: list[dict[str, Any]] = []
    kept_float: list[str] = []
    current = quantized_path
    # INT8 only where the compute is: an island of float among INT8 ops pays a Q/DQ at each border, so
    # single-group toggles miss "all the cheap ops in float at once" (MobileNetV3: hard-swish, SE multiplies).
    light = [g for g in groups if not g.startswith(COMPUTE_GROUPS)]

    def try_in_float(new_groups: list[str], label: str, path: Path) -> None:
        """Measure the current model with `new_groups` also in float; keep that when clearly faster."""
        nonlocal current
        candidate = build(frozenset(n for g in (*kept_float, *new_groups) for n in groups[g]), path)
        gain = judge.ratio(current, candidate)
        advance(1)
        kept = gain >= KEEP_FLOAT_MARGIN
        nodes = sum(len(groups[g]) for g in new_groups)
        steps.append({"group": label, "nodes": nodes, "speedup_in_float": round(gain, 3), "kept_float": kept})
        if kept:
            kept_float.extend(new_groups)
            judge.forget(current)
            current = candidate
            log(f"quantize: {label} ({nodes} nodes) in float is faster on this machine ({gain:.2f}x)")
        else:
            judge.forget(candidate)

    if light and len(light) < len(groups):
        try_in_float(light, "all but convolutions and dense layers", workdir / "speed-compute-only.onnx")
    if len(groups) > 1:  # with a single group, the comparison with float below decides
        for index, group in enumerate(groups):
            if group in kept_float:
                continue
            if time.perf_counter() - started > time_budget:
                steps.append({"group": group, "skipped": "time budget"})
                continue
            try_in_float([group], group, workdir / f"speed-{index:02d}.onnx")
    speedup = judge.ratio(float_path, current, seconds=FINAL_SECONDS)
    choice = SpeedChoice(current, kept_float, steps, round(speedup, 3))
    if speedup < MIN_WORTHWHILE_SPEEDUP:
        choice.model_path = float_path
        choice.shipped = "float"
        choice.reason = (
            f"no INT8 configuration tried was clearly faster than float on this machine (best: {speedup:.2f}x at "
            f"this batch size and thread count, needed {MIN_WORTHWHILE_SPEEDUP:.2f}x): the float model ships"
        )
    else:
        what = f" with {', '.join(kept_float)} kept in float" if kept_float else ""
        choice.reason = f"INT8{what}: {speedup:.2f}x the float graph's speed on this machine"
    log(f"quantize: {choice.reason}")
    return choice
