"""`modelforge cache info|clear`: the stage cache (set its folder with MODELFORGE_CACHE_DIR)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

cache_app = typer.Typer(help="Inspect or clear the stage cache (folder: $MODELFORGE_CACHE_DIR or ~/.cache/modelforge).")


@cache_app.command("info")
def cache_info(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Where the cache is, how many stage results it holds and their size."""
    from modelforge.report.format import fmt_bytes
    from modelforge.run import cache

    state = cache.info()
    if as_json:
        typer.echo(json.dumps(state, indent=2))
    else:
        typer.echo(f"{state['path']}: {state['entries']} stage results, {fmt_bytes(state['size_bytes'])}")


@cache_app.command("clear")
def cache_clear() -> None:
    """Delete every cached stage result."""
    from modelforge.run import cache

    typer.echo(f"removed {cache.clear()} stage results")
