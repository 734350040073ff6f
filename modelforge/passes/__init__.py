"""The pass registry: one table of passes, filled by the built-in modules and the `modelforge.passes`
entry-point group (third-party packages: `[project.entry-points."modelforge.passes"] name = "pkg.mod:PassClass"`).

Pass modules must stay cheap to import: frameworks are imported inside `run`.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from modelforge.passes.base import Pass, PassContext

__all__ = ["Pass", "PassContext", "register", "get_pass", "pass_names", "available_passes"]

ENTRY_POINT_GROUP = "modelforge.passes"
_BUILTIN_MODULES = (
    "modelforge.passes.quantize",
    "modelforge.passes.prune",
    "modelforge.passes.export",
    "modelforge.passes.tflite",
    "modelforge.passes.distill",
)

_registry: dict[str, type[Pass]] = {}
_plugins: set[str] = set()  # names registered from entry points (dropped on reload)
_broken: dict[str, str] = {}  # entry-point name -> why it failed to load
_loaded = False


def register(pass_cls: type[Pass]) -> type[Pass]:
    """Class decorator: add a pass to the registry under its `name`."""
    if not getattr(pass_cls, "name", None):
        raise TypeError(f"{pass_cls.__qualname__} must set a class attribute `name`")
    existing = _registry.get(pass_cls.name)
    if existing is not None and existing is not pass_cls:
        raise ValueError(f"pass name {pass_cls.name!r} is taken by {existing.__module__}.{existing.__qualname__}")
    _registry[pass_cls.name] = pass_cls
    return pass_cls


def _load_all() -> None:
    """Import the built-in passes, then each plugin; a broken plugin is recorded, never fatal to the CLI."""
    global _loaded
    if _loaded:
        return
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            pass_cls = ep.load()
            if not (isinstance(pass_cls, type) and issubclass(pass_cls, Pass)):
                raise TypeError("it is not a modelforge Pass subclass")
            if pass_cls.name != ep.name:
                raise ValueError(f"it registers a pass named {pass_cls.name!r}")
            register(pass_cls)
            _plugins.add(ep.name)
        except Exception as exc:  # a plugin's import error must not take the whole CLI down
            _broken[ep.name] = f"plugin {ep.name} = {ep.value} is broken: {exc}"
    _loaded = True


def reload_entry_points() -> None:
    """Re-scan installed packages (tests and long-lived processes that install or remove a plugin)."""
    global _loaded
    for name in _plugins:
        _registry.pop(name, None)
    _plugins.clear()
    _broken.clear()
    _loaded = False
    _load_all()


def broken_plugins() -> dict[str, str]:
    """Plugins that failed to load, with the reason (shown by `modelforge passes`)."""
    _load_all()
    return dict(_broken)


def available_passes() -> dict[str, type[Pass]]:
    _load_all()
    return dict(sorted(_registry.items()))


def pass_names() -> list[str]:
    return list(available_passes())


def get_pass(name: str) -> type[Pass]:
    passes = available_passes()
    if name in _broken:
        raise KeyError(_broken[name])
    if name not in passes:
        raise KeyError(f"unknown pass {name!r}; expected one of {', '.join(passes)}")
    return passes[name]
