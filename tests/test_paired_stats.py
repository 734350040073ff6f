"""Paired-block statistics (evaluate/paired.py) and the paired measuring loop, on synthetic numbers.

Timings here are numbers from a seeded generator or a fake clock: no model runs, nothing depends on this
machine's speed or load.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelforge.measure.latency import BLOCK, DROPPED_PER_BLOCK, paired_blocks
from modelforge.measure.paired import (
    block_medians,
    fewest_pairs,
    is_look,
    median_interval,
    order_statistic_rank,
    ratio_interval,
)

SEED = 0


def test_order_statistic_ranks_match_the_sign_test_table():
    # Published sign-test ranks for a two-sided 95% interval of the median: n=6 -> 1, 10 -> 2, 20 -> 6, 100 -> 40.
    assert [order_statistic_rank(n, 0.95) for n in (6, 10, 20, 100)] == [1, 2, 6, 40]
    assert order_statistic_rank(5, 0.95) is None  # 2 / 2**5 > 5%: no interval from 5 values
    assert order_statistic_rank(8, 0.99) == 1 and order_statistic_rank(7, 0.99) is None
    assert fewest_pairs(0.95) == 6 and fewest_pairs(0.99) == 8


def test_too_few_pairs_give_an_unbounded_interval():
    interval = ratio_interval([2.0] * 4, [1.0] * 4)
    assert interval.estimate == pytest.approx(2.0)
    assert interval.low == 0 and interval.high == math.inf and not interval.bounded
    assert interval.straddles(1.1) and "too few" in interval.describe()
    assert interval.record()["interval"] == [None, None]


def test_the_interval_covers_the_true_ratio_at_its_confidence():
    """Many synthetic experiments (log-normal block noise, 20 pairs each): the 95% interval covers the true
    1.3x in at least 95% of them, and not in all (it is not needlessly wide)."""
    rng = np.random.default_rng(SEED)
    true_ratio, experiments, pairs = 1.3, 2000, 20
    covered = 0
    for _ in range(experiments):
        load = np.exp(rng.normal(0, 0.3, pairs))  # what the machine does to both sides of a pair
        first = true_ratio * load * np.exp(rng.normal(0, 0.08, pairs))
        second = load * np.exp(rng.normal(0, 0.08, pairs))
        interval = ratio_interval(first, second, 0.95)
        covered += interval.low <= true_ratio <= interval.high
    assert 0.95 <= covered / experiments < 0.995


def test_load_on_both_sides_of_a_pair_cancels_and_one_sided_hits_do_not_tilt_the_estimate():
    rng = np.random.default_rng(SEED)
    pairs = 40
    load = np.where(np.arange(pairs) % 5 == 0, 3.0, 1.0)  # a neighbour takes the cores for every 5th pair
    first = 1.4 * load * np.exp(rng.normal(0, 0.02, pairs))
    second = 1.0 * load * np.exp(rng.normal(0, 0.02, pairs))
    second[[3, 17, 29]] *= 2.5  # and hits only the second model's block in three pairs
    interval = ratio_interval(first, second)
    assert interval.estimate == pytest.approx(1.4, rel=0.02)
    assert interval.above(1.3) and interval.below(1.5)


def test_no_difference_is_not_significant():
    rng = np.random.default_rng(SEED)
    first = np.exp(rng.normal(0, 0.1, 30))
    second = np.exp(rng.normal(0, 0.1, 30))
    interval = ratio_interval(first, second)
    assert interval.straddles(1.0)


def test_median_interval_uses_order_statistics():
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 6.0, 0.0, 9.0, 8.0, 7.0]  # n=10: ranks 2 and 9 of the sorted values
    assert median_interval(values, 0.95) == (1.0, 8.0)


def test_block_medians_and_bad_times():
    assert block_medians([1, 9, 2, 3, 3, 3, 7], per_block=3) == [2.0, 3.0]  # the partial block is dropped
    with pytest.raises(ValueError, match="positive"):
        ratio_interval([1.0, 0.0], [1.0, 1.0])


def test_looks_are_spaced_about_1_4x():
    assert [n for n in range(1, 60) if is_look(n)] == [6, 8, 11, 15, 21, 29, 41, 57]


class FakeClock:
    """A clock that only moves when a fake model 'runs'."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def model(self, durations):
        count = {"n": 0}

        def run() -> None:
            self.now += durations(count["n"])
            count["n"] += 1

        return run


def test_paired_blocks_stops_at_the_first_look_that_answers():
    clock = FakeClock()
    a, b = clock.model(lambda n: 0.002), clock.model(lambda n: 0.001)
    timings = paired_blocks(a, b, decided=lambda i: i.above(1.1), max_seconds=60, warmup=0, clock=clock)
    assert timings.stopped == "decided"
    assert timings.interval.pairs == 6 and timings.interval.estimate == pytest.approx(2.0)
    assert len(timings.first) == len(timings.second) == 6


def test_paired_blocks_drops_the_first_runs_of_each_block():
    clock = FakeClock()
    # Each block's first DROPPED_PER_BLOCK runs are slow (the other model evicted the caches).
    a = clock.model(lambda n: 0.050 if n % BLOCK < DROPPED_PER_BLOCK else 0.004)
    b = clock.model(lambda n: 0.050 if n % BLOCK < DROPPED_PER_BLOCK else 0.002)
    timings = paired_blocks(a, b, decided=lambda i: True, max_seconds=60, warmup=0, clock=clock)
    assert timings.first == pytest.approx([0.004] * 6) and timings.second == pytest.approx([0.002] * 6)


def test_paired_blocks_measures_until_the_time_allowance_when_it_cannot_tell():
    rng = np.random.default_rng(SEED)
    clock = FakeClock()
    noisy = clock.model(lambda n: 0.001 * float(np.exp(rng.normal(0, 0.5))))
    other = clock.model(lambda n: 0.001 * float(np.exp(rng.normal(0, 0.5))))
    timings = paired_blocks(noisy, other, decided=lambda i: not i.straddles(1.0), max_seconds=2.0, clock=clock)
    assert timings.stopped == "time allowance" and timings.interval.straddles(1.0)
    assert timings.elapsed_s >= 2.0


def test_paired_blocks_honours_min_pairs_and_max_pairs():
    clock = FakeClock()
    slow = clock.model(lambda n: 1.0)
    timings = paired_blocks(
        slow, slow, decided=lambda i: False, max_seconds=0.1, min_pairs=15, confidence=0.99, warmup=0, clock=clock
    )
    assert timings.stopped == "time allowance" and timings.interval.pairs == 15
    clock = FakeClock()
    fast = clock.model(lambda n: 1e-6)
    capped = paired_blocks(fast, fast, decided=lambda i: False, max_seconds=1e9, max_pairs=30, clock=clock)
    assert capped.stopped == "max pairs" and capped.interval.pairs == 30
