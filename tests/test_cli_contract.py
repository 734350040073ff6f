"""The CLI surface: --version, a --help that stays light, usage errors without tracebacks, `passes`."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import DIGITS_MODEL, cli_env, one_error_line, run_cli

import modelforge

HEAVY = ("torch", "tensorflow", "onnxruntime", "onnx", "openvino")


def test_version_prints_package_version():
    result = run_cli("--version")
    assert result.returncode == 0, result.explain()
    assert result.stdout.strip() == f"modelforge {modelforge.__version__}"


def test_building_help_imports_no_framework():
    """Importing the app and rendering the help of every command must not pull in a framework."""
    code = f"""
import sys
from typer.testing import CliRunner
from modelforge.cli.app import app

runner = CliRunner()
results = [runner.invoke(app, ["--help"])]
for name in ("quantize", "run", "inspect", "passes"):
    results.append(runner.invoke(app, [name, "--help"]))
assert all(r.exit_code == 0 for r in results), [(r.exit_code, r.output[-300:]) for r in results]
assert "quantize" in results[0].output
heavy = {set(HEAVY)!r}
print(sorted(m for m in sys.modules if m.split(".")[0] in heavy))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout


def _imported_top_level(args: list[str]) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run the real entry point with -X importtime and collect every top-level package it imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "modelforge", *args],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            names.add(name.split(".")[0])
    return proc, names


def test_help_process_exits_zero_fast_and_light():
    proc, imported = _imported_top_level(["--help"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "quantize" in proc.stdout and "inspect" in proc.stdout
    assert "typer" in imported  # the import log was really parsed
    # Fast is judged by what is imported, not by a stopwatch (a loaded CI box would decide a time bound):
    # no framework, and not even NumPy or SciPy, which take a noticeable share of a second to import.
    slow = set(HEAVY) | {"numpy", "scipy", "sklearn", "pandas"}
    assert not imported & slow, sorted(imported & slow)


def test_listing_passes_imports_no_framework():
    """Pass modules must stay cheap to import: `modelforge passes` loads them all."""
    proc, imported = _imported_top_level(["passes"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "quantize" in proc.stdout
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_passes_lists_quantize_with_formats():
    result = run_cli("passes")
    assert result.returncode == 0, result.explain()
    row = next(line for line in result.stdout.splitlines() if "quantize" in line)
    assert "onnx" in row


def test_usage_errors_exit_2_without_traceback():
    missing_option = run_cli("quantize", "model.onnx")
    assert missing_option.returncode == 2, missing_option.explain()
    assert one_error_line(missing_option) == (
        "error: missing option '--calibration' / '-c' (hint: modelforge quantize --help)"
    )

    unknown_command = run_cli("no-such-command")
    assert unknown_command.returncode == 2, unknown_command.explain()
    assert one_error_line(unknown_command) == "error: no such command 'no-such-command' (hint: modelforge --help)"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("export", DIGITS_MODEL, "--target", "triton", "--memory-budget", "abc"),
            "error: --memory-budget 'abc': expected a number (hint: modelforge export --help)",
        ),
        (("drift", "stats.json", "new.npz", "--max-psi", "abc"), "error: --max-psi 'abc': expected a number"),
        (("drift", "stats.json", "new.npz", "--max-psi=-1"), "error: --max-psi '-1': should be greater than"),
        (("bench", DIGITS_MODEL, "--threads", "two"), "error: --threads 'two': expected an integer"),
        (("quantize", DIGITS_MODEL, "--bogus"), "error: no such option: --bogus (hint: modelforge quantize --help)"),
        (("quantize", DIGITS_MODEL, "--calibrat", "x"), "error: no such option: --calibrat; did you mean --calib"),
        (("cache", "bogus"), "error: no such command 'bogus' (hint: modelforge cache --help)"),
    ],
)
def test_option_parsing_errors_are_one_error_line_naming_the_option(args, expected):
    """Bad option values and unknown options came out as click's 4-line usage block."""
    result = run_cli(*args)
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    assert line.startswith(expected), line
    assert result.stdout == ""


def test_help_still_works_and_no_arguments_show_it():
    helped = run_cli("export", "--help")
    assert helped.returncode == 0, helped.explain()
    assert "--memory-budget" in helped.stdout and "error" not in helped.stderr
    bare = run_cli()
    assert "quantize" in bare.stdout + bare.stderr and "error:" not in bare.stderr


def test_missing_model_file_is_one_line_exit_2(tmp_path):
    result = run_cli("quantize", tmp_path / "absent.onnx", "-c", tmp_path / "absent.npz", "-o", tmp_path / "out")
    assert result.returncode == 2, result.explain()
    assert "Traceback" not in result.stderr
    assert "absent" in result.stderr
    assert not (tmp_path / "out").exists()
