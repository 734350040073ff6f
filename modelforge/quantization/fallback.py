"""Accuracy-aware fallback: keep the fewest, most sensitive nodes in float until the accuracy budget is met.

The budget is the recipe's accuracy gates (`gates.max_accuracy_drop` with labels, `gates.min_cosine`,
`gates.min_agreement` without, and the default gates of `modelforge.run.gates` where the user set none of that
metric), handed to the pass through `PassContext.gates`: the pass aims at exactly
what the run will be judged on, measured the same way (same eval data, same batches, same metrics), so a
budget met here is a gate passed there.

1. Measure the fully quantized model on the eval data. Within budget: done, nothing stays in float.
2. Sensitivity: for each quantized node, the model with only that node in float, measured on a subset of the
   eval data (`sensitivity_samples`): how much of the output error (noise power vs FP32) it removes.
3. Rank the nodes by that, most sensitive first, and find the smallest k such that the top k in float meet
   the budget (binary search on k, each step measured on the whole eval data).
4. Try dropping each chosen node again, least sensitive first, and keep the drop if the budget still holds.
5. Measure the speed cost: the all-INT8 model against the result, interleaved.

If even every candidate in float misses the budget, the best model measured is returned with the reason; the
run's gates then fail (exit 1) with the report written.

The eval data tunes the fallback and then judges it: the report says so (`fallback.tuned_on`). Hold out
separate eval data when the figure must be unbiased.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelforge.data import BoundDataset


@dataclass(frozen=True)
class Budget:
    max_accuracy_drop: float | None = None  # percentage points
    min_cosine: float | None = None
    min_agreement: float | None = None

    @classmethod
    def from_gates(cls, gates: Any) -> Budget:
        """The run's behaviour gates (recipe.schema.GATE_METRICS): what the fallback must meet."""
        from modelforge.recipe.schema import GATE_METRICS

        if gates is None:
            return cls()
        return cls(**{m.name: getattr(gates, m.name, None) for m in GATE_METRICS if m.kind == "behaviour"})

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.max_accuracy_drop, self.min_cosine, self.min_agreement))

    def misses(self, m: dict[str, Any]) -> list[str]:
        """Why these metrics miss the budget (empty: within budget). A metric that cannot be measured misses."""
        out = []
        if self.max_accuracy_drop is not None:
            drop = m.get("accuracy_drop_pp")
            if drop is None or drop > self.max_accuracy_drop + 1e-9:
                out.append(f"accuracy drop {_fmt(drop)} pp > {self.max_accuracy_drop} pp")
        if self.min_cosine is not None:
            cos = m.get("output_cosine")
            if cos is None or cos < self.min_cosine:
                out.append(f"output cosine {_fmt(cos, 5)} < {self.min_cosine}")
        if self.min_agreement is not None:
            agree = m.get("top1_agreement")
            if agree is None or agree < self.min_agreement:
                out.append(f"top-1 agreement {_fmt(agree, 4)} < {self.min_agreement}")
        return out

    def shortfall(self, m: dict[str, Any]) -> float:
        """How far from the budget, in comparable units (0 when met): ranks the best of failed attempts."""
        gap = 0.0
        if self.max_accuracy_drop is not None:
            gap += max(0.0, (m.get("accuracy_drop_pp") or 100.0) - self.max_accuracy_drop) / 100.0
        if self.min_cosine is not None:
            gap += max(0.0, self.min_cosine - (m.get("output_cosine") if m.get("output_cosine") is not None else -1))
        if self.min_agreement is not None:
            gap += max(0.0, self.min_agreement - (m.get("top1_agreement") or 0.0))
        return gap

    def record(self) -> dict[str, float]:
        return {
            k: v
            for k, v in (
                ("max_accuracy_drop", self.max_accuracy_drop),
                ("min_cosine", self.min_cosine),
                ("min_agreement", self.min_agreement),
            )
            if v is not None
        }


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


