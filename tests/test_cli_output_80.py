"""Issue 18 §12: at 80 columns (CI logs, pipes) no name or number is cut ("0.8…", "--tensorrt-acce…").

The real commands run with COLUMNS=80 and stdout a pipe, as in CI; the numbers they store (report.json,
bench.json, debug --json) must appear whole in what they print, and no line may be cut or run past 80.
"""

from __future__ import annotations

import io
import json
import re
import shutil

import pytest
from conftest import DIGITS_CALIBRATION, DIGITS_EVAL, DIGITS_MODEL, cli_env, run_cli

WIDTH = 80


def _tokens(text: str) -> set[str]:
    """Every whitespace-separated word of the output (a cut number is no longer one of them)."""
    return set(text.split())


def _check_fits(text: str, width: int = WIDTH) -> None:
    assert "…" not in text, text
    too_long = [line for line in text.splitlines() if len(line) > width]
    assert not too_long, "\n".join(too_long)


def _render(renderables, width: int = WIDTH) -> str:
    from rich.console import Console

    console = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    for renderable in renderables:
        console.print(renderable)
    return console.file.getvalue()


def _command_names() -> list[str]:
    import typer

    from modelforge.cli.app import app

    group = typer.main.get_command(app)
    return sorted(group.commands)


@pytest.mark.parametrize("width", [WIDTH, 100])
def test_help_of_every_command_is_whole(width):
    """typer's rich panels cut long option names at 80 columns ("--tensorrt-acce…")."""
    import typer

    from modelforge.cli.app import app

    group = typer.main.get_command(app)
    env = cli_env(COLUMNS=str(width))
    for name in ["", *_command_names()]:
        args = [name, "--help"] if name else ["--help"]
        result = run_cli(*args, env=env)
        assert result.returncode == 0, result.explain()
        _check_fits(result.stdout, width)
        command = group.commands.get(name, group) if name else group
        words = _tokens(result.stdout.replace(",", " ").replace("/", " "))
        for param in command.params:
            for option in [*param.opts, *param.secondary_opts]:
                if option.startswith("-"):
                    assert option in words, f"{name} --help at {width} columns lost {option}"


def test_bench_tables_keep_names_and_numbers(tmp_path):
    """bench printed "0.8…" for latencies at 80 columns."""
    folder = tmp_path / "a-rather-long-folder-name-for-models"
    folder.mkdir()
    first, second = folder / "digits-classifier-float32.onnx", folder / "digits-classifier-copy.onnx"
    shutil.copy(DIGITS_MODEL, first)
    shutil.copy(DIGITS_MODEL, second)
    record_path = tmp_path / "bench.json"
    result = run_cli(
        "bench", first, second, "--data", DIGITS_EVAL, "--batch-sizes", "1,8", "--min-runs", "5",
        "--max-seconds", "0.2", "--warmup", "1", "--threads", "1", "-o", record_path,
        env=cli_env(COLUMNS=str(WIDTH)),
    )  # fmt: skip
    assert result.returncode == 0, result.explain()
    _check_fits(result.stdout)
    record = json.loads(record_path.read_text())
    words = _tokens(result.stdout)
    dropped = re.search(r"\((.*) left out to fit the terminal", result.stdout)
    left_out = set(dropped.group(1).split(", ")) if dropped else set()
    columns = {"p50": "p50_ms", "p90": "p90_ms", "p99": "p99_ms", "mean": "mean_ms"}
    for entry in record["latency"]["sweep"]:
        assert str(entry["batch_size"]) in words
        for stats in entry["stats"].values():
            for header, key in columns.items():
                if header not in left_out:
                    assert f"{stats[key]:.3g}" in words, (header, stats[key], result.stdout)
            assert f"{stats['throughput_per_s']:,.0f}" in words
            if "runs" not in left_out:
                assert str(stats["runs"]) in words
    assert {"p50", "p99", "samples/s"} <= words  # the columns that matter most are never left out
    for load in (v for v in record["sessions"].values() if isinstance(v, dict)):
        assert f"{load['create_ms']:.1f}" in words and f"{load['first_run_ms']:.2f}" in words
    # The long names wrap instead of being cut: each model's name is there once the folded lines are joined.
    joined = "".join(line.strip() for line in result.stdout.splitlines())
    assert "digits-classifier-float32.onnx" in joined.replace(" ", "")


