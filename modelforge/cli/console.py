"""Terminal output: rich progress bars and tables on stderr, so stdout stays clean for --json."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from modelforge.progress import Progress as ProgressChannel

err_console = Console(stderr=True)
out_console = Console()


class CountColumn(ProgressColumn):
    """`done/total` where the total is known; the plain count where it is not (no fake `/?` or total)."""

    def __init__(self) -> None:
        super().__init__()
        self._bounded = MofNCompleteColumn()

    def render(self, task) -> Text:
        if task.total is None:  # a step of unknown length that counts nothing shows no count at all (no "0")
            return Text(str(int(task.completed)) if task.completed else "", style="progress.download")
        return self._bounded.render(task)


class RichProgress(ProgressChannel):
    """Renders pass and evaluation progress as rich progress bars (quiet: renders nothing)."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self._bar: Progress | None = None
        self._task = None

    def start(self, description: str, total: int | None) -> None:
        if self.quiet:
            return
        # A bar only where there is a total to fill: a step of unknown length shows its name, any count it
        # makes (latency runs) and the time it took, never an empty bar over a count of 0.
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            *([BarColumn()] if total is not None else []),
            CountColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(description, total=total)

    def advance(self, amount: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, amount)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def log(self, message: str) -> None:
        if not self.quiet:  # plain text: node names and paths may hold [brackets]
            err_console.print(message, markup=False, highlight=False)


def summary_table(report: dict[str, Any]) -> Table:
    from modelforge.cli.tables import whole_numbers
    from modelforge.report.format import gate_rows, summary_rows

    table = Table(title="modelforge summary", show_lines=False)
    for column in ("Metric", "Baseline", "Result", "Change"):
        table.add_column(column, justify="left" if column == "Metric" else "right")
    for row in summary_rows(report["summary"]):
        table.add_row(*row)
    for name, threshold, value, verdict in gate_rows(report["gates"]):
        color = "green" if verdict == "PASSED" else "red"
        table.add_row(f"gate {name}", f"threshold {threshold}", value, f"[{color}]{verdict}[/{color}]")
    return whole_numbers(table)  # at 80 columns (CI logs) long gate names wrap, numbers stay whole


def auto_table(report: dict[str, Any], width: int | None = None) -> list[Any]:
    """The `target: auto` table of a report, and why each candidate lost (nothing when no stage chose a target
    by measurement). Fitted to `width` columns (the terminal's; numbers whole, p99, size and cosine left out
    when too narrow); the reasons follow the table as lines."""
    from rich import box
    from rich.console import Group
    from rich.text import Text

    from modelforge.cli.tables import fit, left_out_note
    from modelforge.report.format import fmt_bytes

    width = width or out_console.width

    shown = []
    for stage in report.get("stages", []):
        auto = stage.get("metrics", {}).get("auto")
        if not isinstance(auto, dict):
            continue
        chosen = auto["chosen"]
        label = f"{chosen['precision']}-{chosen['scheme']}" if chosen.get("scheme") else chosen["precision"]
        table = Table(
            title=f"target auto: {chosen['runtime']} {label} chosen",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            collapse_padding=True,
        )
        for column in ("Runtime", "Prec.", "p50 ms", "p99 ms", "Speed-up", "Cosine", "Acc. pp", "Size", "Verdict"):
            left = column in ("Runtime", "Prec.", "Verdict")
            table.add_column(column, justify="left" if left else "right")
        reasons = [Text(auto["why"])]
        for row in auto["candidates"]:
            table.add_row(
                row["runtime"],
                row["precision"],
                _num(row["latency_p50_ms"], "{:.3f}"),
                _num(row["latency_p99_ms"], "{:.3f}"),
                _num(row["speedup"], "{:.2f}x"),
                _num(row["output_cosine"], "{:.5f}"),
                _num(None if row["accuracy_drop_pp"] is None else -row["accuracy_drop_pp"], "{:+.2f}"),
                fmt_bytes(row["size_bytes"]),
                row["verdict"],
            )
            if row.get("reason"):
                reasons.append(Text(f"{row['runtime']} {row['precision']} lost: {row['reason']}"))
        for row in auto["not_measured"]:
            reasons.append(Text(f"{row['runtime']} {row['precision']} not measured: {row['why']}"))
        table, dropped = fit(table, width, ("p99 ms", "Size", "Cosine"))
        note = left_out_note(dropped, "see report.json or report.html")
        shown.append(Group(table, *filter(None, [note]), *reasons))
    return shown


def _num(value: float | None, form: str) -> str:
    return "" if value is None else form.format(value)
