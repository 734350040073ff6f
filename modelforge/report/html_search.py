"""The optimize search in report.html: the Pareto chart (p99 latency vs accuracy, size as the bubble's area,
the SLO, the front, the winner and the baseline), every trial in a table with why it lost, and the time per
stage. Drawn from report.json's plain `search` dict (nothing here imports the search engine)."""

from __future__ import annotations

from html import escape
from typing import Any

from modelforge.report.charts.bars import hbars
from modelforge.report.charts.scatter import Mark, pareto_scatter
from modelforge.report.format import fmt_bytes, fmt_percent
from modelforge.report.html_cells import data_value, fmt_ms, html_table, td
from modelforge.report.pareto import closest_candidates, misses, ordered_trials, pareto_front, slo_ms, speedup_p50_ms

LOST_BECAUSE = {
    "slo": "misses the SLO",
    "accuracy_gate": "accuracy gate",
    "dominated": "dominated",
    "stopped_early": "stopped early",
    "budget": "time budget",
    "failed": "failed",
}


def _pct(value: float | None) -> float | None:
    return None if value is None else 100 * value


def _hover(trial: dict[str, Any]) -> str:
    parts = [str(trial.get("id"))]
    if trial.get("latency_p99_ms") is not None:
        parts.append(f"p99 {fmt_ms(trial['latency_p99_ms'])}")
    if trial.get("accuracy") is not None:
        parts.append(f"accuracy {fmt_percent(trial['accuracy'])}")
    if trial.get("size_bytes") is not None:
        parts.append(fmt_bytes(trial["size_bytes"]))
    status = trial.get("status", "")
    if trial.get("lost_because"):
        status += f" ({trial['lost_because']})"
    return ", ".join(parts) + f": {status}" + (f"; {trial['detail']}" if trial.get("detail") else "")


def _drawn_status(trial: dict[str, Any]) -> str:
    """winner, finalist or lost: a finalist that lost (a reason is set) is drawn grey like every loser."""
    status = str(trial.get("status", "lost"))
    return "lost" if status != "winner" and trial.get("lost_because") else status


def search_chart(search: dict[str, Any]) -> str:
    """The Pareto chart of every trial with a p99 latency (those without accuracy as ticks on the x axis)."""
    trials = search.get("trials") or []
    front = {id(t) for t in pareto_front(trials)}
    marks = [
        Mark(
            str(t["id"]),
            t["latency_p99_ms"],
            _pct(t.get("accuracy")),
            t.get("size_bytes"),
            _drawn_status(t),
            front=id(t) in front,
            label=_hover(t),
        )
        for t in trials
        if t.get("latency_p99_ms") is not None
    ]
    baseline = search.get("baseline") or {}
    if baseline.get("latency_p99_ms") is not None and baseline.get("accuracy") is not None:
        marks.append(
            Mark(
                "baseline",
                baseline["latency_p99_ms"],
                _pct(baseline["accuracy"]),
                baseline.get("size_bytes"),
                "baseline",
                label=f"baseline: p99 {fmt_ms(baseline['latency_p99_ms'])}, accuracy "
                f"{fmt_percent(baseline['accuracy'])}, {fmt_bytes(baseline.get('size_bytes'))}",
            )
        )
    if not marks:
        return '<p class="note">No trial had its latency measured.</p>'
    slo = slo_ms(search)
    constraints = search.get("constraints") or {}
    gate = None
    max_drop = constraints.get("max_accuracy_drop")
    if max_drop is not None and baseline.get("accuracy") is not None:
        gate = (100 * baseline["accuracy"] - max_drop, f"accuracy gate: -{max_drop:g} pp")
    return pareto_scatter(
        marks,
        title="Candidates: p99 latency vs accuracy (area = size)",
        x_label=f"p99 latency at batch {constraints.get('batch_size', '?')}, {constraints.get('threads', '?')} "
        "threads (ms)",
        y_label="accuracy (%)",
        x_limit=(slo, f"SLO p99 ≤ {slo:.3g} ms") if slo is not None else None,
        y_limit=gate,
    )


def _cell(value: Any, fmt: str = "{}") -> str:
    return "n/a" if value is None else fmt.format(value)


def trial_table(search: dict[str, Any]) -> str:
    """Every trial: what it was, what it measured, its status and why it lost (with the one-line detail)."""
    rows = []
    for t in ordered_trials(search.get("trials") or []):
        trial_id = str(t["id"])
        status = str(t.get("status", ""))
        why = LOST_BECAUSE.get(str(t.get("lost_because")), t.get("lost_because") or "")
        pill = {"winner": "pass", "finalist": "hot"}.get(status, "info")
        cached = ' <span class="pill info">cached</span>' if t.get("cached") else ""
        drop = t.get("accuracy_drop_pp")
        rows.append(
            [
                td(trial_id),
                td(_cell(t.get("prune_ratio"), "{:.0%}"), f"trial.{trial_id}.prune_ratio", t.get("prune_ratio")),
                td(str(t.get("fine_tune") or "none")),
                td(str(t.get("precision", ""))),
                td(str(t.get("runtime", ""))),
                td(_cell(t.get("epochs")), f"trial.{trial_id}.epochs", t.get("epochs")),
                td(fmt_ms(t.get("latency_p50_ms")), f"trial.{trial_id}.latency_p50_ms", t.get("latency_p50_ms")),
                td(fmt_ms(t.get("latency_p99_ms")), f"trial.{trial_id}.latency_p99_ms", t.get("latency_p99_ms")),
                td(fmt_percent(t.get("accuracy")), f"trial.{trial_id}.accuracy", t.get("accuracy")),
                td(
                    _cell(None if drop is None else 0.0 - drop, "{:+.2f} pp"),
                    f"trial.{trial_id}.accuracy_drop_pp",
                    drop,
                ),
                td(fmt_bytes(t.get("size_bytes")), f"trial.{trial_id}.size_bytes", t.get("size_bytes")),
                f'<td class="left" data-trial-status="{escape(status)}"><span class="pill {pill}">'
                f"{escape(status)}</span>{cached}</td>",
                f'<td class="left" data-lost-because="{data_value(t.get("lost_because"))}"><b>{escape(why)}</b>'
                + (f" {escape(str(t['detail']))}" if t.get("detail") else "")
                + "</td>",
            ]
        )
    header = ["Trial", "Prune", "Fine-tune", "Precision", "Runtime", "Epochs", "p50", "p99", "Accuracy", "Change"]
    table = html_table([*header, "Size", "Status", "Why"], rows, cls="trials")
    for name in ("Fine-tune", "Precision", "Runtime", "Status", "Why"):
        table = table.replace(f"<th>{name}</th>", f'<th class="left">{name}</th>', 1)
    # Each row names its trial, so a reader (or a test) can find it without counting rows.
    for t in ordered_trials(search.get("trials") or []):
        table = table.replace(
            f"<tr><td>{escape(str(t['id']))}</td>",
            f'<tr data-trial="{escape(str(t["id"]))}"><td>{escape(str(t["id"]))}</td>',
            1,
        )
    return table


