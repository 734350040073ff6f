"""`modelforge run RECIPE.yaml`: run a recipe file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelforge.cli.options import GateOptions
from modelforge.report.ci import with_error_outputs


@with_error_outputs
def run(
    recipe_file: Annotated[Path, typer.Argument(metavar="RECIPE", help="Recipe YAML (see recipes/).")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Override the recipe's output.dir.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output directory.")] = False,
    cache: Annotated[
        bool | None, typer.Option("--cache/--no-cache", help="Override the recipe's `cache` setting.")
    ] = None,
    dry_run: GateOptions.dry_run = False,
    quiet: GateOptions.quiet = False,
    as_json: GateOptions.as_json = False,
    summary_file: GateOptions.summary_file = None,
    junit: GateOptions.junit = None,
) -> int:
    """Run a recipe: load, apply its passes, evaluate against the original, write the report and gate."""
    from functools import partial

    from modelforge.cli.execute import execute
    from modelforge.cli.options import finish
    from modelforge.recipe import load_recipe

    recipe = load_recipe(recipe_file)
    if output is not None:
        recipe.output.dir = output
    if force:
        recipe.output.force = True
    if cache is not None:
        recipe.cache = cache
    return finish(recipe, None, dry_run, quiet, as_json, partial(execute, summary_file=summary_file, junit=junit))
