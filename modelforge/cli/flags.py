"""Flag groups: a set of command-line flags declared once, whose values fill one part of the recipe.

A command names the groups it uses as keyword parameters typed with the group class:

    @flag_groups
    def quantize(model: ..., *, gates: GateFlags, grants: Annotated[GrantFlags, Pick("trust_model_code")]) -> int:
        ...
        gates.fill(raw)

`flag_groups` gives typer a flat signature, each group parameter replaced in place by the group's flags (so
`--help` lists them where the command declares the group), and hands the command one group object per class,
its flags readable as attributes. `Pick` and `Omit` choose a group's flags (and `Pick` their order), `Help`
rewords one for a command, `Required` drops a flag's default. A group class may appear in several parameters
(flags of one group on both sides of a command's own); they all receive the same object. A flag a command did
not pick reads as its default, so `fill` needs no special cases. A command that needs one flag of a group and
none of its filling names the flag itself (`threads: RuntimeFlags.threads`) and receives its plain value.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any, get_args, get_origin

_EMPTY = inspect.Parameter.empty


class Flag:
    """One flag: its typer option (names, help) and its default; read on a group object, its value."""

    def __init__(self, type_: Any, option: Any, default: Any = _EMPTY) -> None:
        self.type = type_
        self.option = option
        self.default = default
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, group: FlagGroup | None, owner: type) -> Any:
        if group is None:
            return self
        return group.values.get(self.name, self.default)

    def parameter(self, help_text: str | None = None, required: bool = False) -> inspect.Parameter:
        option = self.option
        if help_text is not None:
            option = copy.copy(option)
            option.help = help_text
        return inspect.Parameter(
            self.name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[self.type, option],
            default=_EMPTY if required else self.default,
        )


class FlagGroup:
    """Base of the groups: `flags` (in declaration order) and the values the command line gave them."""

    flags: dict[str, Flag] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.flags = {name: flag for name, flag in vars(cls).items() if isinstance(flag, Flag)}

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def given(self, name: str) -> bool:
        """Whether the command offers this flag (a flag it did not pick reads as its default)."""
        return name in self.values


class Pick:
    """Only these flags of the group, in this order."""

    def __init__(self, *names: str) -> None:
        self.names = names


class Omit:
    """The group's flags but these."""

    def __init__(self, *names: str) -> None:
        self.names = names


class Help:
    """This command's help text for some of the group's flags."""

    def __init__(self, **texts: str) -> None:
        self.texts = texts


class Required:
    """These flags have no default in this command: click asks for them."""

    def __init__(self, *names: str) -> None:
        self.names = names


def _group_slot(annotation: Any) -> tuple[type[FlagGroup], list[inspect.Parameter]] | None:
    """(group class, its flags as parameters) for a group-typed parameter; None for a command's own flag."""
    extras: tuple[Any, ...] = ()
    if get_origin(annotation) is Annotated:
        annotation, *rest = get_args(annotation)
        extras = tuple(rest)
    if not (isinstance(annotation, type) and issubclass(annotation, FlagGroup)):
        return None
    names = list(annotation.flags)
    texts: dict[str, str] = {}
    required: set[str] = set()
    for extra in extras:
        if isinstance(extra, Pick):
            names = list(extra.names)
        elif isinstance(extra, Omit):
            names = [name for name in names if name not in extra.names]
        elif isinstance(extra, Help):
            texts.update(extra.texts)
        elif isinstance(extra, Required):
            required.update(extra.names)
    unknown = (set(names) | set(texts) | required) - set(annotation.flags)
    if unknown:
        raise TypeError(f"{annotation.__name__} has no flag {', '.join(sorted(unknown))}")
    flags = [annotation.flags[name].parameter(texts.get(name), name in required) for name in names]
    return annotation, flags


def flag_groups(command: Callable[..., Any]) -> Callable[..., Any]:
    """The command as typer sees it: every group parameter expanded in place into the group's flags."""
    signature = inspect.signature(command, eval_str=True)
    flat: list[inspect.Parameter] = []
    slots: dict[str, tuple[type[FlagGroup], list[str]]] = {}
    singles: dict[str, str] = {}  # command parameter -> flag name
    for param in signature.parameters.values():
        slot = _group_slot(param.annotation)
        if isinstance(param.annotation, Flag):
            singles[param.name] = param.annotation.name
            flat.append(param.annotation.parameter())
        elif slot is None:
            flat.append(param.replace(kind=inspect.Parameter.KEYWORD_ONLY))
        else:
            slots[param.name] = (slot[0], [flag.name for flag in slot[1]])
            flat.extend(slot[1])
    names = [param.name for param in flat]
    clashes = {name for name in names if names.count(name) > 1}
    if clashes:
        raise TypeError(f"{command.__name__}: flag {', '.join(sorted(clashes))} declared twice")

    @functools.wraps(command)
    def typer_facing(**values: Any) -> Any:
        groups: dict[type[FlagGroup], FlagGroup] = {}
        for group_class, flag_names in slots.values():
            group = groups.setdefault(group_class, group_class())
            group.values.update({name: values.pop(name) for name in flag_names})
        values.update({param: values.pop(flag) for param, flag in singles.items()})
        return command(**values, **{param: groups[group_class] for param, (group_class, _) in slots.items()})

    del typer_facing.__wrapped__  # typer reads the flat signature below, not the command's
    typer_facing.__signature__ = signature.replace(parameters=flat)  # type: ignore[attr-defined]
    typer_facing.__annotations__ = {param.name: param.annotation for param in flat}
    return typer_facing
