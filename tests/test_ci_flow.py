"""The CI flow end to end on the bundled digits model, as a CI job runs it (real processes, real exit codes):
run a recipe with a latency profile and SLO, gate, write JUnit and the job summary, compare two runs,
re-render; and the documented CI examples use only commands and flags that exist."""

from __future__ import annotations

import json
import re
import shlex
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from conftest import REPO, digits_recipe, load_report, one_error_line, run_cli, write_recipe

EXAMPLES = REPO / "examples" / "ci"


def profile_recipe(out: Path, **slo) -> dict:
    recipe = digits_recipe(out)
    recipe["evaluate"]["latency"]["batch_sizes"] = [1, 4]
    recipe["evaluate"]["slo"] = {"batch_size": 4, **slo}
    recipe["evaluate"]["custom_metrics"] = ["modelforge.evaluate.custom:mean_kl_divergence"]
    recipe["gates"] = {"max_accuracy_drop": 1.0, "min_agreement": 0.95}
    return recipe


@pytest.fixture(scope="module")
def passing_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ci-pass")
    recipe = write_recipe(folder / "recipe.yaml", profile_recipe(folder / "out", latency_p99_ms=10_000))
    result = run_cli("run", recipe, "--junit", folder / "junit.xml", "--summary-file", folder / "summary.md")
    return result, folder


@pytest.fixture(scope="module")
def failing_run(tmp_path_factory):
    """The SLO cannot be met (p50 under a nanosecond): a gate fails, everything is still written."""
    folder = tmp_path_factory.mktemp("ci-fail")
    recipe = write_recipe(folder / "recipe.yaml", profile_recipe(folder / "out", latency_p50_ms=1e-6))
    result = run_cli("run", recipe, "--junit", folder / "junit.xml", "--summary-file", folder / "summary.md")
    return result, folder


