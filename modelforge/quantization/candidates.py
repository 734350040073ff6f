"""A second candidate when static INT8 does not ship: dynamic INT8 on the dense layers' weights.

Static INT8 with the sensitive nodes (norms, then what the accuracy fallback picks) in float is one way to
quantize a model that mixes convolutions, LayerNorms and dense layers; on some such models it cannot meet
the gates without keeping so much in float that it is slower than float (issue 19: a byte classifier at
0.92x). Dynamic INT8 quantizes only the MatMul/Gemm weights and computes activation ranges at run time, so
every activation stays exact up to one rounding per dense layer; it is judged the way the transformer
family's scheme is (the gates through the accuracy fallback, then never slower than float), and ships only
when it passes both.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelforge.quantization.schemes import Scheme
    from modelforge.quantization.speed import LatencyJudge
    from modelforge.quantization.state import FlowState

# Records the dynamic candidate's own fallback and speed check overwrite; restored when it does not ship.
_RECORDS = ("fallback", "float_nodes", "speed_search", "speedup_vs_float")
_INTEGER_OPS = {"DynamicQuantizeMatMul", "MatMulInteger", "MatMulIntegerToFloat"}


def dynamic_candidate(
    state: FlowState, original: Path, prepared: Path, current: Path, scheme: Scheme, judge: LatencyJudge | None
) -> Path:
    """The model to ship: `current` (the static result, or `original` for float) unless dynamic INT8 on the
    dense layers meets the gates and is faster than float. The flow's fallback and speed check are reused;
    the decision is recorded under `candidates`."""
    from modelforge.quantization.qdq import write_dynamic_model
    from modelforge.quantization.schemes import DENSE_OPS
    from modelforge.quantization.search import accuracy_fallback, never_slower

    cfg, budget = state.config, state.inputs.budget
    if scheme.mode != "static" or scheme.target != "cpu" or cfg.mode != "auto" or cfg.op_types:
        return current  # a scheme the user chose is not second-guessed
    skeleton = state.graph(prepared)
    weights = {t.name for t in skeleton.graph.initializer}
    if not any(n.op_type in DENSE_OPS and n.input[1:2] and n.input[1] in weights for n in skeleton.graph.node):
        return current
    metrics: dict[str, Any] = state.record
    if (metrics.get("fallback") or {}).get("stopped"):
        return current  # the search ran out of its time budget or was interrupted: no second search after it
    if current == original:
        static_outcome = (metrics.get("speed_search") or {}).get("reason", "not faster than float")
    else:
        static_outcome = f"gates not met: {metrics['fallback']['reason']}"
    dynamic = replace(
        scheme,
        mode="dynamic",
        op_types=DENSE_OPS,
        constant_weights_only=True,
        inputs_only=False,
        dynamic_op_types=(),
        why=scheme.why + "; static INT8 did not ship: dynamic int8 on MatMul/Gemm weights (activations exact)",
    )
    path = state.workdir / "model-dynamic.onnx"
    written = write_dynamic_model(prepared, path, dynamic, list(cfg.exclude_nodes), state.name).model
    if not any(n.op_type in _INTEGER_OPS for n in written.graph.node):
        return current  # onnxruntime's dynamic quantizer skipped every dense layer: nothing here to judge
    state.keep(path, written)
    saved = {key: metrics.get(key) for key in _RECORDS}
    if current == state.workdir / "model-fallback.onnx":  # the dynamic candidate's fallback writes there too
        state.forget(current)
        current = current.rename(state.workdir / "model-static-fallback.onnx")
    outcome = "shipped"
    if cfg.fallback and budget.active and state.inputs.evaluation is not None:
        path = accuracy_fallback(state, prepared, path, dynamic, list(cfg.exclude_nodes))
        if not metrics["fallback"]["met"]:
            outcome = f"gates not met: {metrics['fallback']['reason']}"
    if outcome == "shipped" and judge is not None:
        metrics.pop("speed_search", None)
        path = never_slower(state, original, path, judge)
        if path == original:
            outcome = metrics["speed_search"]["reason"]
    shipped = outcome == "shipped"
    state.put(
        "candidates",
        [
            {"scheme": scheme.describe(), "shipped": False, "outcome": static_outcome},
            {"scheme": dynamic.describe(), "shipped": shipped, "outcome": outcome},
        ],
    )
    if not shipped:  # the static result and its records stand
        for key, value in saved.items():
            if value is None:
                metrics.pop(key, None)
            else:
                metrics[key] = value
        return current
    state.put("scheme", dynamic.record())
    if judge is not None:
        metrics["speed_search"] = shipped_dynamic_record(saved["speed_search"], metrics["speed_search"], static_outcome)
    state.log(f"quantize: static INT8 did not ship ({static_outcome}); dynamic INT8 on dense layers ships")
    return path


def shipped_dynamic_record(
    static: dict[str, Any] | None, dynamic: dict[str, Any], static_outcome: str
) -> dict[str, Any]:
    """The speed record when the dynamic candidate ships: the static search's steps stay on record, but the
    verdict, the speed-up and its interval are the dynamic model's own comparison with float (the static one's
    go under `static_ship`), so that the record never pairs "quantized shipped" with a losing interval."""
    static = dict(static or {})
    static_ship = {key: static.pop(key, None) for key in ("decision", "speedup_vs_float", "ship_interval")}
    speedup = dynamic.get("speedup_vs_float")
    return {
        **static,
        "static_ship": static_ship,
        "shipped": "quantized",
        "scheme": "dynamic",
        "decision": dynamic.get("decision"),
        "speedup_vs_float": speedup,
        "ship_interval": dynamic.get("ship_interval"),
        "reason": f"static INT8 did not ship ({static_outcome}); dynamic INT8 on the dense layers: {speedup}x",
    }