def test_quantize_summary_and_auto_table_keep_numbers(tmp_path):
    """The `--target auto` table cut headers and values at 80 columns."""
    from modelforge.report.format import fmt_bytes, summary_rows

    out = tmp_path / "out"
    result = run_cli(
        "quantize", DIGITS_MODEL, "-c", DIGITS_CALIBRATION, "-e", DIGITS_EVAL, "--target", "auto",
        "--threads", "1", "-o", out, env=cli_env(COLUMNS=str(WIDTH)),
    )  # fmt: skip
    assert result.returncode == 0, result.explain()
    _check_fits(result.stdout)
    report = json.loads((out / "report.json").read_text())
    words = _tokens(result.stdout)
    for row in summary_rows(report["summary"]):
        for cell in row[1:]:
            for word in cell.split():
                assert word in words, (cell, result.stdout)
    autos = [s["metrics"]["auto"] for s in report["stages"] if isinstance(s.get("metrics", {}).get("auto"), dict)]
    assert autos, "no stage chose a target by measurement"
    dropped = re.search(r"\((.*) left out to fit the terminal", result.stdout)
    left_out = set(dropped.group(1).split(", ")) if dropped else set()
    for row in autos[0]["candidates"]:
        assert row["runtime"] in words and row["precision"] in words
        assert f"{row['latency_p50_ms']:.3f}" in words and f"{row['speedup']:.2f}x" in words
        if "p99 ms" not in left_out:
            assert f"{row['latency_p99_ms']:.3f}" in words
        if "Cosine" not in left_out:
            assert f"{row['output_cosine']:.5f}" in words
        if "Size" not in left_out:
            assert set(fmt_bytes(row["size_bytes"]).split()) <= words


def test_debug_table_keeps_numbers_and_node_names():
    """debug showed node names in 7-character columns at 80 columns."""
    from modelforge.cli.debug_cmd import layer_table

    result = run_cli("debug", DIGITS_MODEL, "-c", DIGITS_CALIBRATION, "--samples", "8", "--json")
    assert result.returncode == 0, result.explain()
    record = json.loads(result.stdout)
    layers = record["layers"][:15]
    text = _render(layer_table(layers, record["samples"], WIDTH))
    _check_fits(text)
    words = _tokens(text)
    for row in layers:
        assert f"{row['cosine']:.5f}" in words
        assert ("exact" if row["sqnr_db"] is None else f"{row['sqnr_db']:.1f}") in words
    # Node names keep at least 24 characters a line: their folded pieces are long enough to read.
    assert any(len(word) >= 20 and word.startswith("/features/") for word in words), text

    table = run_cli("debug", DIGITS_MODEL, "-c", DIGITS_CALIBRATION, "--samples", "8", "-q", env=cli_env(COLUMNS="80"))
    assert table.returncode == 0, table.explain()
    _check_fits(table.stdout)


def test_fit_drops_columns_before_cutting_a_number():
    """The fitting rules alone: long names and big numbers at 80 and 50 columns."""
    from rich.table import Table

    from modelforge.cli.tables import fit, left_out_note

    def table() -> Table:
        made = Table(title="t")
        for header in ("Model", "p50", "p90", "p99", "mean", "samples/s", "runs"):
            made.add_column(header, justify="right", no_wrap=True)
        for index in range(3):
            made.add_row(
                f"/tmp/a/rather/long/folder/model-{index}.onnx",
                "1234.5678",
                "2345.6789",
                "34567.891",
                "4567.8912",
                "123,456,789",
                "100000",
            )
        return made

    for width, drop_order in ((WIDTH, ("runs", "mean", "p90")), (50, ("runs", "mean", "p90")), (60, ())):
        fitted, dropped = fit(table(), width, drop_order)
        text = _render([fitted, *filter(None, [left_out_note(dropped, "see --json")])], width)
        words = _tokens(text)
        _check_fits(text, width)
        assert {"1234.5678", "34567.891", "123,456,789"} <= words, text  # never cut, whatever the width
        assert dropped == list(drop_order[: len(dropped)]), dropped  # in the order given, and only those
        if dropped:
            assert f"({', '.join(dropped)} left out to fit the terminal" in text.replace("\n", " ")
        if width == WIDTH:  # at 80 columns the path stays whole, as columns were left out for it
            assert "/tmp/a/rather/long/folder/model-0.onnx" in words and dropped, text
        if not drop_order:  # nothing may be left out: each row is stacked, a line per cell
            assert "samples/s 123,456,789" in " ".join(text.split()) and "100000" in words, text
