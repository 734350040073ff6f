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
        if task.total is None:
            return Text(str(int(task.completed)), style="progress.download")
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
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
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
    from modelforge.report.format import gate_rows, summary_rows

    table = Table(title="modelforge summary", show_lines=False)
    for column in ("Metric", "Baseline", "Result", "Change"):
        table.add_column(column, justify="left" if column == "Metric" else "right")
    for row in summary_rows(report["summary"]):
        table.add_row(*row)
    for name, threshold, value, verdict in gate_rows(report["gates"]):
        color = "green" if verdict == "PASSED" else "red"
        table.add_row(f"gate {name}", f"threshold {threshold}", value, f"[{color}]{verdict}[/{color}]")
    return table
