"""Assemble report.json: a flat `summary` CI can read without knowing the passes, the gate records (judged in
modelforge.run.gates: report/ only renders them), and the details."""

from __future__ import annotations

from typing import Any

from modelforge import __version__

REPORT_SCHEMA_VERSION = 2  # 2: gates carry `default`; `warnings`, `summary.original_shipped`

SUMMARY_KEYS = (
    "accuracy_baseline",
    "accuracy_result",
    "accuracy_drop_pp",
    "top1_agreement",
    "output_cosine",
    "latency_p50_ms_baseline",
    "latency_p50_ms_result",
    "speedup",
    "size_bytes_baseline",
    "size_bytes_result",
    "size_ratio",
)

# Metrics of the model's task, in the summary only where the run measured them (a classifier has no pair
# Spearman): macro F1 with class labels, token F1 with token tags, pair Spearman for embeddings given pairs.
TASK_SUMMARY_KEYS = (
    "macro_f1_baseline",
    "macro_f1_result",
    "token_f1_baseline",
    "token_f1_result",
    "pair_spearman_vs_original",
    "pair_spearman_baseline",
    "pair_spearman_result",
)


def build_summary(evaluation: dict[str, Any], size_baseline: int, size_result: int) -> dict[str, Any]:
    metrics = evaluation["metrics"]
    latency = evaluation.get("latency")
    acc_a, acc_b = metrics["accuracy_baseline"], metrics["accuracy_result"]
    return {
        "accuracy_baseline": acc_a,
        "accuracy_result": acc_b,
        # Rounded: (0.99 - 0.985) * 100 is 0.5000000000000004, which would fail a 0.5 pp gate it meets.
        "accuracy_drop_pp": round((acc_a - acc_b) * 100, 9) if acc_a is not None and acc_b is not None else None,
        "top1_agreement": metrics["top1_agreement"],
        "output_cosine": metrics["output_cosine"],
        "latency_p50_ms_baseline": latency["baseline"]["p50_ms"] if latency else None,
        "latency_p50_ms_result": latency["result"]["p50_ms"] if latency else None,
        "speedup": latency["speedup"] if latency else None,
        "size_bytes_baseline": size_baseline,
        "size_bytes_result": size_result,
        "size_ratio": size_baseline / size_result if size_result else None,
        **{key: metrics[key] for key in TASK_SUMMARY_KEYS if metrics.get(key) is not None},
    }


def build_report(
    *,
    recipe: dict[str, Any],
    models: dict[str, Any],
    stages: list[dict[str, Any]],
    preflight: dict[str, Any],
    evaluation: dict[str, Any],
    summary: dict[str, Any],
    gates: list[dict[str, Any]],
    machine: dict[str, Any],
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """`warnings`: what is true of a passed run but must be said loudly (a slower result, a baseline that beat
    the distilled student)."""
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "tool": {"name": "modelforge", "version": __version__},
        "passed": all(g["passed"] for g in gates),
        "summary": summary,
        "gates": gates,
        "warnings": list(warnings or []),
        "models": models,
        "preflight": preflight,
        "stages": stages,
        "evaluation": evaluation,
        "machine": machine,
        "recipe": recipe,
    }
