"""Files CI systems read besides the output folder: a Markdown job summary and JUnit XML of the gates.

`--summary-file PATH` appends (GitHub Actions gives each step a `$GITHUB_STEP_SUMMARY` file that steps
append to); `--junit PATH` writes (replaces) an XML file. A run that ends without a report (bad input,
failed pass) still writes both, saying why, so the CI page shows the error instead of nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def append_summary(path: Path, markdown: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(markdown if markdown.endswith("\n") else markdown + "\n")


def write_junit(path: Path, xml: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(xml, encoding="utf-8")


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
    from modelforge.errors import ModelforgeError

    try:
        yield
    except ModelforgeError as exc:
        write_error_outputs(exc.one_line(), exc.exit_code, summary_file, junit)
        raise


def with_error_outputs(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a CLI command that has `summary_file` and `junit` parameters with `error_outputs`."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with error_outputs(kwargs.get("summary_file"), kwargs.get("junit")):
            return command(*args, **kwargs)

    return wrapper
