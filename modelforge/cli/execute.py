"""Run a recipe from any command and show the result: progress, summary table, PASSED/FAILED line; and the
recipe a shortcut command's flags make."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from modelforge.cli.groups import RecipeFileFlags, ReportFlags
from modelforge.recipe.schema import Recipe


def recipe_from_flags(raw: dict[str, Any], *groups: Any) -> Recipe:
    """The one-pass recipe: `raw` holds the model source and the pass; each group fills its part, in order."""
    from modelforge.recipe.load import recipe_from_dict, resolve_paths

    for group in groups:
        group.fill(raw)
    # Flags name paths relative to where the user runs: store them absolute, so that --save-recipe and
    # recipe.resolved.yaml (whose relative paths would be read relative to their own folder) replay anywhere.
    return resolve_paths(recipe_from_dict(raw, source="flags"), Path.cwd())


def finish(recipe: Recipe, recipe_file: RecipeFileFlags, report: ReportFlags) -> int:
    """Save the recipe if asked; then either show the plan (dry run: validates everything, writes nothing) or run."""
    if recipe_file.save_recipe is not None:
        save_recipe(recipe, recipe_file.save_recipe, recipe.output.force)
    if recipe_file.dry_run:
        from modelforge.cli.console import err_console
        from modelforge.run.plan import plan_recipe

        plan = plan_recipe(recipe)  # validates model, data, passes and gates; writes nothing
        typer.echo(recipe.to_yaml(), nl=False)
        err_console.print("[bold]Plan[/bold] (dry run: nothing was written)")
        for key, value in plan.items():
            err_console.print(f"  {key}: {value}", highlight=False, markup=False)
        return 0
    return execute(recipe, report.quiet, report.as_json, report.summary_file, report.junit)


def save_recipe(recipe: Recipe, path: Path, force: bool) -> None:
    from modelforge.errors import InputError

    if path.exists() and not force:
        raise InputError(f"recipe file {path} already exists", hint="pass --force to replace it")
    from modelforge.report.ci import write_file

    write_file(path, recipe.to_yaml())


def execute(
    recipe: Recipe, quiet: bool, as_json: bool, summary_file: Path | None = None, junit: Path | None = None
) -> int:
    """`summary_file`: append a Markdown summary; `junit`: write JUnit XML of the gates (errors: see
    modelforge.report.ci.error_outputs, which the commands wrap around their whole body)."""
    from modelforge.cli.console import RichProgress, err_console, out_console, summary_table
    from modelforge.report.ci import write_report_outputs
    from modelforge.run.runner import run_recipe
    from modelforge.training import distributed

    primary = distributed.is_primary()  # under torchrun, rank 0 shows progress and the result
    try:
        result = run_recipe(recipe, RichProgress(quiet=quiet or as_json or not primary))
    except Exception as exc:
        from modelforge.run.optimize import NothingMeets

        if isinstance(exc, NothingMeets):  # the closest candidates, then the one-line error (exit 1)
            from modelforge.cli.search_tables import optimize_tables

            for table in optimize_tables(exc.record):
                (err_console if as_json else out_console).print(table)
        raise
    if result is None:  # another rank of a torchrun job: it trained, rank 0 writes
        return 0
    report = result.report
    write_report_outputs(report, summary_file, junit)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "passed": report["passed"],
                    "summary": report["summary"],
                    "gates": report["gates"],
                    "output": str(result.output_dir),
                    "previous_output": str(result.previous_output) if result.previous_output else None,
                    "published": result.published or [],
                    "held_back": result.held_back or [],
                },
                indent=2,
            )
        )
    elif not quiet:
        out_console.print(summary_table(report))
        from modelforge.cli.console import auto_table

        for table in auto_table(report):  # --target auto: every runtime x precision measured, and the choice
            out_console.print(table)
        search = report.get("search")
        if search:  # optimize: the finalists, the winner, why the rest lost (every trial: search.json, report.html)
            from modelforge.cli.search_tables import optimize_tables

            for table in optimize_tables(search):
                out_console.print(table)
        # markup=False: paths may hold [brackets], which rich would take for style tags and drop.
        out_console.print(f"Evaluated on {report['evaluation']['data']}.", highlight=False, markup=False)
        out_console.print(
            f"Wrote {result.output_dir}/ ({', '.join(sorted(p.name for p in result.output_dir.iterdir()))})",
            highlight=False,
            markup=False,
        )
    if result.previous_output is not None:  # even with -q: where the replaced output went is never silent
        err_console.print(
            f"moved the previous output {result.output_dir} to {result.previous_output} "
            f"(to undo: rm -r {result.output_dir} && mv {result.previous_output} {result.output_dir})",
            highlight=False,
            markup=False,
            soft_wrap=True,  # one line, as a CI log greps it
        )
    for place in result.published or []:  # a shared repository changed: said even with -q
        err_console.print(f"added {place}", highlight=False, markup=False, soft_wrap=True)
    for place in result.held_back or []:
        err_console.print(
            f"not added {place}: a gate failed (the report is in {result.output_dir})",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    from modelforge.report.format import verdict_notes

    for note in verdict_notes(report):  # on stderr even with --json/--quiet: a slower or unchanged result is news
        err_console.print(note, style="bold yellow" if note.startswith("WARNING") else None, markup=False)
    failed = [g["name"] for g in report["gates"] if not g["passed"]]
    warned = len(report.get("warnings") or [])
    passed = "[bold green]PASSED[/bold green]" + (
        f" [bold yellow]with {warned} warning(s)[/bold yellow]" if warned else ""
    )
    verdict = passed if not failed else f"[bold red]FAILED[/bold red] ({', '.join(failed)})"
    err_console.print(verdict, highlight=False)
    return result.exit_code
