"""Flags shared by the commands that run a recipe, declared once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from modelforge.recipe.load import recipe_from_dict, resolve_paths
from modelforge.recipe.schema import Recipe


class GateOptions:
    max_accuracy_drop = Annotated[
        float | None, typer.Option(help="Gate: fail (exit 1) if top-1 accuracy drops more than PP points.")
    ]
    min_speedup = Annotated[float | None, typer.Option(help="Gate: fail if baseline p50 / result p50 < X.")]
    min_agreement = Annotated[float | None, typer.Option(help="Gate: fail if top-1 agreement < F (0..1).")]
    min_cosine = Annotated[float | None, typer.Option(help="Gate: fail if mean output cosine < F.")]
    default_gates = Annotated[
        bool,
        typer.Option(
            "--default-gates/--no-default-gates",
            help="Default gates where none of that metric is set: top-1 agreement >= 0.99 (classifier outputs) or "
            "output cosine >= 0.99; after prune/distill, accuracy drop <= 5 pp (agreement/cosine >= 0.9 unlabelled).",
        ),
    ]
    threads = Annotated[int | None, typer.Option(help="Intra-op threads for latency (default: all cores).")]
    seed = Annotated[int, typer.Option(help="Seed for every random choice.")]
    cache = Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse cached stage results (content-keyed).")]
    save_recipe = Annotated[
        Path | None,
        typer.Option(help="Also write the recipe these flags make, to replay with `modelforge run`."),
    ]
    dry_run = Annotated[bool, typer.Option("--dry-run", help="Validate and print the resolved recipe; run nothing.")]
    quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables.")]
    as_json = Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")]
    summary_file = Annotated[
        Path | None,
        typer.Option(
            "--summary-file",
            envvar="MODELFORGE_SUMMARY_FILE",
            help="Append a Markdown summary to this file (e.g. $GITHUB_STEP_SUMMARY).",
        ),
    ]
    junit = Annotated[
        Path | None, typer.Option("--junit", help="Write the gates as JUnit XML here (for CI test-result views).")
    ]


class TrustOptions:
    """What only the command line can allow (README "Security"); declared once, used by every command."""

    trust_model_code = Annotated[
        bool,
        typer.Option(
            "--trust-model-code",
            help="Load TorchScript archives and SavedModels, whose code runs when they load (refused by default; "
            "safer: a torch.export .pt2, or a Keras .keras file).",
        ),
    ]
    allow_recipe_code = Annotated[
        bool,
        typer.Option(
            "--allow-recipe-code",
            help="Let the recipe import code it names (model.factory, evaluate.custom_metrics, *_factory).",
        ),
    ]
    allow_paths = Annotated[
        list[Path] | None,
        typer.Option(
            "--allow-paths",
            metavar="DIR",
            help="Let the recipe name files under DIR too (default: only its own folder and the current one). "
            "Repeatable.",
        ),
    ]
    code_path = Annotated[
        list[Path] | None,
        typer.Option(
            "--code-path",
            metavar="DIR",
            help="Import factories and custom metrics from DIR too (the current folder is never searched "
            "implicitly). Repeatable.",
        ),
    ]


class TrainOptions:
    """Training flags shared by the commands that train (prune's fine-tuning, distill); defaults stay per command."""

    optimizer = Annotated[str, typer.Option(help="sgd, adam or adamw.")]
    early_stopping = Annotated[int | None, typer.Option(help="Stop after N epochs without improvement.")]
    hflip = Annotated[bool, typer.Option("--hflip", help="Augment: random horizontal flips.")]
    crop_padding = Annotated[int, typer.Option(help="Augment: random crops after zero-padding by N pixels.")]
    mean = Annotated[str | None, typer.Option(help="Image folders: per-channel mean, e.g. 0.485,0.456,0.406.")]
    std = Annotated[str | None, typer.Option(help="Image folders: per-channel std, e.g. 0.229,0.224,0.225.")]
    color = Annotated[
        str | None, typer.Option(help="Image folders: channel order RGB, BGR, or L (one grayscale channel).")
    ]
    checkpoint_dir = Annotated[
        Path | None,
        typer.Option(
            help="Checkpoint folder, kept (default: in the cache until the pass is done; OUTPUT/checkpoints/ keeps "
            "the final best.pt and last.pt)."
        ),
    ]
    resume = Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run from its checkpoints (same -o, same flags).")
    ]


def common_recipe(
    *,
    model: Path,
    passes: list[dict],
    data: dict,
    output: Path,
    force: bool,
    threads: int | None,
    seed: int,
    gates: dict[str, Any],
    cache: bool = True,
    model_factory: str | None = None,
    trust_model_code: bool = False,
) -> Recipe:
    source: dict[str, Any] = {"path": str(model)}
    if model_factory is not None:
        source["factory"] = model_factory
    if trust_model_code:
        source["trust_model_code"] = True
    raw = {
        "model": source,
        "data": {k: v for k, v in data.items() if v is not None},
        "passes": passes,
        "gates": {k: v for k, v in gates.items() if v is not None},
        "output": {"dir": str(output), "force": force},
        "seed": seed,
        "cache": cache,
    }
    if threads is not None:
        raw["evaluate"] = {"latency": {"threads": threads}}
    # Flags name paths relative to where the user runs: store them absolute, so that --save-recipe and
    # recipe.resolved.yaml (whose relative paths would be read relative to their own folder) replay anywhere.
    return resolve_paths(recipe_from_dict(raw, source="flags"), Path.cwd())


def finish(
    recipe: Recipe,
    save_recipe: Path | None,
    dry_run: bool,
    quiet: bool,
    as_json: bool,
    execute: Callable[[Recipe, bool, bool], int],
) -> int:
    from modelforge.cli.execute import save_recipe as write_recipe

    if save_recipe is not None:
        write_recipe(recipe, save_recipe, recipe.output.force)
    if dry_run:
        from modelforge.cli.console import err_console
        from modelforge.run.plan import plan_recipe

        plan = plan_recipe(recipe)  # validates model, data, passes and gates; writes nothing
        typer.echo(recipe.to_yaml(), nl=False)
        err_console.print("[bold]Plan[/bold] (dry run: nothing was written)")
        for key, value in plan.items():
            err_console.print(f"  {key}: {value}", highlight=False, markup=False)
        return 0
    return execute(recipe, quiet, as_json)
