"""The one exception family of modelforge; each error maps to an exit code and a one-line message.

Exit codes (a contract CI pipelines depend on):
  0 success · 1 a gate failed (report still written) · 2 bad usage or bad input · 3 a pass failed on valid input
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_PASS_FAILED = 3


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """One line saying why `exc` happened, for a one-line error: the first line of its message, skipping the
    framing of a traceback pasted into it (OpenVINO's), or its type name when the message is empty; at most
    `limit` characters."""
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith(("Traceback", "  "))]
    return (lines[0] if lines else type(exc).__name__)[:limit]


class ModelforgeError(Exception):
    """Base class: a message for the user (one line) and an optional hint on how to fix it."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class InputError(ModelforgeError):
    """A file, recipe, flag or data set is missing, malformed or does not match the model."""

    exit_code = EXIT_BAD_INPUT


class MissingExtraError(InputError):
    """An optional framework is needed for this input but not installed."""

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs {package}, which is not installed",
            hint=f"pip install 'modelforge[{extra}]'",
        )


class PassError(ModelforgeError):
    """A pass failed on valid input (unsupported operator, conversion error); names the pass."""

    exit_code = EXIT_PASS_FAILED

    def __init__(self, pass_name: str, message: str, hint: str | None = None):
        super().__init__(f"pass '{pass_name}' failed: {message}", hint)
        self.pass_name = pass_name


class OutputExistsError(InputError):
    def __init__(self, path: str):
        super().__init__(f"output directory {path} already exists", hint="pass --force to replace it")
