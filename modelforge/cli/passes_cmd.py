"""`modelforge passes`: the registered passes, built-in and from plugins."""

from __future__ import annotations


def passes() -> None:
    """List the available passes with what they accept and produce."""
    from rich.markup import escape
    from rich.table import Table

    from modelforge.cli.console import out_console
    from modelforge.passes import available_passes, broken_plugins

    table = Table(title="modelforge passes")
    for column in ("Pass", "Accepts", "Produces", "Description"):
        table.add_column(column)
    for name, cls in available_passes().items():
        table.add_row(name, ", ".join(cls.accepts), cls.produces, cls.description)
    out_console.print(table)
    for name, reason in broken_plugins().items():
        out_console.print(f"[yellow]not loaded:[/yellow] {escape(name)}: {escape(reason)}")
