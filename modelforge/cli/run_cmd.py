"""`modelforge run RECIPE.yaml`: run a recipe file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelforge.cli.flags import Pick, flag_groups
from modelforge.cli.groups import GrantFlags, OutputFlags, RecipeFileFlags, ReportFlags
from modelforge.report.ci import with_error_outputs


@with_error_outputs
@flag_groups
def run(
    recipe_file: Annotated[Path, typer.Argument(metavar="RECIPE", help="Recipe YAML (see recipes/).")],
    *,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Override the recipe's output.dir.")] = None,
    replace: Annotated[OutputFlags, Pick("force")],
    cache: Annotated[
        bool | None, typer.Option("--cache/--no-cache", help="Override the recipe's `cache` setting.")
    ] = None,
    grants: GrantFlags,
    dry_run: Annotated[RecipeFileFlags, Pick("dry_run")],
    report: ReportFlags,
) -> int:
    """Run a recipe: load, apply its passes, evaluate against the original, write the report and gate.

    A recipe may come from someone else: the code it names, `output.force`, `model.trust_model_code`,
    `model.trust_remote_code` and files outside its own folder and the current one take effect only when this
    command line allows them."""
    from modelforge.cli.execute import finish
    from modelforge.recipe.load import load_recipe
    from modelforge.run.grants import Grants, add_code_paths, apply_grants

    recipe = load_recipe(recipe_file)
    if output is not None:
        recipe.output.dir = output
    allowed = Grants(
        trust_model_code=grants.trust_model_code,
        trust_remote_code=grants.trust_remote_code,
        allow_recipe_code=grants.allow_recipe_code,
        force=replace.force,
        allow_paths=tuple(grants.allow_paths or ()),
        output_from_command_line=output is not None,
    )
    apply_grants(recipe, recipe_file, allowed)  # before anything is loaded or imported, dry run or not
    add_code_paths(grants.code_path)
    if cache is not None:
        recipe.cache = cache
    return finish(recipe, dry_run, report)
