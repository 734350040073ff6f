"""MAC targets for `optimize`: "keep half the multiply-accumulates" turned into the prune ratio that does it.

Everything downstream (screen, trials, finalists, the replayed prune pass) works on uniform prune ratios, so a
target becomes the smallest ratio, rounded up to the hundredth the search names its forms by, whose pruned
architecture (the trials' own pruning: `distillation.students.narrowed_teacher`) has at most that share of the
original's MACs, counted by Torch-Pruning on the example input.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from modelforge.errors import InputError


def resolve_mac_targets(module_factory: Callable[[], Any], example: tuple, targets: list[float]) -> list[dict]:
    """One row per target: the target, its prune ratio and the MAC share that ratio reaches."""
    import warnings

    with warnings.catch_warnings():  # copying an exported module warns about torch's own deprecations
        warnings.simplefilter("ignore")
        return _resolve(module_factory, example, targets)


def _resolve(module_factory: Callable[[], Any], example: tuple, targets: list[float]) -> list[dict]:
    from modelforge.distillation.students import narrowed_teacher
    from modelforge.pruning.structured import count_macs_params, ratio_for_macs

    original = module_factory()
    base = count_macs_params(original, example)[0]

    def pruned(ratio: float):
        return narrowed_teacher(original, 1.0 - ratio, example)

    rows = []
    for target in sorted(set(targets), reverse=True):
        found, macs = ratio_for_macs(pruned, example, target * base)
        if macs > target * base:
            raise InputError(
                f"MAC target {target:g} is below what pruning reaches: {macs / base:.3f} of the MACs at best (prune "
                f"ratio {found:g}; the first layer and the classifier stay whole)",
                hint=f"raise --mac-targets above {macs / base:.2f}",
            )
        ratio = math.ceil(found * 100 - 1e-9) / 100  # the search names forms by hundredths
        share = count_macs_params(pruned(ratio), example)[0] / base
        if share > target:  # rounding up crossed a local rise in MACs: the ratio found, unrounded
            ratio, share = found, macs / base
        rows.append({"mac_target": target, "prune_ratio": ratio, "mac_share": round(share, 4)})
    return rows
