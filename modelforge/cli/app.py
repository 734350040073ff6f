"""Entry point: `modelforge COMMAND`. Importing this module must stay light (no onnx/onnxruntime/torch)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from typer.core import TyperGroup

from modelforge import __version__
from modelforge.errors import EXIT_BAD_INPUT, EXIT_PASS_FAILED, ModelforgeError

# Below this width typer's rich help panels cut long option names ("--tensorrt-acce…"): plain help there,
# which wraps. 100 leaves a margin over the widest panel (fits from 95 columns).
RICH_HELP_MIN_WIDTH = 100


def _help_markup_mode() -> str | None:
    """'rich' panels on a wide terminal; None (click's plain, wrapping help) at 80 columns, CI logs, pipes."""
    import shutil

    return "rich" if shutil.get_terminal_size(fallback=(80, 24)).columns >= RICH_HELP_MIN_WIDTH else None


class _Group(TyperGroup):
    """The plain help lists each command's whole first paragraph, wrapped; click cuts it to one line ("...")."""

    def format_commands(self, ctx, formatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                first = (command.short_help or command.help or "").strip().split("\n\n")[0]
                rows.append((name, " ".join(first.split())))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


app = typer.Typer(
    cls=_Group,
    name="modelforge",
    help="Turn a trained model into a serving-ready artifact: smaller, faster, with its accuracy kept and proven.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=_help_markup_mode(),
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"modelforge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Exit codes: 0 ok · 1 a gate failed (report written) · 2 bad usage or input · 3 a pass failed."""


# The command table: every command, in the order `modelforge --help` lists them, as "module:attribute" under
# modelforge.cli; an attribute that is a Typer app is a command group (`modelforge cache ...`). Command modules
# import no framework at module level, so loading them all for the help stays fast.
COMMANDS: dict[str, str] = {
    "quantize": "quantize_cmd:quantize",
    "prune": "prune_cmd:prune",
    "run": "run_cmd:run",
    "inspect": "inspect_cmd:inspect",
    "passes": "passes_cmd:passes",
    "doctor": "doctor_cmd:doctor",
    "schema": "schema_cmd:schema",
    "explain": "schema_cmd:explain",
    "cache": "cache_cmd:cache_app",
    "compare": "compare_cmd:compare",
    "report": "report_cmd:report",
    "bench": "bench_cmd:bench",
    "debug": "debug_cmd:debug",
    "export": "export_cmd:export",
    "drift": "drift_cmd:drift",
    "distill": "distill_cmd:distill",
    "cascade": "cascade_cmd:cascade",
    "optimize": "optimize_cmd:optimize",
}


def _register() -> None:
    from importlib import import_module

    for name, target in COMMANDS.items():
        module, _, attribute = target.partition(":")
        command = getattr(import_module(f"modelforge.cli.{module}"), attribute)
        if isinstance(command, typer.Typer):
            app.add_typer(command, name=name)
        else:
            app.command(name)(command)


_register()


def _usage_error_types() -> tuple[type[Exception], ...]:
    """Click's usage errors: from `click` (typer < 0.20) or typer's vendored copy (a TyperException)."""
    types: list[type[Exception]] = []
    if hasattr(typer, "TyperException"):
        types.append(typer.TyperException)
    try:
        import click
    except ImportError:
        pass
    else:
        types.append(click.ClickException)
    return tuple(types)


def debug_enabled() -> bool:
    """MODELFORGE_DEBUG=1: errors also print their full traceback, with the library failure that caused them."""
    import os

    return os.environ.get("MODELFORGE_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


def _print_traceback(exc: BaseException) -> None:
    """The whole chain: a PassError keeps the library exception it wraps as its cause (`raise ... from exc`)."""
    import traceback

    sys.stderr.write("".join(traceback.format_exception(exc)))
    sys.stderr.flush()


def _internal_error(exc: Exception) -> None:
    """A bug of ours: one line and exit 3, never exit 1, which CI reads as "a gate failed"."""
    import traceback

    from rich.markup import escape

    from modelforge.cli.console import err_console

    if debug_enabled():
        _print_traceback(exc)
    where = traceback.extract_tb(exc.__traceback__)[-1]
    err_console.print(
        f"[bold red]internal error:[/bold red] {escape(f'{type(exc).__name__}: {exc}')} "
        f"(at {Path(where.filename).name}:{where.lineno}; hint: rerun with MODELFORGE_DEBUG=1 and report it)",
        highlight=False,
        soft_wrap=True,
    )
    sys.exit(EXIT_PASS_FAILED)


def forget_current_folder(entry: str | None = None) -> None:
    """Drop the implicit current-folder entries ('' and, given as `entry`, the one `python -m` added) from the
    import path, so user code is imported only from places the user named (PYTHONPATH, --code-path)."""
    import os

    if entry is not None and entry in sys.path and Path(entry or ".").resolve() == Path(os.getcwd()).resolve():
        sys.path.remove(entry)
    while "" in sys.path:  # `python -c`, an embedding interpreter: '' is whatever folder is current at import time
        sys.path.remove("")


def main() -> None:
    """Run the app; a ModelforgeError becomes one line on stderr and its exit code, never a traceback."""
    forget_current_folder()
    try:
        code = app(standalone_mode=False)
    except ModelforgeError as exc:
        from rich.markup import escape

        from modelforge.cli.console import err_console

        if debug_enabled():  # the traceback first: the one-line error stays the last line, as without debug
            _print_traceback(exc)
        # Escaped: messages hold shapes like [batch, 1, 8, 8], which rich would eat as markup tags.
        err_console.print(f"[bold red]error:[/bold red] {escape(exc.one_line())}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):  # click turns Ctrl-C into Abort
        sys.stderr.write("interrupted: nothing was written\n")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors carry their own exit code
        if isinstance(exc, _usage_error_types()) and hasattr(exc, "show"):
            if type(exc).__name__ == "NoArgsIsHelpError" or not hasattr(exc, "format_message"):
                exc.show()  # `modelforge` or `modelforge cache` alone: the help, as asked
            else:
                from modelforge.cli.console import err_console
                from modelforge.cli.usage import usage_error_line

                err_console.print(usage_error_line(exc, sys.argv[1:]), highlight=False, soft_wrap=True, markup=False)
            sys.exit(EXIT_BAD_INPUT)
        _internal_error(exc)
    if code == 130:  # typer turns Ctrl-C into Exit(130); the run's finally-blocks have already cleaned up
        sys.stderr.write("interrupted: nothing was written\n")
    sys.exit(code if isinstance(code, int) else 0)
