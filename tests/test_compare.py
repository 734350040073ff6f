"""`modelforge compare A B`: deltas of every summary metric, tolerances, exit codes, output formats."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import SUMMARY_KEYS, run_cli

from modelforge.report.compare import Tolerances, compare_reports

STORED = Path(__file__).parent / "data" / "report_digits.json"


@pytest.fixture
def report_a() -> dict:
    return json.loads(STORED.read_text())


def worse(report: dict) -> dict:
    """The same run, but the candidate lost 2 pp of accuracy, got 30% slower and 10% larger."""
    b = copy.deepcopy(report)
    s = b["summary"]
    s["accuracy_result"] -= 0.02
    s["accuracy_drop_pp"] = (s["accuracy_baseline"] - s["accuracy_result"]) * 100
    s["top1_agreement"] -= 0.03
    s["latency_p50_ms_result"] *= 1.3
    s["speedup"] = s["latency_p50_ms_baseline"] / s["latency_p50_ms_result"]
    s["size_bytes_result"] = int(s["size_bytes_result"] * 1.1)
    s["size_ratio"] = s["size_bytes_baseline"] / s["size_bytes_result"]
    return b


def write(folder: Path, report: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report))
    return folder


def test_every_summary_metric_is_compared_with_its_delta(report_a):
    result = compare_reports(report_a, worse(report_a))
    rows = {r["key"]: r for r in result["rows"]}
    assert tuple(rows)[: len(SUMMARY_KEYS)] == SUMMARY_KEYS
    assert rows["accuracy_result"]["delta"] == pytest.approx(-0.02)
    assert rows["accuracy_result"]["status"] == "worse"
    assert rows["latency_p50_ms_result"]["change_pct"] == pytest.approx(30.0)
    assert rows["latency_p50_ms_result"]["status"] == "worse"  # lower is better
    assert rows["size_bytes_baseline"]["status"] == "same"
    assert result["passed"] and result["checks"] == []  # no tolerances given: nothing gates
    details = {r["key"]: r for r in result["details"]}
    assert details["latency_p99_ms_result"]["a"] == report_a["evaluation"]["latency"]["result"]["p99_ms"]


def test_tolerances_decide_the_verdict(report_a):
    b = worse(report_a)
    loose = Tolerances(max_accuracy_drop=3, max_latency_increase=50, max_size_increase=20, max_agreement_drop=5)
    assert compare_reports(report_a, b, loose)["passed"]
    tight = Tolerances(max_accuracy_drop=1, max_latency_increase=10, max_speedup_drop=10, max_size_increase=5)
    checks = {c["name"]: c for c in compare_reports(report_a, b, tight)["checks"]}
    assert {name for name, c in checks.items() if not c["passed"]} == set(checks)
    assert checks["max_accuracy_drop"]["value"] == pytest.approx(2.0)
    assert checks["max_latency_increase"]["value"] == pytest.approx(30.0)
    assert checks["max_speedup_drop"]["value"] == pytest.approx((1 - 1 / 1.3) * 100)
    assert checks["max_size_increase"]["value"] == pytest.approx(10.0, abs=0.01)


def test_a_tolerance_on_a_missing_metric_fails(report_a):
    no_labels = copy.deepcopy(report_a)
    for key in ("accuracy_baseline", "accuracy_result", "accuracy_drop_pp"):
        no_labels["summary"][key] = None
    (check,) = compare_reports(report_a, no_labels, Tolerances(max_accuracy_drop=1))["checks"]
    assert check["value"] is None and not check["passed"]


def test_cli_exit_codes(tmp_path, report_a):
    a = write(tmp_path / "a", report_a)
    b = write(tmp_path / "b", worse(report_a))
    same = run_cli("compare", a, a / "report.json", "--max-accuracy-drop", "0", "--max-latency-increase", "0")
    assert same.returncode == 0, same.explain()
    assert "PASSED" in same.stderr
    regressed = run_cli("compare", a, b, "--max-accuracy-drop", "0.5")
    assert regressed.returncode == 1, regressed.explain()
    assert "REGRESSED (max_accuracy_drop)" in regressed.stderr
    assert run_cli("compare", a, b, "--max-accuracy-drop", "5", "--max-latency-increase", "40").returncode == 0
    improved = run_cli("compare", b, a, "--max-accuracy-drop", "0", "--max-size-increase", "0")
    assert improved.returncode == 0, improved.explain()
    assert run_cli("compare", a, tmp_path / "missing").returncode == 2
    (tmp_path / "not-json.json").write_text("{")
    assert run_cli("compare", a, tmp_path / "not-json.json").returncode == 2


def test_require_passed_fails_when_b_failed_its_gates(tmp_path, report_a):
    failed = copy.deepcopy(report_a)
    failed["passed"] = False
    a, b = write(tmp_path / "a", report_a), write(tmp_path / "b", failed)
    assert run_cli("compare", a, b).returncode == 0
    assert run_cli("compare", a, b, "--require-passed").returncode == 1


def test_cli_formats_summary_file_and_junit(tmp_path, report_a):
    a = write(tmp_path / "a", report_a)
    b = write(tmp_path / "b", worse(report_a))
    as_json = run_cli("compare", a, b, "--format", "json", "--max-accuracy-drop", "1")
    data = json.loads(as_json.stdout)
    assert data["passed"] is False and data["tolerances"]["max_accuracy_drop"] == 1
    md = run_cli("compare", a, b, "--format", "md", "--summary-file", tmp_path / "s.md", "--junit", tmp_path / "j.xml")
    assert md.stdout.startswith("### modelforge compare: PASSED")
    assert "| Top-1 accuracy, result | 98.89% | 96.89% | -2.00 pp |" in md.stdout
    assert (tmp_path / "s.md").read_text().startswith("### modelforge compare")
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert suite.get("name") == "modelforge compare" and suite.get("tests") == "0"
    table = run_cli("compare", a, b, "--max-size-increase", "1")
    assert "Size, result" in table.stdout and "tolerance max_size_increase" in table.stdout
