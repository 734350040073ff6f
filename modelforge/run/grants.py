"""What a recipe file may ask for, and what only the command line can grant.

A recipe may come from someone else (a pull request, a shared folder). Whatever it says, it may not run code,
replace a folder, trust a model that is a program, or read files outside the project unless the person at the
command line said so: `--allow-recipe-code`, `--force`, `--trust-model-code`, `--trust-remote-code`,
`--allow-paths DIR`. Recipes built
from a command's own flags need none of this: everything in them was typed at the command line.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelforge.errors import InputError
from modelforge.recipe.schema import Recipe

# Custom metrics that ship with modelforge: the tool's own code, allowed in any recipe.
BUILTIN_METRIC_MODULE = "modelforge.evaluate.custom"


@dataclass(frozen=True)
class Grants:
    """What the command line allowed a recipe file to do."""

    trust_model_code: bool = False
    trust_remote_code: bool = False
    allow_recipe_code: bool = False
    force: bool = False
    allow_paths: Sequence[Path] = ()
    output_from_command_line: bool = False  # `-o DIR` replaces the recipe's output.dir: that path is the user's


def code_fields(recipe: Recipe) -> Iterator[tuple[str, str]]:
    """(YAML path, 'module:function') of every field that would import code."""
    if recipe.model.factory is not None:
        yield "model.factory", recipe.model.factory
    for index, spec in enumerate(recipe.evaluate.custom_metrics):
        if spec.partition(":")[0] != BUILTIN_METRIC_MODULE:
            yield f"evaluate.custom_metrics[{index}]", spec
    for index, spec in enumerate(recipe.passes):  # distill's student_factory, and any plugin's *_factory
        for key, value in spec.config.items():
            if isinstance(value, str) and (key == "factory" or key.endswith("_factory")):
                yield f"passes[{index}].config.{key}", value


def path_fields(recipe: Recipe, include_output: bool = True) -> Iterator[tuple[str, Path]]:
    """(YAML path, path) of every file or folder the recipe names (as resolve_paths made them absolute)."""
    yield "model.path", recipe.model.path
    for role in ("calibration", "eval_data", "train"):
        source = getattr(recipe.data, role)
        if source is not None:
            yield f"data.{role}", source.path
    if include_output:
        yield "output.dir", recipe.output.dir
    from modelforge.passes import get_pass

    for index, spec in enumerate(recipe.passes):  # the same fields resolve_paths resolves: Path-typed ones
        fields = get_pass(spec.name).Config.model_fields
        for key, value in spec.config.items():
            kinds = getattr(fields[key].annotation, "__args__", (fields[key].annotation,)) if key in fields else ()
            if isinstance(value, str) and Path in kinds:
                yield f"passes[{index}].config.{key}", Path(value)


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    """Where the path really leads (links followed, `..` removed) lies in one of the roots."""
    real = path.resolve()
    return any(real == root or root in real.parents for root in roots)


def check_recipe_paths(recipe: Recipe, recipe_file: Path, grants: Grants) -> None:
    """Every path a recipe file names stays in the recipe's folder, the current folder or a --allow-paths DIR."""
    roots = [recipe_file.resolve().parent, Path.cwd().resolve()]
    for allowed in grants.allow_paths:
        if not allowed.is_dir():
            raise InputError(f"--allow-paths {allowed}: not a directory")
        roots.append(allowed.resolve())
    for field, path in path_fields(recipe, include_output=not grants.output_from_command_line):
        if not _inside(path, roots):
            shown = f"{path} (a link to {path.resolve()})" if path.resolve() != path else str(path)
            raise InputError(
                f"{recipe_file}: {field}: {shown} is outside the recipe's folder and the current folder",
                hint=f"if you mean it, pass --allow-paths {path.resolve().parent}",
            )


def apply_grants(recipe: Recipe, recipe_file: Path, grants: Grants) -> Recipe:
    """Refuse (exit 2, naming the field) what a recipe file asks for but the command line did not grant;
    checked before anything is loaded, in dry runs too."""
    for field, spec in code_fields(recipe):
        if not grants.allow_recipe_code:
            raise InputError(
                f"{recipe_file}: {field}: {spec!r} would import and run code named by the recipe; refused",
                hint="if you trust this recipe's code, pass --allow-recipe-code (and --code-path DIR for local "
                "modules)",
            )
    if recipe.model.trust_model_code and not grants.trust_model_code:
        raise InputError(
            f"{recipe_file}: model.trust_model_code: only the command line can trust a model that runs code",
            hint="pass --trust-model-code if you trust the model",
        )
    recipe.model.trust_model_code = grants.trust_model_code
    if recipe.model.trust_remote_code and not grants.trust_remote_code:
        raise InputError(
            f"{recipe_file}: model.trust_remote_code: only the command line can trust a model folder's own code",
            hint="pass --trust-remote-code if you trust the folder",
        )
    recipe.model.trust_remote_code = grants.trust_remote_code
    if recipe.output.force and not grants.force and not grants.output_from_command_line and recipe.output.dir.exists():
        raise InputError(
            f"{recipe_file}: output.force: the recipe asks to replace {recipe.output.dir}; only --force on the "
            "command line can",
        )
    recipe.output.force = grants.force
    check_recipe_paths(recipe, recipe_file, grants)
    return recipe


def add_code_paths(folders: Sequence[Path] | None) -> None:
    """`--code-path DIR`: folders the user named to import factories and custom metrics from (first on the path)."""
    import sys

    for folder in reversed(list(folders or ())):
        if not folder.is_dir():
            raise InputError(f"--code-path {folder}: not a directory")
        resolved = str(folder.resolve())
        if resolved not in sys.path:
            sys.path.insert(0, resolved)
