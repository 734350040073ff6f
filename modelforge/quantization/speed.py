"""Speed-aware quantization: keep in float what INT8 makes slower on this machine, never ship a slower model.

INT8 is not faster everywhere: on onnxruntime's CPU kernels a depthwise convolution, a hard-swish or a
squeeze-excitation multiply can run slower quantized than in float (Q/DQ around cheap ops costs more than it
saves), and on some models every INT8 configuration loses to FP32. Latency is what users quantize for, so
it is measured here, on this machine, at the batch size and threads the run reports. Every comparison is
paired blocks of runs, interleaved in one process (thread pools not spinning:
`backends.onnxruntime.SESSION_CONFIG`), and gives a speed-up with a confidence interval
(`evaluate.paired`); a neighbour process slows both sides of the pairs it hits, and widens the interval
instead of tilting the answer:

1. The quantized nodes are grouped by the kind of work they do (op type; convolutions split into
   depthwise, 1x1 and spatial, whose INT8 kernels differ most).
2. First, all groups but convolutions and dense layers go back to float at once (float islands among INT8
   ops pay a Q/DQ at each border, so one group at a time can miss this); then a greedy search: each group in
   turn is put back in float. A change is kept only when its gain is significant (the 99% interval of the
   speed-up lies above 1.0); where the run cannot tell, the group stays quantized.
3. "Everything quantized" is always a candidate: the search's model must beat it, significantly, head to
   head; otherwise the fully quantized model (the smallest) goes on.
4. Ship or not: the candidate against the float model the pass was given, measured until the 95% interval
   of the speed-up is clear of MIN_WORTHWHILE_SPEEDUP or the time allowance is up. Above: INT8 ships.
   Below: the float model ships unchanged (onnxruntime applies its graph optimizations at load). Still
   straddling the line: the report says so, and the smaller INT8 model ships unless its median speed-up
   is below 1.0 (measured slower).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelforge.measure.latency import paired_blocks
from modelforge.measure.paired import RatioInterval

# The quantized model ships when it is this much faster than float (below, a small gain is not worth the
# accuracy INT8 costs); the interval decides whether it is, not one noisy ratio.
MIN_WORTHWHILE_SPEEDUP = 1.10
# A group goes back to float only when the interval of the gain at this confidence lies above 1.0: with a
# dozen groups tried, 95% would keep one in float on noise alone every few runs.
KEEP_FLOAT_CONFIDENCE = 0.99
SHIP_CONFIDENCE = 0.95
# A group's question is also answered when its gain is certainly within this factor of 1.0 either way.
NEGLIGIBLE = 1.02
COMPARE_SECONDS = 1.5  # time allowance per comparison of the search
FINAL_SECONDS = 5.0  # time allowance of the ship-or-not comparison with float
SHIP_MIN_PAIRS = 15  # block pairs the ship comparison measures before its time allowance may end it
COMPUTE_GROUPS = ("Conv", "MatMul", "Gemm", "LSTM")  # group names starting so carry the MACs
EVERYTHING = "everything quantized"


@dataclass
class SpeedChoice:
    """What the search kept in float, the measured speed-ups, and the model to ship."""

    model_path: Path
    float_groups: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    speedup_vs_float: float | None = None
    shipped: str = "quantized"  # quantized | float
    reason: str = ""
    ship_interval: dict[str, Any] | None = None  # RatioInterval.record() of the ship comparison
    decision: str = "clear"  # clear | unclear: the interval still straddled the ship line when time was up

    def record(self) -> dict[str, Any]:
        return {
            "shipped": self.shipped,
            "reason": self.reason,
            "decision": self.decision,
            "speedup_vs_float": self.speedup_vs_float,
            "ship_interval": self.ship_interval,
            "float_groups": self.float_groups,
            "steps": self.steps,
        }


@dataclass(frozen=True)
class ShipVerdict:
    shipped: str  # quantized | float
    decision: str  # clear | unclear
    reason: str


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
    """Paired-block comparisons of model files on one batch of real inputs; backends kept per file.

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
        from modelforge.runtimes.base import open_backend

        if path not in self._sessions:
            self._sessions[path] = open_backend(
                path, runtime=self.runtime, precision=self.precision, threads=self.threads, stage=self.stage
            )
        backend = self._sessions[path]
        feeds = {k: v for k, v in self.feeds.items() if k in set(backend.input_names)}
        return lambda: backend.run(feeds)

    def compare(
        self,
        first: Path,
        second: Path,
        *,
        decided: Callable[[RatioInterval], bool],
        seconds: float,
        confidence: float,
        min_pairs: int = 0,
    ) -> RatioInterval:
        """How many times faster `second` is than `first`, measured until `decided(interval)` or `seconds`
        (after at least `min_pairs` block pairs); see `evaluate.latency.paired_blocks`."""
        timings = paired_blocks(
            self._runner(first),
            self._runner(second),
            decided=decided,
            max_seconds=seconds,
            confidence=confidence,
            min_pairs=min_pairs,
        )
        return timings.interval

    def forget(self, path: Path) -> None:
        self._sessions.pop(path, None)


