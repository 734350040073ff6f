"""Option-parsing errors (a bad value, an unknown or missing option) in the tool's one-line `error:` style,
instead of click's usage block: a CI log shows one line that names the option, the value and where help is."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any


def usage_error_line(exc: Any, argv: Sequence[str]) -> str:
    """`error: MESSAGE (hint: modelforge CMD --help)` for a click UsageError (BadParameter, NoSuchOption, ...)."""
    message = " ".join(exc.format_message().split())  # one line, whatever click wrapped
    param = getattr(exc, "param", None)
    names = list(getattr(param, "opts", None) or [])
    if names and type(exc).__name__ == "BadParameter":  # not MissingParameter: it has no value to show
        value = _given_value(names, argv)
        reason = str(getattr(exc, "message", "")).strip().rstrip(".")
        if value is not None and reason:
            message = f"{_longest(names)} {value!r}: {_plain(reason)}"
    elif type(exc).__name__ == "NoSuchOption" and getattr(exc, "possibilities", None):
        options = sorted(exc.possibilities)
        choices = options[0] if len(options) == 1 else ", ".join(options[:-1]) + " or " + options[-1]
        message = f"{exc.message}; did you mean {choices}?"
    if message:
        message = message[0].lower() + message[1:]
    return f"error: {message.rstrip('.')}{_help_hint(getattr(exc, 'ctx', None))}"


def _longest(names: list[str]) -> str:
    return max(names, key=len)


def _plain(reason: str) -> str:
    """Click's (pydantic-style) reasons, said the way the tool's other errors say them."""
    valid = re.match(r"Input should be a valid (\w+)", reason)
    if valid:
        noun = valid.group(1)
        return f"expected {'an' if noun[0] in 'aeiou' else 'a'} {noun}"
    reason = reason.replace("Input should be", "should be")
    return reason[0].lower() + reason[1:] if reason else reason


def _given_value(names: list[str], argv: Sequence[str]) -> str | None:
    """The last value the command line gave one of `names` (`--opt value` or `--opt=value`)."""
    found = None
    for index, arg in enumerate(argv):
        for name in names:
            if arg == name and index + 1 < len(argv):
                found = argv[index + 1]
            elif name.startswith("--") and arg.startswith(name + "="):
                found = arg[len(name) + 1 :]
    return found


def _help_hint(ctx: Any) -> str:
    if ctx is None:
        return " (hint: modelforge --help)"
    root = ctx.find_root()
    sub = ctx.command_path[len(root.command_path) :].strip()
    return f" (hint: modelforge {sub + ' ' if sub else ''}--help)"