def test_passing_run_exits_0_with_every_output(passing_run):
    result, folder = passing_run
    assert result.returncode == 0, result.explain()
    out = folder / "out"
    for name in ("model.onnx", "report.json", "report.md", "report.html", "manifest.json"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert "report.html" in {f["path"] for f in manifest["files"]}
    report = load_report(out)
    latency = report["evaluation"]["latency"]
    assert [e["batch_size"] for e in latency["sweep"]] == [1, 4]
    assert set(latency["samples_ms"]) == {"baseline", "result"}
    assert latency["slo"]["models"]["result"]["met"] is True
    assert latency["slo"]["models"]["result"]["largest_batch_meeting"] == 4
    assert report["evaluation"]["sessions"]["result"]["create_ms"] > 0
    metrics = report["evaluation"]["metrics"]
    assert metrics["top5_accuracy_result"] >= metrics["accuracy_result"]
    assert metrics["custom"]["modelforge.evaluate.custom:mean_kl_divergence"] >= 0
    assert [g["name"] for g in report["gates"]] == ["max_accuracy_drop", "min_agreement", "slo_latency_p99_ms"]
    assert report["machine"]["cpu"]["instruction_sets"] is not None


def test_passing_run_writes_junit_and_summary(passing_run):
    _, folder = passing_run
    suite = ET.parse(folder / "junit.xml").getroot().find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "0" and suite.get("errors") == "0"
    summary = (folder / "summary.md").read_text()
    assert summary.startswith("### :white_check_mark: modelforge: PASSED")
    assert "Latency SLO p99 <= 10000 ms at batch 4" in summary


def test_html_report_of_the_run_has_charts_and_re_renders_identically(passing_run, tmp_path):
    _, folder = passing_run
    html = (folder / "out" / "report.html").read_text()
    charts = []

    class Charts(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "svg":
                charts.append(dict(attrs).get("data-chart"))

    Charts().feed(html)
    assert {"latency-distribution", "batch-sweep-latency", "batch-sweep-throughput", "accuracy-size-speed"} <= set(
        charts
    )
    again = run_cli("report", folder / "out", "--format", "html", "-o", tmp_path / "again.html")
    assert again.returncode == 0, again.explain()
    assert (tmp_path / "again.html").read_text() == html


def test_failed_gate_exits_1_and_still_writes_the_report(failing_run):
    result, folder = failing_run
    assert result.returncode == 1, result.explain()
    assert "FAILED (slo_latency_p50_ms)" in result.stderr
    report = load_report(folder / "out")
    assert report["passed"] is False
    assert report["evaluation"]["latency"]["slo"]["models"]["result"]["met"] is False
    assert (folder / "out" / "report.html").is_file()
    suite = ET.parse(folder / "junit.xml").getroot().find("testsuite")
    assert suite.get("failures") == "1"
    (failure,) = suite.iter("failure")
    assert "result p50 ms at batch 4" in failure.get("message")
    assert (folder / "summary.md").read_text().startswith("### :x: modelforge: FAILED")


def test_bad_input_exits_2_and_says_so_in_junit_and_summary(tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    result = run_cli("run", tmp_path / "missing.yaml", "--junit", tmp_path / "j.xml", "--summary-file", summary)
    assert result.returncode == 2, result.explain()
    assert "not found" in one_error_line(result)
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert suite.get("errors") == "1"
    assert "not found" in suite.find("testcase/error").get("message")
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "modelforge: ERROR (exit 2)" in text  # appended, not replaced


def test_failed_pass_exits_3_and_names_it_in_junit(tmp_path):
    """A valid ONNX model with an operator onnxruntime does not have: the run fails in a pass (exit 3)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Frobnicate", ["h"], ["y"], domain="com.example")],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "custom.onnx")
    np.savez(tmp_path / "calibration.npz", x=np.random.default_rng(0).random((16, 4), dtype=np.float32))
    result = run_cli(
        "quantize", tmp_path / "custom.onnx", "-c", tmp_path / "calibration.npz", "-o", tmp_path / "out",
        "--junit", tmp_path / "j.xml", "--summary-file", tmp_path / "summary.md",
    )  # fmt: skip
    assert result.returncode == 3, result.explain()
    assert "pass '" in one_error_line(result)
    error = ET.parse(tmp_path / "j.xml").getroot().find("testsuite/testcase/error")
    assert "Frobnicate" in error.get("message")
    assert "modelforge: ERROR (exit 3)" in (tmp_path / "summary.md").read_text()
    assert not (tmp_path / "out").exists()


def test_compare_the_two_runs(passing_run, failing_run):
    (_, good), (_, bad) = passing_run, failing_run
    same_model = run_cli("compare", good / "out", bad / "out", "--max-accuracy-drop", "0.5", "--max-size-increase", "1")
    assert same_model.returncode == 0, same_model.explain()  # same model, same data: nothing regressed
    assert run_cli("compare", good / "out", bad / "out", "--require-passed").returncode == 1
    impossible = run_cli("compare", good / "out", bad / "out", "--max-latency-increase", "-100")
    assert impossible.returncode == 1, impossible.explain()


def _modelforge_commands(script: str) -> list[list[str]]:
    """`modelforge ...` command lines of one CI script block (shell continuations joined)."""
    commands = []
    for line in re.split(r"[\n;]", script.replace("\\\n", " ")):
        if "modelforge " in line:
            words = shlex.split(line[line.index("modelforge ") :].split("||")[0])
            commands.append(words[1:])
    return commands


def _scripts(node) -> list[str]:
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in ([value] if key in ("run",) else []) + _scripts(value)]
    if isinstance(node, list):
        return [s for item in node for s in ([item] if isinstance(item, str) else _scripts(item))]
    return []


@pytest.mark.parametrize("example", ["github-actions.yml", "gitlab-ci.yml"])
def test_ci_examples_use_existing_commands_and_flags(example):
    import typer.main

    from modelforge.cli.app import app
    from modelforge.recipe.load import load_recipe

    group = typer.main.get_command(app)
    config = yaml.safe_load((EXAMPLES / example).read_text())
    commands = [c for script in _scripts(config) for c in _modelforge_commands(script)]
    assert {c[0] for c in commands} >= {"run", "compare", "bench"}
    for words in commands:
        command = group.commands[words[0]]
        known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        flags = [w.split("=")[0] for w in words[1:] if w.startswith("-")]
        assert set(flags) <= known, f"{example}: {words[0]} has no {set(flags) - known}"
        if words[0] == "run":
            load_recipe(REPO / words[1])  # the recipe the example runs is valid
