"""Custom metrics named in a recipe as 'module:function'.

Each is called once, after the evaluation pass, as `fn(baseline_outputs, result_outputs, labels)`: two lists
of arrays (one per model output, samples on axis 0, the whole eval set) and the labels array or None. It
returns a number or a mapping of names to numbers, stored under `evaluation.metrics.custom`.
"""

from __future__ import annotations

import importlib
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from modelforge.errors import InputError


def load_metric(spec: str) -> Callable[..., Any]:
    """Import `module:function` from the Python path or a folder named with --code-path; never implicitly from
    the current folder, where a checked-out pull request could plant a module."""
    module_name, _, function_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(
            f"custom metric {spec}: cannot import module '{module_name}': {exc}",
            hint="name the folder that holds it with --code-path DIR (or install it, or set PYTHONPATH)",
        ) from None
    fn = getattr(module, function_name, None)
    if not callable(fn):
        raise InputError(f"custom metric {spec}: module '{module_name}' has no function '{function_name}'")
    return fn


def _number(spec: str, value: Any) -> float:
    if isinstance(value, numbers.Real | np.generic) and not isinstance(value, bool):
        number = float(value)
        return number if math.isfinite(number) else None  # JSON has no inf/nan
    if isinstance(value, np.ndarray) and value.size == 1:
        return _number(spec, value.item())
    raise InputError(f"custom metric {spec} returned {type(value).__name__}, expected a number or a mapping")


def compute_custom_metrics(
    specs: Sequence[str],
    baseline_batches: list[list[np.ndarray]],
    result_batches: list[list[np.ndarray]],
    labels: np.ndarray | None,
) -> dict[str, float | dict[str, float] | None]:
    def join(batches: list[list[np.ndarray]]) -> list[np.ndarray]:
        return [np.concatenate([b[i] for b in batches]) for i in range(len(batches[0]))] if batches else []

    baseline, result = join(baseline_batches), join(result_batches)
    values: dict[str, Any] = {}
    for spec in specs:
        fn = load_metric(spec)
        try:
            value = fn(baseline, result, labels)
        except Exception as exc:  # user code: name it, keep the message
            raise InputError(f"custom metric {spec} raised {type(exc).__name__}: {exc}") from exc
        if isinstance(value, dict):
            values[spec] = {str(k): _number(f"{spec}[{k!r}]", v) for k, v in value.items()}
        else:
            values[spec] = _number(spec, value)
    return values


def mean_kl_divergence(baseline: list[np.ndarray], result: list[np.ndarray], labels: np.ndarray | None) -> float:
    """Example custom metric: mean KL(baseline || result) of the softmax of the first output, in nats.

    Use it as `modelforge.evaluate.custom:mean_kl_divergence` in `evaluate.custom_metrics`.
    """

    def log_softmax(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        shifted = x - x.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    log_p, log_q = log_softmax(baseline[0]), log_softmax(result[0])
    return float(np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=1)))