def _verdict(search: dict[str, Any]) -> str:
    trials = search.get("trials") or []
    winner = next((t for t in trials if t.get("id") == search.get("winner")), None)
    if winner is not None:
        drop = winner.get("accuracy_drop_pp")
        return (
            f'<p data-winner="{escape(str(winner["id"]))}">Winner: <code>{escape(str(winner["id"]))}</code>, p99 '
            f"{escape(fmt_ms(winner.get('latency_p99_ms')))}, accuracy {escape(fmt_percent(winner.get('accuracy')))}"
            + (f" ({0.0 - drop:+.2f} pp)" if drop is not None else "")
            + f", {escape(fmt_bytes(winner.get('size_bytes')))}; chosen by {escape(str(search.get('objective')))} "
            "among the candidates that met every constraint.</p>"
        )
    closest = closest_candidates(search)
    items = "".join(
        f"<li><code>{escape(str(t['id']))}</code>: {escape('; '.join(misses(t, search)) or str(t.get('detail', '')))}"
        "</li>"
        for t in closest
    )
    return '<p data-winner="">No candidate met the constraints: nothing was shipped as passing.</p>' + (
        f"<p>Closest candidates:</p><ul>{items}</ul>" if items else ""
    )


def _constraints_text(search: dict[str, Any]) -> str:
    c = search.get("constraints") or {}
    parts = []
    if c.get("latency_p99_ms") is not None:
        parts.append(f"p99 ≤ {c['latency_p99_ms']:g} ms")
    if c.get("speedup") is not None:
        p50 = speedup_p50_ms(search)
        parts.append(f"speed-up ≥ {c['speedup']:g}x" + (f" (p50 ≤ {p50:.3g} ms)" if p50 is not None else ""))
    if c.get("max_accuracy_drop") is not None:
        parts.append(f"accuracy drop ≤ {c['max_accuracy_drop']:g} pp")
    where = search.get("measured_on") or {}
    machine = ", ".join(str(where[k]) for k in ("cpu", "isa") if where.get(k))
    return (
        f"Constraints: {', '.join(parts) or 'none'} at batch {c.get('batch_size', '?')}, {c.get('threads', '?')} "
        f"threads; objective: {search.get('objective', '?')}. Latency measured on "
        f"{where.get('node', 'the driver')}" + (f" ({machine})" if machine else "") + ", finalists interleaved."
    )


def stage_chart(search: dict[str, Any]) -> str:
    stages = {k: v for k, v in (search.get("stage_seconds") or {}).items() if k != "total" and v is not None}
    if not stages:
        return ""
    total = (search.get("stage_seconds") or {}).get("total")
    chart = hbars(
        "search-stages", [(k.replace("_", " "), float(v)) for k, v in stages.items()], title="Time per stage", unit="s"
    )
    ray = search.get("ray") or {}
    ray_text = (
        f"Ray {ray.get('address', 'local')}, {ray.get('nodes', '?')} node(s), {ray.get('scheduler', '?')} scheduler"
        + (
            f" (max {ray['max_epochs']} epochs, reduction factor {ray.get('reduction_factor', '?')})"
            if ray.get("max_epochs")
            else ""
        )
        + "."
        if ray
        else ""
    )
    total_text = f"Total {total:.1f} s. " if total is not None else ""
    return f'{chart}<p class="note">{escape(total_text + ray_text)}</p>'


def search_section(report: dict[str, Any]) -> str:
    search = report.get("search")
    if not isinstance(search, dict):
        return ""
    trials = search.get("trials") or []
    cached = sum(1 for t in trials if t.get("cached"))
    count = f"{len(trials)} trials" + (f", {cached} from the cache" if cached else "")
    return (
        f'<section id="search"><h2>Optimize search ({escape(count)})</h2>'
        f'{_verdict(search)}<p class="note">{escape(_constraints_text(search))}</p>'
        f"{search_chart(search)}"
        '<h3>Every trial</h3><p class="note">The ringed bubbles joined by a line are the Pareto front (no '
        "other trial is both faster and more accurate). A trial lost to the SLO, the accuracy gate, a dominating "
        "trial, ASHA stopping it early, the time budget, or a failure; fine-tuning trials are measured in torch "
        "(accuracy only), the quantized finalists on their runtime.</p>"
        f'<div style="overflow-x:auto">{trial_table(search)}</div>'
        f"<h3>Time per stage</h3>{stage_chart(search)}</section>"
    )
