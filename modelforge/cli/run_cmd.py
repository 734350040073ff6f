"""`modelforge run RECIPE.yaml`: run a recipe file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelforge.cli.options import GateOptions, TrustOptions
from modelforge.report.ci import with_error_outputs


@with_error_outputs
def run(
    recipe_file: Annotated[Path, typer.Argument(metavar="RECIPE", help="Recipe YAML (see recipes/).")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Override the recipe's output.dir.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output directory.")] = False,
    cache: Annotated[
        bool | None, typer.Option("--cache/--no-cache", help="Override the recipe's `cache` setting.")
    ] = None,
    trust_model_code: TrustOptions.trust_model_code = False,
    allow_recipe_code: TrustOptions.allow_recipe_code = False,
    allow_paths: TrustOptions.allow_paths = None,
    code_path: TrustOptions.code_path = None,
    dry_run: GateOptions.dry_run = False,
    quiet: GateOptions.quiet = False,
    as_json: GateOptions.as_json = False,
    summary_file: GateOptions.summary_file = None,
    junit: GateOptions.junit = None,
) -> int:
    """Run a recipe: load, apply its passes, evaluate against the original, write the report and gate.

    A recipe may come from someone else: the code it names, `output.force`, `model.trust_model_code` and files
    outside its own folder and the current one take effect only when this command line allows them."""
    from functools import partial

    from modelforge.cli.execute import execute
    from modelforge.cli.options import finish
    from modelforge.recipe.load import load_recipe
    from modelforge.run.grants import Grants, add_code_paths, apply_grants

    recipe = load_recipe(recipe_file)
    if output is not None:
        recipe.output.dir = output
    grants = Grants(
        trust_model_code=trust_model_code,
        allow_recipe_code=allow_recipe_code,
        force=force,
        allow_paths=tuple(allow_paths or ()),
        output_from_command_line=output is not None,
    )
    apply_grants(recipe, recipe_file, grants)  # before anything is loaded or imported, dry run or not
    add_code_paths(code_path)
    if cache is not None:
        recipe.cache = cache
    return finish(recipe, None, dry_run, quiet, as_json, partial(execute, summary_file=summary_file, junit=junit))
