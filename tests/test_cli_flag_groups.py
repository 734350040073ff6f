"""Flag groups (cli/flags.py): a group's flags land where a command declares it, picked, reworded or required
for that command, and the command gets one object per group with the values given; the command table and the
rule that no command reaches into another's private helpers."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Annotated

import typer
from typer.testing import CliRunner

from modelforge.cli.flags import Flag, FlagGroup, Help, Omit, Pick, Required, flag_groups

CLI = Path(__file__).resolve().parents[1] / "modelforge" / "cli"


class Colours(FlagGroup):
    red = Flag(int, typer.Option(help="Red."), 1)
    green = Flag(int, typer.Option(help="Green."), 2)
    blue = Flag(int | None, typer.Option(help="Blue."), None)


class Shapes(FlagGroup):
    size = Flag(int, typer.Option(help="Size."), 10)
    round_ = Flag(bool, typer.Option("--round", help="Round."), False)


seen: dict = {}


def _app(command) -> typer.Typer:
    app = typer.Typer(rich_markup_mode=None)  # plain click help: one option a line
    app.command()(command)
    app.command("other")(lambda: None)  # two commands: typer then takes the command name from argv
    return app


def test_groups_expand_in_place_and_merge_into_one_object():
    @flag_groups
    def paint(
        *,
        first: Annotated[Colours, Pick("blue", "red"), Required("blue"), Help(red="Red, this command's way.")],
        name: Annotated[str, typer.Option(help="Own flag.")] = "x",
        shapes: Annotated[Shapes, Omit("round_")],
        rest: Annotated[Colours, Pick("green")],
        rounded: Shapes.round_,
    ) -> None:
        seen.update(first=first, rest=rest, name=name, shapes=shapes, rounded=rounded)

    app = _app(paint)
    runner = CliRunner()
    helped = runner.invoke(app, ["paint", "--help"], env={"COLUMNS": "100"}, terminal_width=100)
    assert helped.exit_code == 0, helped.output
    order = [line.split()[0] for line in helped.output.splitlines() if line.strip().startswith("--")]
    assert order[:6] == ["--blue", "--red", "--name", "--size", "--green", "--round"], order
    assert "Red, this command's way." in helped.output and "Red." not in helped.output

    missing = runner.invoke(app, ["paint"])
    assert missing.exit_code == 2 and "--blue" in missing.output  # Required: no default any more

    seen.clear()
    result = runner.invoke(app, ["paint", "--blue", "7", "--green", "5", "--size", "3", "--round"])
    assert result.exit_code == 0, result.output
    assert seen["first"] is seen["rest"]  # one object per group, whichever parameters declared it
    assert (seen["first"].blue, seen["first"].red, seen["first"].green) == (7, 1, 5)
    assert seen["shapes"].size == 3 and seen["shapes"].round_ is False  # an omitted flag reads as its default
    assert not seen["shapes"].given("round_") and seen["shapes"].given("size")
    assert seen["name"] == "x" and seen["rounded"] is True  # a single flag arrives as its plain value


def test_a_flag_declared_twice_or_unknown_is_refused_at_definition():
    def twice(*, shapes: Shapes, size: Shapes.size) -> None: ...

    def unknown(*, colours: Annotated[Colours, Pick("purple")]) -> None: ...

    for command, words in ((twice, "size declared twice"), (unknown, "no flag purple")):
        try:
            flag_groups(command)
        except TypeError as exc:
            assert words in str(exc)
        else:
            raise AssertionError(f"{command.__name__} was accepted")


def test_every_command_in_the_table_is_registered():
    from modelforge.cli.app import COMMANDS, app

    group = typer.main.get_command(app)
    assert sorted(group.commands) == sorted(COMMANDS)  # typer lists sub-apps (cache) after the commands


def test_no_command_imports_a_private_name_of_another_cli_module():
    offending = []
    for path in sorted(CLI.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("modelforge.cli"):
                offending += [f"{path.name}: {alias.name}" for alias in node.names if alias.name.startswith("_")]
    assert offending == []
