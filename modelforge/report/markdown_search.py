"""The optimize search in report.md: the winner line (or the closest candidates), every trial in a table, the
time per stage. Read from report.json's plain `search` dict."""

from __future__ import annotations

from typing import Any

from modelforge.report.format import fmt_bytes, fmt_percent, md_table
from modelforge.report.pareto import closest_candidates, misses, ordered_trials, slo_ms


def _ms(value: float | None) -> str:
    return "n/a" if value is None else (f"{value:.4f} ms" if value < 0.1 else f"{value:.3f} ms")


def winner_line(search: dict[str, Any], closest: bool = True) -> str:
    """One line: the winner and what it measured against the constraints, or that nothing met them (and, with
    `closest`, the candidates that came nearest)."""
    winner = next((t for t in search.get("trials") or [] if t.get("id") == search.get("winner")), None)
    slo = slo_ms(search)
    limit = (search.get("constraints") or {}).get("max_accuracy_drop")
    if winner is None:
        nearest = "; ".join(
            f"`{t['id']}` ({', '.join(misses(t, search)) or t.get('detail') or 'not measured'})"
            for t in (closest_candidates(search) if closest else [])
        )
        return "**No candidate met the constraints**; nothing shipped as passing." + (
            f" Closest: {nearest}." if nearest else ""
        )
    drop = winner.get("accuracy_drop_pp")
    return (
        f"**Winner: `{winner['id']}`**: p99 {_ms(winner.get('latency_p99_ms'))}"
        + (f" (SLO {slo:.3g} ms)" if slo is not None else "")
        + f", accuracy {fmt_percent(winner.get('accuracy'))}"
        + (
            f" ({0.0 - drop:+.2f} pp" + (f", limit -{limit:g} pp)" if limit is not None else ")")
            if drop is not None
            else ""
        )
        + f", {fmt_bytes(winner.get('size_bytes'))}; objective {search.get('objective', '?')}."
    )


def trial_rows(search: dict[str, Any]) -> list[tuple[str, ...]]:
    rows = []
    for t in ordered_trials(search.get("trials") or []):
        drop = t.get("accuracy_drop_pp")
        why = t.get("lost_because") or ""
        rows.append(
            (
                str(t["id"]),
                "n/a" if t.get("prune_ratio") is None else f"{t['prune_ratio']:.0%}",
                str(t.get("fine_tune") or "none"),
                str(t.get("precision", "")),
                str(t.get("runtime", "")),
                "n/a" if t.get("epochs") is None else str(t["epochs"]),
                _ms(t.get("latency_p99_ms")),
                fmt_percent(t.get("accuracy")),
                "n/a" if drop is None else f"{0.0 - drop:+.2f} pp",
                fmt_bytes(t.get("size_bytes")),
                str(t.get("status", "")) + (" (cached)" if t.get("cached") else ""),
                (f"{why}: " if why else "") + str(t.get("detail") or ""),
            )
        )
    return rows


def search_lines(search: dict[str, Any]) -> list[str]:
    """The `## Optimize search` section of report.md."""
    header = ("Trial", "Prune", "Fine-tune", "Precision", "Runtime", "Epochs", "p99", "Accuracy", "Change")
    stages = search.get("stage_seconds") or {}
    stage_rows = [(k.replace("_", " "), f"{v:.1f} s") for k, v in stages.items() if v is not None]
    return [
        "",
        "## Optimize search",
        "",
        winner_line(search),
        "",
        *md_table((*header, "Size", "Status", "Why"), trial_rows(search)),
        "",
        *md_table(("Stage", "Time"), stage_rows),
    ]