class OutputJudge:
    """Runs candidate models on eval data and compares them with the float model's outputs.

    The float outputs are computed once and kept while they fit in REFERENCE_BYTES; beyond that (large
    eval sets of per-token outputs) the float model runs again beside each candidate, so memory stays flat.
    """

    REFERENCE_BYTES = 512 << 20

    def __init__(
        self,
        float_path: Path,
        data: BoundDataset,
        batch: int,
        threads: int | None,
        stage: str,
        advance: Callable[[int], None] = lambda _: None,
        *,
        runtime: str = "onnxruntime",
        precision: str = "fp32",
    ):
        """`advance`: called with each batch's sample count as the float model runs (a progress bar).
        `runtime`/`precision`: where candidates run (their target); the float reference runs on onnxruntime,
        as the run's baseline does."""
        from modelforge.runtimes.onnxruntime import create_session

        self.data, self.batch, self.threads, self.stage = data, batch, threads, stage
        self.runtime, self.precision = runtime, precision
        self.labels = data.labels()
        self.float_session = create_session(float_path, threads, stage=stage)
        kept: list | None = []
        size = 0
        for feeds in data.batches(batch):
            outputs = self.float_session.run(None, feeds)
            advance(len(next(iter(feeds.values()))))
            size += sum(o.nbytes for o in outputs)
            if size > self.REFERENCE_BYTES:
                kept = None
                break
            kept.append(outputs)
        self.reference = kept
        if kept is not None:
            self.float_session = None

    def _references(self):
        if self.reference is not None:
            yield from self.reference
        else:
            for feeds in self.data.batches(self.batch):
                yield self.float_session.run(None, feeds)

    def measure(self, model_path: Path, limit: int | None = None) -> dict[str, Any]:
        """Gate metrics (as the evaluator computes them) plus the output noise power vs float."""
        from modelforge.runtimes.base import open_backend

        backend = open_backend(
            model_path, runtime=self.runtime, precision=self.precision, threads=self.threads, stage=self.stage
        )
        from modelforge.measure.metrics import ComparisonAccumulator

        acc = ComparisonAccumulator()
        seen = 0
        for feeds, reference in zip(self.data.batches(self.batch), self._references(), strict=False):
            n = len(next(iter(feeds.values())))
            labels = self.labels[seen : seen + n] if self.labels is not None else None
            acc.update(reference, backend.run(feeds), labels)
            seen += n
            if limit is not None and seen >= limit:
                break
        return gate_metrics(acc, self.labels is not None, seen)


def gate_metrics(acc: Any, has_labels: bool, samples: int) -> dict[str, Any]:
    """The gate metrics of a `ComparisonAccumulator` (as the evaluator computes them), plus the noise power."""
    summary = acc.summary(has_labels=has_labels)
    acc_a, acc_b = summary.get("accuracy_baseline"), summary.get("accuracy_result")
    return {
        "accuracy_drop_pp": (acc_a - acc_b) * 100 if acc_a is not None and acc_b is not None else None,
        "accuracy_result": acc_b,
        "output_cosine": summary.get("output_cosine"),
        "top1_agreement": summary.get("top1_agreement"),
        "noise": acc.noise_power / max(acc.signal_power, 1e-30),
        "samples": samples,
    }


class _SearchStopped(Exception):
    """The search's time budget ran out: return the best model measured so far."""


@dataclass
class FallbackResult:
    model_path: Path
    float_nodes: list[str]
    met: bool
    reason: str
    record: dict[str, Any] = field(default_factory=dict)


