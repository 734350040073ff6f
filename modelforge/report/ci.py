"""Files CI systems read besides the output folder: a Markdown job summary and JUnit XML of the gates.

`--summary-file PATH` appends (GitHub Actions gives each step a `$GITHUB_STEP_SUMMARY` file that steps
append to); `--junit PATH` writes (replaces) an XML file. A run that ends without a report (bad input,
failed pass) still writes both, saying why, so the CI page shows the error instead of nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any


def write_file(path: Path, text: str, append: bool = False) -> None:
    """Write (or append) a file a flag names, creating its folder; a path that cannot be written is bad input."""
    from modelforge.errors import InputError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a" if append else "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None


def append_summary(path: Path, markdown: str) -> None:
    write_file(path, markdown if markdown.endswith("\n") else markdown + "\n", append=True)


def write_junit(path: Path, xml: str) -> None:
    write_file(path, xml)


def write_report_outputs(report: dict[str, Any], summary_file: Path | None, junit: Path | None) -> None:
    if summary_file is not None:
        from modelforge.report.markdown import render_step_summary

        append_summary(summary_file, render_step_summary(report))
    if junit is not None:
        from modelforge.report.junit import render_junit

        write_junit(junit, render_junit(report))


def write_error_outputs(message: str, exit_code: int, summary_file: Path | None, junit: Path | None) -> None:
    if summary_file is not None:
        append_summary(summary_file, f"### :x: modelforge: ERROR (exit {exit_code})\n\n{message}\n\n")
    if junit is not None:
        from modelforge.report.junit import render_junit_error

        write_junit(junit, render_junit_error(message, exit_code))


@contextmanager
def error_outputs(summary_file: Path | None, junit: Path | None) -> Iterator[None]:
    """Around a whole command: a ModelforgeError (exit 2 or 3) is written to both files, then re-raised."""
    from modelforge.errors import InputError, ModelforgeError

    try:
        for flag, path in (("--summary-file", summary_file), ("--junit", junit)):
            if path is not None and path.is_dir():  # found before the run, not after its work is done
                raise InputError(f"{flag} {path} is a directory", hint="name a file")
        yield
    except ModelforgeError as exc:
        with suppress(InputError):  # the files cannot be written: the error itself still reaches stderr
            write_error_outputs(exc.one_line(), exc.exit_code, summary_file, junit)
        raise


def with_error_outputs(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a CLI command that has `summary_file` and `junit` parameters with `error_outputs`."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with error_outputs(kwargs.get("summary_file"), kwargs.get("junit")):
            return command(*args, **kwargs)

    return wrapper
