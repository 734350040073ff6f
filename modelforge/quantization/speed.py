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

# A group goes back to float when that makes the model at least this much faster (shared machines are noisy).
KEEP_FLOAT_MARGIN = 1.03
# The quantized model ships when it is faster than float by more than the noise of a shared machine;
# otherwise the float model does (what a user sees is then ~1.0x, never a slower model).
MIN_WORTHWHILE_SPEEDUP = 1.05
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
    """Side-by-side p50 ratios of model files on one batch of real inputs; sessions kept per file."""

    def __init__(self, feeds: dict[str, np.ndarray], threads: int | None, stage: str):
        self.feeds = feeds
        self.threads = threads
        self.stage = stage
        self._sessions: dict[Path, Any] = {}
        self.comparisons = 0

    def _runner(self, path: Path) -> Callable[[], object]:
        from modelforge.backends.onnxruntime import create_session

        if path not in self._sessions:
            self._sessions[path] = create_session(path, self.threads, stage=self.stage)
        session = self._sessions[path]
        names = {i.name for i in session.get_inputs()}
        feeds = {k: v for k, v in self.feeds.items() if k in names}
        return lambda: session.run(None, feeds)

    def ratio(self, slower_candidate: Path, faster_candidate: Path, seconds: float = COMPARE_SECONDS) -> float:
        """p50(first) / p50(second): above 1 when the second model is faster."""
        from modelforge.evaluate.latency import interleaved_runs

        runs = (self._runner(slower_candidate), self._runner(faster_candidate))
        timings = interleaved_runs(
            runs, warmup=3, min_runs=24, max_seconds=seconds, tolerance=0.02, min_seconds=seconds / 3
        )
        self.comparisons += 1
        first, second = (float(np.median(t)) for t in timings.seconds)
        return first / second

    def forget(self, path: Path) -> None:
        self._sessions.pop(path, None)


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
    if light and len(light) < len(groups):
        candidate = build(frozenset(n for g in light for n in groups[g]), workdir / "speed-compute-only.onnx")
        gain = judge.ratio(current, candidate)
        advance(1)
        kept = gain >= KEEP_FLOAT_MARGIN
        steps.append({"group": "all but convolutions and dense layers", "nodes": sum(len(groups[g]) for g in light),
                      "speedup_in_float": round(gain, 3), "kept_float": kept})  # fmt: skip
        if kept:
            kept_float.extend(light)
            judge.forget(current)
            current = candidate
            log(f"quantize: INT8 on convolutions and dense layers only is faster on this machine ({gain:.2f}x)")
        else:
            judge.forget(candidate)
    if len(groups) > 1:  # with a single group, the comparison with float below decides
        for index, (group, names) in enumerate(groups.items()):
            if group in kept_float:
                continue
            if time.perf_counter() - started > time_budget:
                steps.append({"group": group, "skipped": "time budget"})
                continue
            float_nodes = frozenset(n for g in (*kept_float, group) for n in groups[g])
            candidate = build(float_nodes, workdir / f"speed-{index:02d}.onnx")
            gain = judge.ratio(current, candidate)
            advance(1)
            kept = gain >= KEEP_FLOAT_MARGIN
            steps.append({"group": group, "nodes": len(names), "speedup_in_float": round(gain, 3), "kept_float": kept})
            if kept:
                kept_float.append(group)
                judge.forget(current)
                current = candidate
                log(f"quantize: {group} ({len(names)} nodes) is faster in float on this machine ({gain:.2f}x)")
            else:
                judge.forget(candidate)
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
