"""Latency statistics and the stopping rule, on synthetic timings (a fake clock: no model, no sleeping)."""

from __future__ import annotations

import numpy as np
import pytest

from modelforge.measure.latency import (
    BLOCK,
    DROPPED_PER_BLOCK,
    LatencyStats,
    interleaved_runs,
    p50_is_stable,
    quantile_upper_bound,
    thin,
)
from modelforge.measure.profile import (
    slo_verdicts,
    sweep_batch_sizes,
)
from modelforge.run.gates import slo_gates

KEPT_PER_BLOCK = BLOCK - DROPPED_PER_BLOCK


class FakeClock:
    """A clock that only moves when a fake model 'runs'."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.now

    def model(self, name: str, durations):
        """A run function whose n-th call takes durations(n) seconds."""
        count = {"n": 0}

        def run() -> None:
            self.now += durations(count["n"])
            self.calls.append(name)
            count["n"] += 1

        return run


def test_stats_from_known_timings():
    seconds = [ms / 1e3 for ms in range(1, 101)]  # 1..100 ms
    stats = LatencyStats.from_seconds(seconds, batch_size=4)
    ms = np.arange(1, 101, dtype=float)
    assert stats.runs == 100
    assert stats.p50_ms == pytest.approx(50.5)
    assert stats.p90_ms == pytest.approx(np.percentile(ms, 90))  # 90.1
    assert stats.p99_ms == pytest.approx(np.percentile(ms, 99))  # 99.01
    assert stats.mean_ms == pytest.approx(50.5)
    assert stats.std_ms == pytest.approx(ms.std())
    assert stats.min_ms == pytest.approx(1.0)
    assert stats.throughput_per_s == pytest.approx(4 * 1000 / 50.5)  # samples/s at the p50


def test_constant_timings_are_exact_and_stop_when_stable():
    clock = FakeClock()
    a = clock.model("a", lambda n: 0.010)
    b = clock.model("b", lambda n: 0.005)
    timings = interleaved_runs([a, b], warmup=0, min_runs=10, max_seconds=60, clock=clock)
    stats_a, stats_b = timings.stats(batch_size=1)
    assert timings.stopped == "stable"
    # The first check after min_runs: 10 kept runs need two blocks of 6 kept each.
    assert stats_a.runs == stats_b.runs == 2 * KEPT_PER_BLOCK
    assert stats_a.p50_ms == pytest.approx(10.0)
    assert stats_b.p99_ms == pytest.approx(5.0)
    assert stats_b.std_ms == pytest.approx(0.0, abs=1e-9)
    assert stats_a.p50_ms / stats_b.p50_ms == pytest.approx(2.0)
    assert timings.samples_ms()[0] == pytest.approx([10.0] * 12)


def test_runs_alternate_in_blocks_after_warmup():
    clock = FakeClock()
    a, b = clock.model("a", lambda n: 0.001), clock.model("b", lambda n: 0.001)
    interleaved_runs([a, b], warmup=3, min_runs=1, max_seconds=60, clock=clock)
    assert clock.calls[:6] == ["a", "b"] * 3  # warm-up alternates run by run
    assert clock.calls[6:] == ["a"] * BLOCK + ["b"] * BLOCK


def test_first_runs_of_each_block_are_dropped():
    clock = FakeClock()
    # The first two runs of every block are slow (caches evicted by the other model): never kept.
    slow_start = clock.model("a", lambda n: 0.100 if n % BLOCK < DROPPED_PER_BLOCK else 0.010)
    other = clock.model("b", lambda n: 0.010)
    timings = interleaved_runs([slow_start, other], warmup=0, min_runs=12, max_seconds=60, clock=clock)
    stats = timings.stats(1)[0]
    assert stats.runs == 12
    assert stats.p99_ms == pytest.approx(10.0)


def test_drifting_timings_never_stabilise_and_stop_at_the_time_budget():
    clock = FakeClock()
    # Each run 10% slower than the last: the p50 of the last half never matches the p50 of all runs.
    drifting = clock.model("a", lambda n: 0.001 * 1.1**n)
    steady = clock.model("b", lambda n: 0.001)
    timings = interleaved_runs([drifting, steady], warmup=0, min_runs=6, max_seconds=5.0, clock=clock)
    assert timings.stopped == "time budget"
    assert timings.elapsed_s >= 5.0
    stats = timings.stats(1)[0]
    assert stats.p99_ms > stats.p50_ms > stats.min_ms


def test_time_budget_ends_before_min_runs_but_keeps_one_block():
    clock = FakeClock()
    slow = clock.model("a", lambda n: 1.0)
    timings = interleaved_runs([slow], warmup=0, min_runs=1000, max_seconds=0.5, clock=clock)
    assert timings.stopped == "time budget"
    assert len(timings.seconds[0]) == KEPT_PER_BLOCK


def test_max_runs_caps_a_measurement():
    clock = FakeClock()
    noisy = clock.model("a", lambda n: 0.001 * (1 + (n % 7) * 0.5) * 1.01**n)
    timings = interleaved_runs([noisy], warmup=0, min_runs=6, max_seconds=1e9, clock=clock, max_runs=60)
    assert timings.stopped == "max runs"
    assert len(timings.seconds[0]) == 60


def test_stability_rule():
    assert p50_is_stable([1.0] * 10)
    assert p50_is_stable([1.0, 1.01, 0.99, 1.0, 1.005, 0.995], tolerance=0.02)
    assert not p50_is_stable([1.0, 1.0, 1.0, 2.0, 2.0, 2.0], tolerance=0.02)
    assert not p50_is_stable([1.0])


def test_thin_keeps_order_ends_and_limit():
    values = [float(i) for i in range(5000)]
    kept = thin(values, 1000)
    assert len(kept) == 1000
    assert kept[0] == 0.0 and kept[-1] == 4999.0
    assert kept == sorted(kept)
    assert thin(values[:10], 1000) == values[:10]


def _sweep(p99_by_batch: dict[int, tuple[float, float]]) -> list[dict]:
    return [
        {
            "batch_size": batch,
            "stats": {
                "baseline": {"p50_ms": a / 2, "p99_ms": a},
                "result": {"p50_ms": b / 2, "p99_ms": b},
            },
        }
        for batch, (a, b) in p99_by_batch.items()
    ]


def test_slo_verdicts_and_largest_batch():
    sweep = _sweep({1: (12.0, 6.0), 8: (60.0, 30.0), 32: (250.0, 120.0), 64: (500.0, 260.0)})
    slo = slo_verdicts({"p99_ms": 200.0}, 8, sweep, ("baseline", "result"))
    assert slo["models"]["baseline"] == {
        "values_ms": {"p99_ms": 60.0},
        "judged_ms": {"p99_ms": 60.0},  # statistics without a bound are judged on the value
        "met": True,
        "largest_batch_meeting": 8,
    }
    assert slo["models"]["result"]["largest_batch_meeting"] == 32
    assert slo["measured_batch_sizes"] == [1, 8, 32, 64]
    both = slo_verdicts({"p99_ms": 200.0, "p50_ms": 10.0}, 8, sweep, ("baseline", "result"))
    assert both["models"]["baseline"]["met"] is False  # p50 30 ms > 10 ms
    assert both["models"]["result"]["values_ms"] == {"p99_ms": 30.0, "p50_ms": 15.0}
    assert both["models"]["result"]["largest_batch_meeting"] == 1  # every limit must hold: p50 15 ms > 10 at 8


def test_slo_at_an_unmeasured_batch_is_not_met_and_its_gate_fails():
    sweep = _sweep({4: (1.0, 1.0)})
    slo = slo_verdicts({"p99_ms": 5.0}, 2, sweep, ("baseline", "result"))
    assert slo["models"]["result"]["met"] is None
    gates = slo_gates({"latency": {"slo": slo}})
    assert gates == [
        {
            "name": "slo_latency_p99_ms",
            "metric": "result p99 ms at batch 2",
            "threshold": 5.0,
            "value": None,
            "passed": False,
            "default": False,
        }
    ]


def test_the_p99_upper_bound_is_an_order_statistic_that_covers_the_true_p99():
    runs = np.arange(1, 1001, dtype=float)
    assert quantile_upper_bound(runs, 0.99) == 996.0  # the 5th slowest of 1,000, where the p99 is the 10th
    assert quantile_upper_bound(runs[:200], 0.99) == 200.0  # too few runs for a bound: the slowest
    assert quantile_upper_bound(runs[:299], 0.99) == 299.0 and quantile_upper_bound(runs[:500], 0.99) == 499.0
    assert np.percentile(runs, 50) <= quantile_upper_bound(runs, 0.5) <= 530.0
    # Coverage on skewed (lognormal) latencies, 1,000 runs each, seeded: about 95% of bounds lie at or above
    # the true p99 (a point p99 does so about half the time).
    rng = np.random.default_rng(7)
    true_p99 = float(np.exp(2.326348))  # lognormal(0, 1)
    trials = [rng.lognormal(size=1000) for _ in range(1000)]
    covered = np.mean([quantile_upper_bound(t, 0.99) >= true_p99 for t in trials])
    point = np.mean([np.percentile(t, 99) >= true_p99 for t in trials])
    assert 0.93 <= covered <= 0.99 and 0.3 <= point <= 0.7


def test_an_slo_is_judged_on_the_upper_bound_and_its_gate_says_so():
    stats = {"p50_ms": 90.0, "p99_ms": 190.0, "p50_upper_ms": 92.0, "p99_upper_ms": 210.0}
    sweep = [{"batch_size": 1, "stats": {"baseline": stats, "result": stats | {"p99_upper_ms": 199.0}}}]
    slo = slo_verdicts({"p99_ms": 200.0}, 1, sweep, ("baseline", "result"))
    baseline, result = slo["models"]["baseline"], slo["models"]["result"]
    assert baseline["values_ms"] == {"p99_ms": 190.0} and baseline["judged_ms"] == {"p99_ms": 210.0}
    assert baseline["met"] is False and baseline["largest_batch_meeting"] is None  # measured under, bound over
    assert result["met"] is True and result["largest_batch_meeting"] == 1
    (gate,) = slo_gates({"latency": {"slo": slo}})
    assert gate["value"] == 199.0 and gate["passed"] and gate["metric"].endswith("95% upper bound")


def test_sweep_batch_sizes():
    assert sweep_batch_sizes(1, [32, 8, 1], None, None) == [1, 8, 32]
    assert sweep_batch_sizes(4, [], 16, None) == [4, 16]
    assert sweep_batch_sizes(1, [8, 32], 16, fixed=2) == [2]  # a fixed batch dimension wins
