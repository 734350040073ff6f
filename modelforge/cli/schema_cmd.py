"""`modelforge schema` and `modelforge explain KEY`: the recipe's documentation, from the pydantic models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

SHORTHANDS = {
    "ModelSource": "shorthand for {path: ...}",
    "DataSource": "shorthand for {path: ...}",
    "PassSpec": "shorthand for {name: ...}",
    "OutputConfig": "shorthand for {dir: ...}",
}


def recipe_json_schema() -> dict[str, Any]:
    """The Recipe's JSON Schema, with each pass's config schema attached under `x-modelforge-passes`."""
    from modelforge.passes import available_passes
    from modelforge.recipe.schema import Recipe

    schema = Recipe.model_json_schema()
    # These sections also accept a bare string in YAML (`model: net.onnx`, `- quantize`, `output: out/`).
    for name, meaning in SHORTHANDS.items():
        definition = schema["$defs"][name]
        schema["$defs"][name] = {"anyOf": [{"type": "string", "description": meaning}, definition]}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "modelforge recipe"
    schema["x-modelforge-passes"] = {name: cls.Config.model_json_schema() for name, cls in available_passes().items()}
    return schema


def schema(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Print the recipe's JSON Schema (for editor completion and validation of YAML recipes)."""
    text = json.dumps(recipe_json_schema(), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        from modelforge.report.ci import write_file

        write_file(output, text)


def _field_doc(model: type, path: list[str], trail: str) -> tuple[str, Any]:
    from pydantic import BaseModel

    field_name = path[0]
    fields = model.model_fields
    if field_name not in fields:
        raise KeyError(f"{trail}{field_name}: unknown key; keys here: {', '.join(fields)}")
    field = fields[field_name]
    if len(path) == 1:
        return f"{trail}{field_name}", field
    annotation = field.annotation
    candidates = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)]
    nested = next((a for a in candidates if issubclass(a, BaseModel)), None)
    if nested is None:
        raise KeyError(f"{trail}{field_name} has no sub-keys")
    return _field_doc(nested, path[1:], f"{trail}{field_name}.")


def explain(key: Annotated[str, typer.Argument(help="A recipe key (gates.max_accuracy_drop) or PASS.option.")]) -> None:
    """Print the documentation of a recipe key or a pass option: type, default, description."""
    from modelforge.errors import InputError
    from modelforge.passes import available_passes
    from modelforge.recipe.schema import Recipe

    parts = key.replace("passes.", "", 1).split(".") if key.startswith("passes.") else key.split(".")
    passes = available_passes()
    try:
        if parts[0] in passes and (key.startswith("passes.") or parts[0] not in Recipe.model_fields):
            cls = passes[parts[0]]
            if len(parts) == 1:
                typer.echo(
                    f"pass {cls.name}: {cls.description}\naccepts: {', '.join(cls.accepts)}; produces: {cls.produces}"
                )
                for name, field in cls.Config.model_fields.items():
                    default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
                    typer.echo(f"  {name} (default {default}): {field.description or ''}")
                return
            name, field = _field_doc(cls.Config, parts[1:], f"passes[].config (pass {cls.name}): ")
        else:
            name, field = _field_doc(Recipe, parts, "")
    except KeyError as exc:
        raise InputError(str(exc.args[0])) from None
    default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
    plain = isinstance(field.annotation, type)
    annotation = field.annotation.__name__ if plain else str(field.annotation).replace("typing.", "")
    typer.echo(f"{name}\n  type: {annotation}\n  default: {default}\n  {field.description or '(no description)'}")
