"""What a cascade run records: report.json (the usual summary keys, where they apply, and the whole curve under
`cascade`), its Markdown and HTML renderings, baseline_stats.json with the escalation share, the resolved
settings, and the manifest hashing every file (written last)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np


def write_baseline(
    folder: Path, model_file: Path, eval_data: Any, escalated: np.ndarray, threshold: float, settings: Any
) -> None:
    """The export-style baseline of the cascade graph (inputs, top-1 confidence) plus its escalation share."""
    from modelforge.monitoring.baseline import BASELINE_NAME, build_baseline, escalation_record
    from modelforge.safe_files import write_text

    baseline = build_baseline(model_file, None, eval_data, seed=settings.seed, threads=settings.threads)
    baseline["escalation"] = escalation_record(escalated, threshold)
    write_text(folder / BASELINE_NAME, json.dumps(baseline, indent=2) + "\n")


def _gate(name: str, metric: str, threshold: float, value: float | None, passed: bool) -> dict[str, Any]:
    return {
        "name": name,
        "metric": metric,
        "threshold": threshold,
        "value": value,
        "passed": bool(passed),
        "default": False,
    }


def _summary(seen: Any, choice: Any, latency: dict[str, Any], chosen_latency: dict[str, Any], sizes: tuple) -> dict:
    """The flat summary CI reads: baseline = the large model, result = the cascade; speedup on means."""
    large_acc, acc = seen.accuracy("large"), choice.point.accuracy
    large = latency["large"]
    large_size, cascade_size = sizes
    return {
        "accuracy_baseline": large_acc,
        "accuracy_result": acc,
        "accuracy_drop_pp": round((large_acc - acc) * 100, 9) if acc is not None and large_acc is not None else None,
        "top1_agreement": choice.point.agreement_large,
        "output_cosine": None,
        "latency_p50_ms_baseline": large["p50_ms"],
        "latency_p50_ms_result": chosen_latency["p50_ms"],
        "speedup": large["mean_ms"] / chosen_latency["mean_ms"] if chosen_latency["mean_ms"] else None,
        "size_bytes_baseline": large_size,
        "size_bytes_result": cascade_size,
        "size_ratio": large_size / cascade_size if cascade_size else None,
        "latency_mean_ms_baseline": large["mean_ms"],
        "latency_mean_ms_result": chosen_latency["mean_ms"],
        "latency_p99_ms_baseline": large["p99_ms"],
        "latency_p99_ms_result": chosen_latency["p99_ms"],
        "accuracy_small": seen.accuracy("small"),
        "threshold": choice.point.threshold,
        "escalated_share": choice.point.escalated_share,
    }


def _judge(settings: Any, choice: Any, summary: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    """The rule as a gate; a latency choice made between measured points is judged on its own measurement."""
    if choice.rule == "max_accuracy_drop":
        gate = _gate(
            "max_accuracy_drop",
            "accuracy_drop_pp",
            settings.max_accuracy_drop,
            summary["accuracy_drop_pp"],
            choice.target_met,
        )
        return choice, [gate]
    if choice.rule == "max_mean_latency_ms":
        measured = summary["latency_mean_ms_result"]
        met = measured <= settings.max_mean_latency_ms
        if not met and choice.target_met:
            detail = f"{choice.detail}; measured {measured:.4g} ms at the chosen threshold, over the limit"
            choice = replace(choice, target_met=False, detail=detail)
        gate = _gate("max_mean_latency_ms", "latency_mean_ms_result", settings.max_mean_latency_ms, measured, met)
        return choice, [gate]
    return choice, []


def build_cascade_report(settings, small_in, large_in, seen, choice, latency, check, model_file) -> dict[str, Any]:
    from modelforge.machine import machine_record
    from modelforge.model.onnx_model import onnx_artifact
    from modelforge.report.build import build_report
    from modelforge.run.records import json_safe, model_record

    chosen = choice.point
    chosen_latency = next(c for c in latency["cascade"] if c["threshold"] == chosen.threshold)
    result = onnx_artifact(model_file)
    sizes = (large_in.baseline.size_bytes(), result.size_bytes())
    summary = _summary(seen, choice, latency, chosen_latency, sizes)
    choice, gates = _judge(settings, choice, summary)
    cascade = {
        "version": 1,
        "confidence": settings.confidence,
        "rule": choice.rule,
        "rule_detail": choice.detail,
        "target_met": choice.target_met,
        "chosen": {**chosen.to_dict(), "mean_ms": chosen_latency["mean_ms"], "p99_ms": chosen_latency["p99_ms"]},
        "small": {"path": str(settings.small), "accuracy": seen.accuracy("small"), **latency["small"]},
        "large": {"path": str(settings.large), "accuracy": seen.accuracy("large"), **latency["large"]},
        "curve": [p.to_dict() for p in seen.points],
        "latency": latency,
        "check": check,
        "threshold_input": "cascade_threshold",
        "outputs": [o.name for o in result.io.outputs],
    }
    metrics = {
        "samples": check["rows"],
        "accuracy_baseline": summary["accuracy_baseline"],
        "accuracy_result": summary["accuracy_result"],
        "top1_agreement": chosen.agreement_large,
        "output_cosine": None,
    }
    formats = (small_in.source.format, large_in.source.format)
    frameworks = ("torch", "onnxscript") if any(f != "onnx" for f in formats) else ()
    report = build_report(
        recipe={"command": "cascade", **settings.to_json()},
        models={
            "source": str(settings.large),
            "baseline": model_record(large_in.baseline, settings.large, large_in.source.format),
            "small": model_record(small_in.baseline, settings.small, small_in.source.format),
            "result": model_record(result, settings.output / model_file.name),
        },
        stages=[*small_in.stages, *large_in.stages],
        preflight={},
        evaluation={"data": f"eval data {settings.eval_data}", "metrics": metrics, "latency": None},
        summary=summary,
        gates=gates,
        machine=machine_record(frameworks + (("openvino",) if settings.target == "openvino" else ())),
    )
    report["cascade"] = cascade
    return json_safe(report)


def write_records(folder: Path, settings, small_in, large_in, seen, choice, latency, check) -> dict[str, Any]:
    """report.json/md/html, the resolved settings (the cascade is a command, not a pass chain: no recipe form),
    and the manifest hashing every file (last). Returns the report."""
    from modelforge.manifest import MANIFEST_NAME, build_manifest
    from modelforge.report.cascade import render_cascade_html, render_cascade_markdown
    from modelforge.run.records import json_default
    from modelforge.safe_files import write_text

    report = build_cascade_report(settings, small_in, large_in, seen, choice, latency, check, folder / "model.onnx")
    write_text(folder / "report.json", json.dumps(report, indent=2, allow_nan=False, default=json_default) + "\n")
    write_text(folder / "report.md", render_cascade_markdown(report))
    write_text(folder / "report.html", render_cascade_html(report))
    write_text(folder / "cascade.resolved.json", json.dumps(settings.to_json(), indent=2) + "\n")
    data = {"eval_data": large_in.data.sha256(settings.eval_data)}
    manifest = build_manifest(folder, {"command": "cascade", **settings.to_json()}, data, report["machine"]["versions"])
    write_text(folder / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    return report
