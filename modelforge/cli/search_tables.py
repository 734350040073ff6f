"""What `modelforge optimize` prints: the finalists and the winner, or the closest candidates when nothing met
the constraints, then how many trials lost and why, and the time per stage. Read from the plain `search` dict
that report.json holds, fitted to the terminal like every other table (numbers whole, names wrap)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich import box
from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def _table(title: str, rows: list[dict[str, Any]], last: str, last_cell) -> Table:
    from modelforge.report.format import fmt_bytes, fmt_percent

    table = Table(title=escape(title), box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    columns = ("Trial", "Prune", "Tune", "Prec.", "Runtime", "p50 ms", "p99 ms", "Acc.", "Acc. pp", "Size", last)
    for column in columns:
        left = column in ("Trial", "Tune", "Prec.", "Runtime", last)
        table.add_column(column, justify="left" if left else "right")
    for t in rows:
        drop = t.get("accuracy_drop_pp")
        style = "bold green" if t.get("status") == "winner" else None
        table.add_row(
            escape(str(t["id"])),
            _num(t.get("prune_ratio"), "{:.0%}"),
            str(t.get("fine_tune") or "none"),
            str(t.get("precision", "")),
            str(t.get("runtime", "")),
            _num(t.get("latency_p50_ms"), "{:.3f}"),
            _num(t.get("latency_p99_ms"), "{:.3f}"),
            fmt_percent(t.get("accuracy")),
            _num(None if drop is None else 0.0 - drop, "{:+.2f}"),
            fmt_bytes(t.get("size_bytes")),
            escape(last_cell(t)),
            style=style,
        )
    return table


def _status(trial: dict[str, Any]) -> str:
    """winner, finalist, or why a finalist lost (slo, accuracy gate, dominated, ...)."""
    lost = trial.get("lost_because")
    return str(lost).replace("_", " ") if lost and trial.get("status") != "winner" else str(trial.get("status"))


def optimize_tables(search: dict[str, Any], width: int | None = None) -> list[RenderableType]:
    """The renderables `optimize` prints, fitted to `width` columns (the terminal's by default): the finalists
    with the winner in bold (or the closest candidates and what each misses), the winner line, the count of
    trials lost by reason, and the time per stage."""
    from modelforge.cli.console import out_console
    from modelforge.cli.tables import fit, left_out_note
    from modelforge.report.markdown_search import winner_line
    from modelforge.report.pareto import closest_candidates, misses, ordered_trials

    width = width or out_console.width
    trials = search.get("trials") or []
    out: list[RenderableType] = []
    drop_order = ("p50 ms", "Size", "Acc.", "Tune")
    if search.get("winner") is not None:
        finalists = [t for t in ordered_trials(trials) if t.get("status") in ("winner", "finalist")]
        table, dropped = fit(
            _table("Finalists (measured interleaved)", finalists, "Status", _status), width, drop_order
        )
    else:
        closest = list(closest_candidates(search))
        table, dropped = fit(
            _table(
                "No candidate met the constraints: the closest",
                closest,
                "Misses",
                lambda t: "; ".join(misses(t, search)) or str(t.get("detail") or ""),
            ),
            width,
            drop_order,
        )
    out.append(table)
    note = left_out_note(dropped, "see report.html or search.json")
    if note is not None:
        out.append(note)
    out.append(Text(winner_line(search, closest=False).replace("**", "").replace("`", "")))
    lost = Counter(
        str(t.get("lost_because") or "?")
        for t in trials
        if t.get("status") == "lost" or (t.get("status") != "winner" and t.get("lost_because"))
    )
    if lost:
        out.append(
            Text(
                f"{len(trials)} trials; lost: "
                + ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in lost.most_common())
                + (
                    f"; {sum(1 for t in trials if t.get('cached'))} from the cache"
                    if any(t.get("cached") for t in trials)
                    else ""
                )
            )
        )
    stages = search.get("stage_seconds") or {}
    if stages:
        out.append(
            Text("Time: " + ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in stages.items() if v is not None))
        )
    return out
