"""ASHA within each prune ratio: the successive halving that decides how a pruned architecture is fine-tuned, never
which architecture is kept.

Ray Tune's ASHA compares every trial at each rung. Across prune ratios that is unfair: a more pruned model
recovers more slowly, so at the first rung it trails the lighter ones and is stopped, although the lighter ones
may then miss the latency goal at the finalists' timing, and the heavier one was the model to ship (measured:
bench_optimize's p0.50/p0.70 trials stopped after one epoch, p0.30 missing the SLO by its p99 bound, and the
search shipped nothing where the grid had three INT8 models meeting it). Latency against accuracy is the
finalists' question; here each ratio gets its own ASHA bracket, so trials compete only with the other
fine-tuning modes of the same architecture.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler


class AshaPerGroup(FIFOScheduler):
    """One ASHAScheduler per `group(trial)`, each seeing only its group's trials; runs trials first in, first out."""

    def __init__(self, group: Callable[[Any], Any], make: Callable[[], ASHAScheduler]):
        super().__init__()
        self._group, self._make = group, make
        self._schedulers: dict[Any, ASHAScheduler] = {}
        self._metric: str | None = None
        self._mode: str | None = None

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        self._metric, self._mode = metric, mode
        return all(s.set_search_properties(metric, mode, **spec) for s in self._schedulers.values())

    def _scheduler(self, trial) -> ASHAScheduler:
        key = self._group(trial)
        if key not in self._schedulers:
            scheduler = self._make()
            scheduler.set_search_properties(self._metric, self._mode)
            self._schedulers[key] = scheduler
        return self._schedulers[key]

    def on_trial_add(self, tune_controller, trial) -> None:
        self._scheduler(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return self._scheduler(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._scheduler(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._scheduler(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "\n".join(f"ASHA for {key}: {s.debug_string()}" for key, s in self._schedulers.items())


def prune_ratio_of(trial) -> float:
    return trial.config["trial"]["spec"]["ratio"]
