"""`modelforge bench MODEL [MODEL...]`: the latency profile of models made elsewhere (here: the bundled digits
CNN and an INT8 copy made with plain onnxruntime), its JSON, HTML, SLO exit codes and input errors."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import DIGITS_EVAL, DIGITS_MODEL, run_cli

from modelforge.measure.latency import MAX_STORED_SAMPLES
from modelforge.measure.profile import P99_MIN_RUNS

FAST = ("--min-runs", "8", "--warmup", "1", "--max-seconds", "2", "--threads", "1")


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory) -> Path:
    """A model produced outside modelforge: onnxruntime's dynamic quantization of the digits CNN."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = tmp_path_factory.mktemp("elsewhere") / "digits-int8.onnx"
    quantize_dynamic(str(DIGITS_MODEL), str(out), weight_type=QuantType.QInt8)
    return out


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory, int8_model) -> tuple[dict, Path]:
    folder = tmp_path_factory.mktemp("bench")
    result = run_cli(
        "bench",
        DIGITS_MODEL,
        int8_model,
        "--batch-sizes",
        "1,4",
        *FAST,
        "-o",
        folder / "bench.json",
        "--html",
        folder / "bench.html",
        "--summary-file",
        folder / "summary.md",
    )
    assert result.returncode == 0, result.explain()
    assert "Latency in ms" in result.stdout and "Machine:" in result.stdout
    return json.loads((folder / "bench.json").read_text()), folder


def test_profile_has_every_batch_model_and_statistic(bench_json):
    record, _ = bench_json
    names = [m["name"] for m in record["models"]]
    assert names == ["model.onnx", "digits-int8.onnx"]
    latency = record["latency"]
    assert [e["batch_size"] for e in latency["sweep"]] == [1, 4]
    for entry in latency["sweep"]:
        assert entry["stopped"] in ("stable", "time budget", "max runs")
        for name in names:
            stats = entry["stats"][name]
            assert stats["runs"] >= 6 and len(entry["samples_ms"][name]) == min(stats["runs"], MAX_STORED_SAMPLES)
            assert 0 < stats["min_ms"] <= stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"]
            assert stats["throughput_per_s"] == pytest.approx(entry["batch_size"] * 1e3 / stats["p50_ms"])
    assert latency["threads"] == 1 and latency["inter_op_threads"] == 1
    assert latency["stop_rule"].startswith("at least 8 runs")


def test_sessions_record_cold_start_and_memory(bench_json):
    record, _ = bench_json
    sessions = record["sessions"]
    assert "VmHWM" in sessions["memory_method"] or "ru_maxrss" in sessions["memory_method"]
    for model in record["models"]:
        load = sessions[model["name"]]
        assert load["create_ms"] > 0 and load["first_run_ms"] > 0
        assert isinstance(load["peak_rss_growth_bytes"], int) and load["peak_rss_growth_bytes"] >= 0


def test_results_carry_the_machine(bench_json):
    record, _ = bench_json
    cpu = record["machine"]["cpu"]
    assert cpu["cores"] >= 1 and cpu["model"]
    assert set(cpu["int8_instruction_sets"]) <= set(cpu["instruction_sets"]) or not cpu["int8_instruction_sets"]
    assert {"onnxruntime", "numpy", "python"} <= set(record["machine"]["versions"])


def test_html_and_summary_outputs(bench_json):
    record, folder = bench_json
    charts: list[str] = []

    class Charts(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "svg":
                charts.append(dict(attrs).get("data-chart", ""))

    Charts().feed((folder / "bench.html").read_text())
    assert charts.count("latency-distribution") == 2  # one per batch size
    assert {"batch-sweep-latency", "batch-sweep-throughput"} <= set(charts)
    summary = (folder / "summary.md").read_text()
    assert summary.startswith("### modelforge bench") and "digits-int8.onnx" in summary


def test_slo_exit_codes(tmp_path):
    met = run_cli("bench", DIGITS_MODEL, "--batch-sizes", "1", *FAST, "--slo-p99-ms", "10000", "--json")
    assert met.returncode == 0, met.explain()
    latency = json.loads(met.stdout)["latency"]
    slo = latency["slo"]
    assert slo["models"]["model.onnx"]["met"] is True
    # A p99 limit is judged on at least P99_MIN_RUNS runs (--min-runs 8 asked for fewer).
    assert latency["stop_rule"].startswith(f"at least {P99_MIN_RUNS} runs")
    assert latency["sweep"][0]["stats"]["model.onnx"]["runs"] >= P99_MIN_RUNS
    assert slo["models"]["model.onnx"]["largest_batch_meeting"] == 1
    missed = run_cli("bench", DIGITS_MODEL, "--batch-sizes", "1", *FAST, "--slo-p50-ms", "0.000001", "--slo-batch", "2")
    assert missed.returncode == 1, missed.explain()
    assert "SLO missed: model.onnx" in missed.stderr


def test_data_file_feeds_the_models():
    result = run_cli("bench", DIGITS_MODEL, "--batch-sizes", "3", *FAST, "--data", DIGITS_EVAL, "--json", "-q")
    assert result.returncode == 0, result.explain()
    record = json.loads(result.stdout)
    assert record["inputs"].startswith("rows of") and record["latency"]["sweep"][0]["batch_size"] == 3


def test_same_file_names_get_distinct_labels(tmp_path, int8_model):
    copy = tmp_path / "other" / "digits-int8.onnx"
    copy.parent.mkdir()
    shutil.copyfile(int8_model, copy)
    result = run_cli("bench", int8_model, copy, "--batch-sizes", "1", *FAST, "--json", "-q")
    assert result.returncode == 0, result.explain()
    names = [m["name"] for m in json.loads(result.stdout)["models"]]
    assert len(set(names)) == 2 and names[1] == "other/digits-int8.onnx"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("missing.onnx",), "not found"),
        ((str(DIGITS_MODEL), str(DIGITS_MODEL)), "named twice"),
        ((str(DIGITS_MODEL), "--batch-sizes", "1,x"), "comma-separated integers"),
        ((str(DIGITS_MODEL), "--batch-sizes", "0"), "positive"),
        ((str(DIGITS_MODEL), "--dim", "seq"), "NAME=SIZE"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message):
    result = run_cli("bench", *args)
    assert result.returncode == 2, result.explain()
    assert message in result.stderr and "Traceback" not in result.stderr
