"""Reading a recipe: YAML in (safely, bounded), each pass's config validated against the pass registry, errors
naming the YAML path of the offending key, relative paths made relative to the recipe's folder.

The schema (`recipe.schema`) imports nothing above the core; this module sits above the pass registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modelforge.errors import InputError
from modelforge.passes import get_pass, pass_names
from modelforge.recipe.schema import Recipe


def _normalize_pass_configs(recipe: Recipe) -> Recipe:
    """Each pass's config as its pass's typed Config dumps it (defaults filled in, types coerced)."""
    for spec in recipe.passes:
        pass_cls = get_pass(spec.name)  # raises KeyError naming the known passes
        spec.config = pass_cls.Config.model_validate(spec.config).model_dump(mode="json")
    return recipe


def resolve_paths(recipe: Recipe, base: Path) -> Recipe:
    """Make relative paths relative to the recipe file's folder, as a user reading it would expect."""

    base = base.resolve()  # absolute, so recipe.resolved.yaml replays from any folder

    def fix(p: Path) -> Path:
        return p if p.is_absolute() else (base / p).resolve()

    recipe.model.path = fix(recipe.model.path)
    for source in (recipe.data.calibration, recipe.data.eval_data, recipe.data.train):
        if source is not None:
            source.path = fix(source.path)
    for spec in recipe.passes:  # a pass's own file fields (distill's student, prune's checkpoint_dir) too
        fields = get_pass(spec.name).Config.model_fields
        for key, value in list(spec.config.items()):
            kinds = getattr(fields[key].annotation, "__args__", (fields[key].annotation,)) if key in fields else ()
            if isinstance(value, str) and Path in kinds:
                spec.config[key] = str(fix(Path(value)))
    return recipe


def _yaml_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(recipe)"


# A validation error lists at most this many problems (a recipe of many unknown keys stays one readable line).
MAX_ERRORS_LISTED = 10


class _Shown:
    """A value a user wrote, as an error shows it: its repr() cut short (a YAML alias can make it huge)."""

    def __init__(self, value: Any):
        import reprlib

        shortener = reprlib.Repr()
        shortener.maxstring = shortener.maxother = 80
        shortener.maxlevel, shortener.maxlist, shortener.maxdict = 3, 6, 6
        self.text = shortener.repr(value)

    def __repr__(self) -> str:
        return self.text


def _error_text(error: dict[str, Any]) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    got = _Shown(error.get("input"))
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected', '?')}, got {got!r}"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return f"{error['msg'][0].lower()}{error['msg'][1:]}, got {got!r}"


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem, each naming the YAML path; the first line is what the user sees first."""
    # Pass-config errors are raised inside the `passes` validator: re-attach their location.
    lines = []
    errors = exc.errors(include_url=False)
    for error in errors[:MAX_ERRORS_LISTED]:
        lines.append(f"{source}: {_yaml_path(tuple(error['loc']))}: {_error_text(error)}")
    if len(errors) > MAX_ERRORS_LISTED:
        lines.append(f"and {len(errors) - MAX_ERRORS_LISTED} more")
    return "; ".join(lines)


def _nested_pass_errors(data: dict[str, Any], source: str) -> None:
    """Validate each pass config on its own so its errors carry `passes[i].config.<key>`."""
    passes = data.get("passes")
    if not isinstance(passes, list):  # not a list: the Recipe model's own validation says so
        return
    for index, spec in enumerate(passes):
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, dict) or "name" not in spec:
            continue
        try:
            pass_cls = get_pass(spec["name"])
        except KeyError:
            raise InputError(
                f"{source}: passes[{index}].name: unknown pass {spec['name']!r}; "
                f"expected one of {', '.join(pass_names())}"
            ) from None
        try:
            pass_cls.Config.model_validate(spec.get("config") or {})
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            loc = ("passes", index, "config", *first["loc"])
            raise InputError(f"{source}: {_yaml_path(loc)}: {_error_text(first)}") from None


def recipe_from_dict(data: Any, source: str = "recipe") -> Recipe:
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    _nested_pass_errors(data, source)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise InputError(format_validation_error(exc, source)) from None
    return _normalize_pass_configs(recipe)


# Far above any real recipe; a larger file is not one (and YAML of that size is slow to parse).
MAX_RECIPE_BYTES = 1 << 20
# Values in a recipe once its YAML aliases are expanded: validation walks them all, so a few lines of
# nested aliases ("billion laughs") or a self-referencing list would hang it.
MAX_RECIPE_NODES = 100_000


def _expands_beyond(data: Any, limit: int) -> bool:
    """Whether the loaded YAML, walked as validation walks it (shared aliases once per use), exceeds `limit`
    values; stops counting at the limit, so the check itself is cheap."""
    stack, seen = [data], 0
    while stack:
        item = stack.pop()
        seen += 1 + (len(item) // 1024 if isinstance(item, str) else 0)
        if seen > limit:
            return True
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set):
            stack.extend(item)
    return False


def load_recipe(path: Path) -> Recipe:
    """Read a YAML recipe safely; relative paths in it are relative to the recipe's folder."""
    import yaml

    if path.is_dir():
        raise InputError(f"recipe {path} is a directory, expected a YAML file")
    if not path.is_file():
        raise InputError(f"recipe {path} not found")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"recipe {path}: cannot be read ({exc.strerror or exc})") from exc
    if len(raw) > MAX_RECIPE_BYTES:
        raise InputError(f"recipe {path}: {len(raw)} bytes; a recipe is at most {MAX_RECIPE_BYTES} bytes")
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark (Windows editors) is fine
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(
            f"recipe {path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line})",
            hint="save the recipe as UTF-8",
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = str(getattr(exc, "problem", None) or exc).strip().splitlines()[0]  # one line
        raise InputError(f"{path}:{where} is not valid YAML: {problem}") from exc
    except RecursionError:  # PyYAML composes nested blocks recursively
        raise InputError(f"{path}: nested too deeply to be a recipe") from None
    if data is None:
        raise InputError(f"recipe {path} is empty", hint="see recipes/ for examples")
    if _expands_beyond(data, MAX_RECIPE_NODES):
        raise InputError(f"recipe {path}: its aliases expand to more than {MAX_RECIPE_NODES} values")
    recipe = recipe_from_dict(data, str(path))
    return resolve_paths(recipe, path.parent)
