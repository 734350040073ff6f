"""Compare two reports (A = reference, B = candidate): every summary metric side by side with its delta, a few
detail metrics, and tolerance checks that decide whether B regressed.

A tolerance is checked only when given; a tolerance whose metric is missing from either report fails (like a
gate with no value), so a CI job never passes by not measuring.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from modelforge.errors import InputError
from modelforge.report.format import fmt_bytes, fmt_float, fmt_percent, md_table

# key -> (label, direction: +1 higher is better, -1 lower is better, 0 informational, kind)
SUMMARY_METRICS: dict[str, tuple[str, int, str]] = {
    "accuracy_baseline": ("Top-1 accuracy, baseline", 0, "percent"),
    "accuracy_result": ("Top-1 accuracy, result", 1, "percent"),
    "accuracy_drop_pp": ("Accuracy drop (pp)", -1, "pp"),
    "top1_agreement": ("Top-1 agreement", 1, "percent"),
    "output_cosine": ("Output cosine", 1, "float"),
    "latency_p50_ms_baseline": ("Latency p50, baseline", 0, "ms"),
    "latency_p50_ms_result": ("Latency p50, result", -1, "ms"),
    "speedup": ("Speed-up", 1, "x"),
    "size_bytes_baseline": ("Size, baseline", 0, "bytes"),
    "size_bytes_result": ("Size, result", -1, "bytes"),
    "size_ratio": ("Size ratio", 1, "x"),
}

# Task metrics: in a summary only where that run measured them, so compared only when either report has them.
TASK_SUMMARY_METRICS: dict[str, tuple[str, int, str]] = {
    "macro_f1_baseline": ("Macro F1, baseline", 0, "float"),
    "macro_f1_result": ("Macro F1, result", 1, "float"),
    "token_f1_baseline": ("Token F1, baseline", 0, "float"),
    "token_f1_result": ("Token F1, result", 1, "float"),
    "pair_spearman_vs_original": ("Pair Spearman vs original", 1, "float"),
    "pair_spearman_baseline": ("Pair Spearman vs gold, baseline", 0, "float"),
    "pair_spearman_result": ("Pair Spearman vs gold, result", 1, "float"),
}


def _detail(report: dict[str, Any], *path: str) -> Any:
    node: Any = report.get("evaluation") or {}
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


# Detail metrics read from `evaluation` (absent in older reports: shown as n/a).
DETAIL_METRICS: dict[str, tuple[str, int, str, tuple[str, ...]]] = {
    "latency_p99_ms_result": ("Latency p99, result", -1, "ms", ("latency", "result", "p99_ms")),
    "throughput_per_s_result": ("Throughput, result", 1, "rate", ("latency", "result", "throughput_per_s")),
    "top5_accuracy_result": ("Top-5 accuracy, result", 1, "percent", ("metrics", "top5_accuracy_result")),
    "sqnr_db": ("SQNR (dB)", 1, "float", ("metrics", "sqnr_db")),
    "confidence_mean_result": ("Top-1 confidence mean, result", 1, "percent", ("metrics", "confidence_result", "mean")),
}


@dataclass
class Tolerances:
    """How much worse B may be than A. Percent values are relative to A; pp are percentage points."""

    max_accuracy_drop: float | None = None  # pp of top-1 accuracy of the result
    max_agreement_drop: float | None = None  # pp of top-1 agreement
    max_cosine_drop: float | None = None  # absolute, of the mean output cosine
    max_latency_increase: float | None = None  # % of the result's p50 latency
    max_speedup_drop: float | None = None  # % of the speed-up (machine noise cancels better than raw latency)
    max_size_increase: float | None = None  # % of the result's size
    require_passed: bool = False  # B's own gates must pass


def load_report(path: Path) -> dict[str, Any]:
    """A report.json, or an output directory holding one."""
    file = path / "report.json" if path.is_dir() else path
    if not file.is_file():
        where = f"{path} has no report.json" if path.is_dir() else f"report {path} not found"
        raise InputError(where, hint="pass a report.json or a modelforge output directory")
    try:
        report = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{file} is not valid JSON: {exc}") from None
    if not isinstance(report, dict) or "summary" not in report or "schema_version" not in report:
        raise InputError(f"{file} is not a modelforge report (no schema_version / summary)")
    # What every reader (compare, the renderers) relies on; a damaged file is bad input, not a crash.
    expected = {"schema_version": int, "summary": dict, "passed": bool, "models": dict, "gates": list}
    wrong = [key for key, kind in expected.items() if not isinstance(report.get(key), kind)]
    if wrong or not isinstance(report["models"].get("result"), dict):
        raise InputError(
            f"{file} is not a valid modelforge report ({', '.join(wrong) or 'models.result'} missing or wrong)"
        )
    if "search" in report:  # `modelforge optimize`'s record, read by the renderers as it is
        from modelforge.report.pareto import search_problem

        problem = search_problem(report["search"])
        if problem is not None:
            raise InputError(f"{file} is not a valid modelforge report ({problem})")
    from modelforge.report.build import REPORT_SCHEMA_VERSION

    if report["schema_version"] > REPORT_SCHEMA_VERSION:
        raise InputError(
            f"{file} has report schema {report['schema_version']}, newer than this modelforge reads "
            f"({REPORT_SCHEMA_VERSION})",
            hint="upgrade modelforge",
        )
    return report


def _ratio_pct(a: float | None, b: float | None) -> float | None:
    return None if a in (None, 0) or b is None else (b / a - 1) * 100


def _row(key: str, label: str, direction: int, kind: str, a: Any, b: Any) -> dict[str, Any]:
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    delta = b - a if numeric else None
    status = "n/a"
    if numeric:
        if delta == 0 or direction == 0:
            status = "same" if delta == 0 else "changed"
        else:
            status = "better" if (delta > 0) == (direction > 0) else "worse"
    return {
        "key": key,
        "label": label,
        "kind": kind,
        "direction": direction,
        "a": a,
        "b": b,
        "delta": delta,
        "change_pct": _ratio_pct(a, b) if numeric else None,
        "status": status,
    }


def _checks(a: dict[str, Any], b: dict[str, Any], tol: Tolerances) -> list[dict[str, Any]]:
    sa, sb = a["summary"], b["summary"]

    def diff(key: str, scale: float = 1.0) -> float | None:
        va, vb = sa.get(key), sb.get(key)
        return None if va is None or vb is None else round((va - vb) * scale, 9)  # no float noise at a threshold

    def rel(key: str, invert: bool = False) -> float | None:
        va, vb = sa.get(key), sb.get(key)
        if va in (None, 0) or vb is None:
            return None
        return (1 - vb / va) * 100 if invert else (vb / va - 1) * 100

    rules = {
        "max_accuracy_drop": ("accuracy_result drop (pp)", lambda: diff("accuracy_result", 100)),
        "max_agreement_drop": ("top1_agreement drop (pp)", lambda: diff("top1_agreement", 100)),
        "max_cosine_drop": ("output_cosine drop", lambda: diff("output_cosine")),
        "max_latency_increase": ("latency_p50_ms_result increase (%)", lambda: rel("latency_p50_ms_result")),
        "max_speedup_drop": ("speedup drop (%)", lambda: rel("speedup", invert=True)),
        "max_size_increase": ("size_bytes_result increase (%)", lambda: rel("size_bytes_result")),
    }
    checks = []
    for name, (metric, compute) in rules.items():
        threshold = getattr(tol, name)
        if threshold is None:
            continue
        value = compute()
        checks.append(
            {
                "name": name,
                "metric": metric,
                "threshold": threshold,
                "value": value,
                "passed": value is not None and value <= threshold,
            }
        )
    if tol.require_passed:
        checks.append(
            {
                "name": "require_passed",
                "metric": "B passed its gates",
                "threshold": 1,
                "value": int(b["passed"]),
                "passed": bool(b["passed"]),
            }
        )
    return checks


def compare_reports(a: dict[str, Any], b: dict[str, Any], tolerances: Tolerances | None = None) -> dict[str, Any]:
    tol = tolerances or Tolerances()
    rows = []
    # Extra numeric summary keys are compared too; text (summary.original_shipped) is no metric.
    extra = [k for side in (a, b) for k, v in side["summary"].items() if isinstance(v, int | float | type(None))]
    keys = list(SUMMARY_METRICS) + [k for k in extra if k not in SUMMARY_METRICS]
    for key in dict.fromkeys(keys):
        label, direction, kind = SUMMARY_METRICS.get(key) or TASK_SUMMARY_METRICS.get(key, (key, 0, "float"))
        rows.append(_row(key, label, direction, kind, a["summary"].get(key), b["summary"].get(key)))
    details = []
    for key, (label, direction, kind, path) in DETAIL_METRICS.items():
        details.append(_row(key, label, direction, kind, _detail(a, *path), _detail(b, *path)))
    custom = [*(_detail(a, "metrics", "custom") or {}), *(_detail(b, "metrics", "custom") or {})]
    for spec in dict.fromkeys(custom):
        va, vb = _detail(a, "metrics", "custom", spec), _detail(b, "metrics", "custom", spec)
        if isinstance(va, dict | type(None)) and isinstance(vb, dict | type(None)):
            for name in dict.fromkeys([*(va or {}), *(vb or {})]):
                details.append(
                    _row(
                        f"custom:{spec}:{name}",
                        f"{spec} {name}",
                        0,
                        "float",
                        (va or {}).get(name),
                        (vb or {}).get(name),
                    )
                )
        else:
            details.append(_row(f"custom:{spec}", spec, 0, "float", va, vb))
    checks = _checks(a, b, tol)
    notes = []
    cpu_a = ((a.get("machine") or {}).get("cpu") or {}).get("model")
    cpu_b = ((b.get("machine") or {}).get("cpu") or {}).get("model")
    if cpu_a and cpu_b and cpu_a != cpu_b:
        notes.append(f"measured on different CPUs ({cpu_a} vs {cpu_b}): compare latency with care")
    return {
        "a": {"passed": a["passed"], "result": a["models"]["result"]["path"]},
        "b": {"passed": b["passed"], "result": b["models"]["result"]["path"]},
        "rows": rows,
        "details": details,
        "checks": checks,
        "tolerances": {f.name: getattr(tol, f.name) for f in fields(tol)},
        "notes": notes,
        "passed": all(c["passed"] for c in checks),
    }


def fmt_value(kind: str, value: Any) -> str:
    if value is None:
        return "n/a"
    if kind == "percent":
        return fmt_percent(value)
    if kind == "pp":
        return f"{value:.2f} pp"
    if kind == "ms":
        return f"{value:.4f} ms" if abs(value) < 0.1 else f"{value:.3f} ms"
    if kind == "bytes":
        return fmt_bytes(value)
    if kind == "x":
        return f"{value:.2f}x"
    if kind == "rate":
        return f"{value:,.0f}/s"
    return fmt_float(value, 5)


def fmt_delta(row: dict[str, Any]) -> str:
    delta = row["delta"]
    if delta is None:
        return "n/a"
    kind = row["kind"]
    if kind == "percent":
        text = f"{delta * 100:+.2f} pp"
    elif kind == "bytes":
        text = ("+" if delta >= 0 else "-") + fmt_bytes(abs(int(delta)))
    elif kind == "pp":
        text = f"{delta:+.2f} pp"
    elif kind == "ms":
        text = f"{delta:+.4f} ms"
    elif kind == "x":
        text = f"{delta:+.2f}x"
    elif kind == "rate":
        text = f"{delta:+,.0f}/s"
    else:
        text = f"{delta:+.5g}"
    if row["change_pct"] is not None and kind not in ("percent", "pp"):
        text += f" ({row['change_pct']:+.1f}%)"
    return text


def render_compare_markdown(result: dict[str, Any], a_name: str, b_name: str) -> str:
    verdict = "PASSED" if result["passed"] else "REGRESSED"
    lines = [f"### modelforge compare: {verdict}", "", f"A = `{a_name}`, B = `{b_name}`", ""]
    marks = {"better": ":arrow_up_small: better", "worse": ":small_red_triangle_down: worse"}
    rows = [
        (row["label"], fmt_value(row["kind"], row["a"]), fmt_value(row["kind"], row["b"]), fmt_delta(row))
        + (marks.get(row["status"], ""),)
        for row in result["rows"] + [r for r in result["details"] if r["a"] is not None or r["b"] is not None]
    ]
    lines += md_table(("Metric", "A", "B", "Delta (B - A)", ""), rows)
    if result["checks"]:
        checks = [
            (
                f"{check['name']} ({check['metric']})",
                f"{check['threshold']:g}",
                "n/a" if check["value"] is None else f"{check['value']:.4g}",
                "PASSED" if check["passed"] else "FAILED",
            )
            for check in result["checks"]
        ]
        lines += ["", *md_table(("Tolerance", "Threshold", "Value", "Verdict"), checks)]
    lines += [f"\n> {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"
