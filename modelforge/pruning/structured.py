"""Structured channel pruning through Torch-Pruning's dependency graph (residual adds, concatenations,
depthwise and grouped convolutions stay consistent: we never trace dependencies ourselves).

The result is a smaller dense model: fewer channels, fewer MACs, a real speed-up on every runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelforge.errors import PassError
from modelforge.optional import require


def import_tp():
    return require("torch_pruning", "structured pruning")


def count_macs_params(module, example: tuple) -> tuple[int, int]:
    tp = import_tp()
    was = module.training
    module.eval()
    macs, params = tp.utils.count_ops_and_params(module, example[0] if len(example) == 1 else example)
    module.train(was)
    return int(macs), int(params)


MAX_RATIO = 0.95  # the most a uniform ratio removes: every layer keeps a twentieth of its channels
SCAN_STEP = 0.05


def ratio_for_macs(
    pruned: Callable[[float], Any], example: tuple, max_macs: float, refine: int = 4
) -> tuple[float, int]:
    """The smallest uniform ratio whose pruned model, `pruned(ratio)`, has at most `max_macs` multiply-accumulates,
    and its MACs. Scanned upward in SCAN_STEP steps, then bisected `refine` times within the step: MACs do not
    fall monotonically over the whole range (a layer too narrow for the ratio is left whole, so at 0.95 a small
    net can have all its MACs again), only locally. When no ratio gets there: the ratio with the fewest MACs."""

    def macs(ratio: float) -> int:
        return count_macs_params(pruned(ratio), example)[0]

    low, seen = 0.0, {}
    for index in range(1, round(MAX_RATIO / SCAN_STEP) + 1):
        high = round(index * SCAN_STEP, 4)
        seen[high] = macs(high)
        if seen[high] <= max_macs:
            break
        low = high
    else:
        fewest = min(seen, key=seen.__getitem__)
        return fewest, seen[fewest]
    for _ in range(refine):
        middle = (low + high) / 2
        count = macs(middle)
        if count <= max_macs:
            high, seen[high] = middle, count
        else:
            low = middle
    return high, seen[high]


def importance_of(name: str):
    tp = import_tp()
    if name == "l1":
        return tp.importance.MagnitudeImportance(p=1)
    if name == "l2":
        return tp.importance.MagnitudeImportance(p=2)
    if name == "taylor":
        return tp.importance.TaylorImportance()
    return tp.importance.BNScaleImportance()


def _taylor_gradients(module, batch: tuple, labels) -> None:
    import torch

    module.zero_grad()
    module.train()
    out = module(*batch)
    out = out[0] if isinstance(out, tuple | list) else out
    torch.nn.functional.cross_entropy(out, labels).backward()


def _prune_once(tp, module, example: tuple, ratio: float, imp, importance: str, ignored, round_to, taylor_batch):
    pruner = tp.pruner.MetaPruner(
        module,
        example[0] if len(example) == 1 else example,
        importance=imp,
        pruning_ratio=ratio,
        ignored_layers=ignored,
        round_to=round_to,
    )
    if importance == "taylor" and taylor_batch is not None:
        _taylor_gradients(module, *taylor_batch)
    pruner.step()


def prune_channels(
    module,
    example: tuple,
    *,
    ratio: float | None,
    target_macs: float | None,
    base_macs: int,
    importance: str,
    skipped: list[str],
    round_to: int | None,
    taylor_batch: tuple | None = None,
) -> None:
    """Remove `ratio` of the channels of every prunable layer (uniformly), or, with `target_macs`, the smallest
    uniform ratio (found by bisection on copies) that brings MACs <= target_macs * base_macs. Works in place."""
    import copy

    tp = import_tp()
    imp = importance_of(importance)
    was = module.training
    module.eval()

    def prune(target, share: float) -> None:
        named = dict(target.named_modules())
        ignored = [named[name] for name in skipped]
        _prune_once(tp, target, example, share, imp, importance, ignored, round_to, taylor_batch)
        target.zero_grad(set_to_none=True)
        target.eval()

    def pruned_copy(share: float):
        trial = copy.deepcopy(module)
        prune(trial, share)
        return trial

    try:
        if target_macs is not None:
            ratio, _ = ratio_for_macs(pruned_copy, example, target_macs * base_macs)
        prune(module, ratio)
    except (AssertionError, RuntimeError, ValueError, IndexError) as exc:  # Torch-Pruning's errors are asserts
        raise PassError("prune", f"structured pruning failed: {type(exc).__name__}: {exc}") from None
    finally:
        module.zero_grad(set_to_none=True)
        module.train(was)


def channel_report(before: dict[str, tuple[int, int]], module) -> list[dict[str, Any]]:
    from modelforge.pruning.layers import prunable_layers

    rows = []
    for name, layer in prunable_layers(module).items():
        out_now = getattr(layer, "out_channels", getattr(layer, "out_features", None))
        in_now = getattr(layer, "in_channels", getattr(layer, "in_features", None))
        out_was, in_was = before.get(name, (out_now, in_now))
        rows.append(
            {
                "layer": name,
                "out_channels": [out_was, out_now],
                "in_channels": [in_was, in_now],
                "kept": out_now / out_was if out_was else 1.0,
            }
        )
    return rows


def channel_counts(module) -> dict[str, tuple[int, int]]:
    from modelforge.pruning.layers import prunable_layers

    return {
        name: (
            getattr(layer, "out_channels", getattr(layer, "out_features", None)),
            getattr(layer, "in_channels", getattr(layer, "in_features", None)),
        )
        for name, layer in prunable_layers(module).items()
    }
