"""Entry point: `modelforge COMMAND`. Importing this module must stay light (no onnx/onnxruntime/torch)."""

from __future__ import annotations

import sys

import typer

from modelforge import __version__
from modelforge.errors import EXIT_BAD_INPUT, ModelforgeError

app = typer.Typer(
    name="modelforge",
    help="Turn a trained model into a serving-ready artifact: smaller, faster, with its accuracy kept and proven.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
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


def _register() -> None:
    from modelforge.cli import inspect_cmd, passes_cmd, quantize_cmd, run_cmd

    app.command("quantize")(quantize_cmd.quantize)
    app.command("run")(run_cmd.run)
    app.command("inspect")(inspect_cmd.inspect)
    app.command("passes")(passes_cmd.passes)


_register()


def main() -> None:
    """Run the app; a ModelforgeError becomes one line on stderr and its exit code, never a traceback."""
    try:
        code = app(standalone_mode=False)
    except ModelforgeError as exc:
        from modelforge.cli.console import err_console

        err_console.print(f"[bold red]error:[/bold red] {exc.one_line()}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: nothing was written\n")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as exc:  # click usage errors carry their own exit code
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(EXIT_BAD_INPUT)
        raise
    sys.exit(code if isinstance(code, int) else 0)