def accuracy_aware_fallback(
    *,
    candidates: list[tuple[str, str]],
    build: Callable[[frozenset[str], Path], Path],
    judge: OutputJudge,
    budget: Budget,
    workdir: Path,
    sensitivity_samples: int,
    max_nodes: int | None,
    task: Callable[..., Any],
    log: Callable[[str], None] = lambda _: None,
    time_budget: float | None = None,
) -> FallbackResult:
    """See the module docstring. `build(float_nodes, path)` writes the quantized model with those nodes kept
    in float and returns its path; `candidates` are the (name, op_type) of the quantized nodes.

    With `time_budget` (seconds), or on Ctrl-C, the search stops and returns the best model measured so far."""
    op_type = dict(candidates)
    counter = iter(range(1_000_000))
    deadline = None if time_budget is None else time.monotonic() + time_budget

    def checkpoint() -> None:
        # The all-quantized model is always measured: it is the result when nothing else was.
        if tried and deadline is not None and time.monotonic() > deadline:
            raise _SearchStopped(f"time budget of {time_budget:g} s used up")

    def make(nodes: Iterable[str]) -> Path:
        return build(frozenset(nodes), workdir / f"candidate-{next(counter):04d}.onnx")

    tried: list[tuple[dict[str, Any], list[str], Path]] = []

    def check(nodes: list[str]) -> tuple[bool, dict[str, Any], Path]:
        checkpoint()
        path = make(nodes)
        metrics = judge.measure(path)
        tried.append((metrics, list(nodes), path))
        return not budget.misses(metrics), metrics, path

    met, base_metrics, base_path = check([])
    record: dict[str, Any] = {
        "budget": budget.record(),
        "candidates": len(candidates),
        "metrics_all_quantized": _public(base_metrics),
    }
    if met:
        record.update(float_nodes=[], met=True, reason="the fully quantized model is within budget")
        return FallbackResult(base_path, [], True, record["reason"], record)
    if not candidates:
        reason = "; ".join(budget.misses(base_metrics)) + " and no quantized node can be kept in float"
        record.update(float_nodes=[], met=False, reason=reason)
        return FallbackResult(base_path, [], False, reason, record)

    sensitivity: dict[str, float] = {}
    ranked: list[str] = []
    chosen: list[str] | None = None
    limit = len(candidates)
    hi_metrics = base_metrics
    stopped = None
    try:
        # 2. sensitivity: leave-one-out on a subset
        subset = min(sensitivity_samples, judge.data.num_samples)
        base_noise = judge.measure(base_path, subset)["noise"]
        with task("Measuring node sensitivity", len(candidates)) as advance:
            for name, _ in candidates:
                checkpoint()
                noise = judge.measure(make([name]), subset)["noise"]
                sensitivity[name] = (base_noise - noise) / base_noise if base_noise > 0 else 0.0
                advance(1)
        ranked = sorted(sensitivity, key=lambda n: -sensitivity[n])
        limit = len(ranked) if max_nodes is None else min(max_nodes, len(ranked))
        log(f"fallback: {len(ranked)} quantized nodes ranked; most sensitive: {', '.join(ranked[:3])}")

        # 3. smallest k meeting the budget, binary search (the upper bound checked first)
        ok_hi, hi_metrics, _ = check(ranked[:limit])
        if ok_hi:
            lo, hi = 0, limit  # lo misses, hi meets
            chosen = ranked[:hi]
            while hi - lo > 1:
                mid = (lo + hi) // 2
                ok, _, _ = check(ranked[:mid])
                lo, hi = (lo, mid) if ok else (mid, hi)
                chosen = ranked[:hi]
            # 4. prune: drop nodes the budget does not need, least sensitive first
            for name in sorted(chosen, key=lambda n: sensitivity[n]):
                if len(chosen) == 1:
                    break
                trial = [n for n in chosen if n != name]
                ok, _, _ = check(trial)
                if ok:
                    chosen = trial
    except _SearchStopped as stop:
        stopped = str(stop)
    except KeyboardInterrupt:
        stopped = "interrupted (Ctrl-C)"
    if stopped:
        log(f"fallback: search stopped: {stopped}; keeping the best model measured so far")
        record["stopped"] = stopped
        meeting = [(m, n, p) for m, n, p in tried if not budget.misses(m)]
        chosen = min(meeting, key=lambda t: len(t[1]))[1] if meeting else None

    def rank_of(name: str) -> int:
        return ranked.index(name) + 1 if name in ranked else len(ranked) + 1

    if chosen is not None:
        metrics, nodes, path = next((m, n, p) for m, n, p in reversed(tried) if n == chosen)
        reason = f"{len(chosen)} of {len(candidates)} quantized nodes kept in float meet the budget"
        met = True
    else:
        metrics, nodes, path = min(tried, key=lambda t: (budget.shortfall(t[0]), len(t[1])))
        if stopped:
            reason = f"search {stopped} before the budget was met: " + "; ".join(budget.misses(metrics))
        else:
            capped = (
                f" (at most {max_nodes} nodes allowed)" if max_nodes is not None and max_nodes < len(ranked) else ""
            )
            reason = (
                f"budget not met even with {limit} of {len(candidates)} quantized nodes in float{capped}: "
                + "; ".join(budget.misses(hi_metrics))
            )
        reason += f"; best result kept ({len(nodes)} nodes in float)"
        met = False
    if stopped and met:
        reason += f" (search {stopped}: the fewest-node result found so far)"
    record.update(
        met=met,
        reason=reason,
        float_nodes=[
            {
                "name": n,
                "op_type": op_type.get(n, "?"),
                "sensitivity": round(sensitivity.get(n, 0.0), 6),
                "why": f"rank {rank_of(n)} of {len(ranked)} by sensitivity: in float it removes "
                f"{sensitivity.get(n, 0.0):.1%} of the output error (measured alone)",
            }
            for n in nodes
        ],
        metrics_result=_public(metrics),
        models_measured=len(tried) + len(sensitivity) + 1,
        most_sensitive=[
            {"name": n, "op_type": op_type.get(n, "?"), "sensitivity": round(sensitivity[n], 6)} for n in ranked[:5]
        ],
    )
    return FallbackResult(path, nodes, met, reason, record)


def _public(metrics: dict[str, Any]) -> dict[str, Any]:
    out = {k: metrics[k] for k in ("accuracy_drop_pp", "output_cosine", "top1_agreement", "samples") if k in metrics}
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in out.items() if v is not None}


def speed_cost(
    all_quantized: Path,
    result: Path,
    data: BoundDataset,
    threads: int | None,
    stage: str,
    *,
    runtime: str = "onnxruntime",
    precision: str = "fp32",
) -> dict:
    """Latency of the all-INT8 model vs the model with its fallback nodes in float (batch 1, interleaved)."""
    from modelforge.measure.latency import interleaved_latency
    from modelforge.runtimes.base import open_backend

    feeds = {k: v[:1] for k, v in next(data.batches(1)).items()}
    a = open_backend(all_quantized, runtime=runtime, precision=precision, threads=threads, stage=stage)
    b = open_backend(result, runtime=runtime, precision=precision, threads=threads, stage=stage)
    stats_a, stats_b = interleaved_latency(
        lambda: a.run(feeds), lambda: b.run(feeds), batch_size=1, warmup=5, min_runs=30, max_seconds=10
    )
    return {
        "latency_p50_ms_all_quantized": round(stats_a.p50_ms, 4),
        "latency_p50_ms_with_fallback": round(stats_b.p50_ms, 4),
        "slowdown": round(stats_b.p50_ms / stats_a.p50_ms, 4) if stats_a.p50_ms > 0 else None,
    }