def group_answered(gain: RatioInterval) -> bool:
    """A group's gain in float is known well enough: significantly above or below 1.0, or certainly
    negligible."""
    return gain.above(1.0) or gain.below(1.0) or (gain.low >= 1 / NEGLIGIBLE and gain.high <= NEGLIGIBLE)


def ship_answered(speedup: RatioInterval) -> bool:
    return not speedup.straddles(MIN_WORTHWHILE_SPEEDUP)


def compare_with_float(judge: LatencyJudge, float_path: Path, candidate: Path) -> RatioInterval:
    """The ship comparison: until the interval is clear of the ship line, or the time allowance is up."""
    return judge.compare(
        float_path,
        candidate,
        decided=ship_answered,
        seconds=FINAL_SECONDS,
        confidence=SHIP_CONFIDENCE,
        min_pairs=SHIP_MIN_PAIRS,
    )


def ship_verdict(speedup: RatioInterval, what: str = "INT8") -> ShipVerdict:
    """Ship the quantized model when its speed-up is clearly above the ship line; float when clearly below.
    Still straddling when the time allowance is up (a busy machine): the speed is a tie within what the
    run can tell, so the smaller quantized model, unless the measurement points to it being slower than
    float (median below 1.0); the reason says the run could not tell."""
    line = MIN_WORTHWHILE_SPEEDUP
    measured = speedup.describe()
    if speedup.above(line):
        return ShipVerdict("quantized", "clear", f"{what}: {measured} the float graph's speed on this machine")
    if speedup.below(line):
        return ShipVerdict(
            "float",
            "clear",
            f"no INT8 configuration tried was clearly faster than float on this machine (best: {measured} at "
            f"this batch size and thread count, needed {line:.2f}x): the float model ships",
        )
    unclear = f"could not tell in the time allowed whether {what} is {line:.2f}x faster than float ({measured})"
    if speedup.estimate >= 1.0:
        return ShipVerdict("quantized", "unclear", f"{unclear}; it is not slower, and smaller: it ships")
    return ShipVerdict("float", "unclear", f"{unclear}, and it measured slower: the float model ships")


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

    def faster_in_float(baseline: Path, candidate: Path, label: str, nodes: int) -> bool:
        """Is `candidate` (more nodes in float) significantly faster than `baseline`? Recorded as a step."""
        gain = judge.compare(
            baseline, candidate, decided=group_answered, seconds=COMPARE_SECONDS, confidence=KEEP_FLOAT_CONFIDENCE
        )
        advance(1)
        kept = gain.above(1.0)
        step = {"group": label, "nodes": nodes, "speedup_in_float": round(gain.estimate, 3)}
        steps.append(step | {k: v for k, v in gain.record().items() if k != "speedup"} | {"kept_float": kept})
        if kept:
            log(f"quantize: {label} ({nodes} nodes) in float is faster on this machine: {gain.describe()}")
        return kept

    def try_in_float(new_groups: list[str], label: str, path: Path) -> None:
        nonlocal current
        candidate = build(frozenset(n for g in (*kept_float, *new_groups) for n in groups[g]), path)
        if faster_in_float(current, candidate, label, sum(len(groups[g]) for g in new_groups)):
            kept_float.extend(new_groups)
            judge.forget(current)
            current = candidate
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
    if kept_float:
        # Each kept step was significant, but small gains add up on noise and greedy steps interact: the
        # search's model must beat everything quantized head to head, or the smaller model goes on.
        nodes = sum(len(groups[g]) for g in kept_float)
        if not faster_in_float(quantized_path, current, f"{', '.join(kept_float)} vs {EVERYTHING}", nodes):
            log(f"quantize: {EVERYTHING} is as fast as keeping {', '.join(kept_float)} in float: all stay INT8")
            judge.forget(current)
            current, kept_float = quantized_path, []
    speedup = compare_with_float(judge, float_path, current)
    what = f"INT8 with {', '.join(kept_float)} kept in float" if kept_float else "INT8"
    verdict = ship_verdict(speedup, what)
    choice = SpeedChoice(
        current if verdict.shipped == "quantized" else float_path,
        kept_float,
        steps,
        round(speedup.estimate, 3),
        verdict.shipped,
        verdict.reason,
        speedup.record(),
        verdict.decision,
    )
    log(f"quantize: {choice.reason}")
    return choice
