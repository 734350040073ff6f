"""What a run's verdict must say beyond its gates: the original shipped unchanged, a slower result, a baseline
that beat the distilled student. Each is true of a passed run too, so it is said, never silently dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# A result measured slower than this (baseline p50 / result p50) is reported as slower: the band above it is
# within the noise of two interleaved measurements of the same file on a busy machine.
SLOWER_THAN = 0.95


def same_file(a: Path, b: Path) -> bool:
    """The result is the original's bytes (a pass shipped its input unchanged)."""
    from modelforge.manifest import file_sha256

    try:
        return a.stat().st_size == b.stat().st_size and file_sha256(a) == file_sha256(b)
    except OSError:
        return False


def why_original_shipped(stages: list[dict[str, Any]]) -> str:
    """The reason a pass recorded for handing its input on unchanged (speed-aware refusal, fallback)."""
    for stage in reversed(stages):
        metrics = stage.get("metrics") or {}
        speed = metrics.get("speed_search") or {}
        if speed.get("shipped") == "float" and speed.get("reason"):
            return str(speed["reason"])
        auto = metrics.get("auto")
        if isinstance(auto, dict) and auto.get("why"):  # target auto: no candidate beat the original
            return str(auto["why"])
        fallback = metrics.get("fallback") or {}
        if fallback.get("reason") and not fallback.get("met", True):
            return str(fallback["reason"])
    return "no pass changed the model"


def mark_original_shipped(summary: dict[str, Any], stages: list[dict[str, Any]]) -> None:
    """The same file measured twice has no speed-up or size ratio: those figures are removed and the summary says
    that the original shipped, and why."""
    summary["original_shipped"] = why_original_shipped(stages)
    for key in ("speedup", "size_ratio"):
        summary[key] = None


def run_warnings(
    summary: dict[str, Any], stages: list[dict[str, Any]], runtimes: dict[str, Any] | None = None
) -> list[str]:
    """Warnings for the terminal and report.json's `warnings`; `runtimes`: the evaluation's, to name them."""
    warnings = []
    speedup = summary.get("speedup")
    if speedup is not None and speedup < SLOWER_THAN:
        where = {side: _runtime_name((runtimes or {}).get(side)) for side in ("baseline", "result")}
        warnings.append(
            f"the result{where['result']} is {1 / speedup:.2f}x SLOWER than the original{where['baseline']} on this "
            f"machine (p50 {summary['latency_p50_ms_result']:.3f} ms vs {summary['latency_p50_ms_baseline']:.3f} ms); "
            "gate it with --min-speedup to fail the run"
        )
    for stage in stages:
        gain = (stage.get("metrics") or {}).get("gain_over_baseline_pp")
        if isinstance(gain, int | float) and gain < 0:
            warnings.append(
                f"{stage['name']}: the label-only baseline beat the distilled student by {-gain:.2f} pp "
                "(training the student on labels alone did better)"
            )
    return warnings


def _runtime_name(info: dict[str, Any] | None) -> str:
    """' (openvino fp32)', or nothing when the evaluation recorded no runtime."""
    if not info or not info.get("runtime"):
        return ""
    return f" ({' '.join(str(v) for v in (info['runtime'], info.get('precision')) if v)})"
