"""The terminal table `modelforge optimize` shows when no candidate meets the constraints (the full search tables
are the report helpers': this one needs only the closest rows)."""

from __future__ import annotations


def closest_table(rows: list[dict]):
    """The candidates nearest to meeting the constraints, when none does (a small rich table)."""
    from rich.table import Table

    def num(value, fmt: str) -> str:
        return "n/a" if value is None else format(value, fmt)

    table = Table(title="Closest candidates (none meets every constraint)", title_justify="left")
    for column in ("candidate", "p99 ms", "accuracy", "drop pp", "misses"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["id"],
            num(row["latency_p99_ms"], ".3f"),
            num(row["accuracy"], ".4f"),
            num(row["accuracy_drop_pp"], ".2f"),
            row["detail"],
        )
    return table
