"""Rendering a stored report.json: HTML (parsed: charts present and their numbers), Markdown, JUnit, and the
`modelforge report` command that re-renders without re-running."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from modelforge.report.charts.line import line_chart
from modelforge.report.html import render_html
from modelforge.report.junit import render_junit
from modelforge.report.markdown import render_markdown, render_step_summary

STORED = Path(__file__).parent / "data" / "report_digits.json"
CHARTS = {"latency-distribution", "batch-sweep-latency", "batch-sweep-throughput", "accuracy-size-speed", "stages"}


@pytest.fixture
def report() -> dict:
    return json.loads(STORED.read_text())


class Page(HTMLParser):
    """Every element with its attributes (and `in-chart`: the data-chart of the SVG it is drawn in), plus the
    text, of one HTML document."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.chart = ""
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = {k: v or "" for k, v in attrs}
        if tag == "svg":
            self.chart = attributes.get("data-chart", "")
        self.elements.append((tag, {**attributes, "in-chart": self.chart}))

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, {**{k: v or "" for k, v in attrs}, "in-chart": self.chart}))

    def handle_endtag(self, tag):
        if tag == "svg":
            self.chart = ""

    def handle_data(self, data):
        self.text.append(data)

    def find(self, tag: str | None = None, **attrs: str) -> list[dict[str, str]]:
        return [
            a
            for t, a in self.elements
            if (tag is None or t == tag) and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def value(self, metric: str) -> float | None:
        cells = self.find(data_metric=metric)
        assert len(cells) == 1, f"{metric}: {len(cells)} cells"
        raw = cells[0]["data-value"]
        return None if raw == "" else float(raw)


def test_html_has_every_chart_and_section(report):
    page = Page(render_html(report))
    charts = {a["data-chart"] for a in page.find("svg") if "data-chart" in a}
    assert charts >= CHARTS
    sections = {a["id"] for a in page.find("section") if "id" in a}
    assert sections >= {"summary", "gates", "latency", "sweep", "tradeoff", "outputs", "sessions", "stages", "machine"}
    assert page.find(data_verdict="PASSED")


def test_html_numbers_match_the_report(report):
    page = Page(render_html(report))
    summary = report["summary"]
    for key in ("accuracy_baseline", "accuracy_result", "latency_p50_ms_result", "speedup", "size_bytes_result"):
        assert page.value(key) == pytest.approx(summary[key], rel=1e-9)
    latency = report["evaluation"]["latency"]
    for model in ("baseline", "result"):
        for stat in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "throughput_per_s"):
            assert page.value(f"latency.{model}.{stat}") == pytest.approx(latency[model][stat], rel=1e-9)
    for entry in latency["sweep"]:
        batch = entry["batch_size"]
        assert page.value(f"sweep.{batch}.result.p50_ms") == pytest.approx(entry["stats"]["result"]["p50_ms"])
        assert page.value(f"sweep.{batch}.speedup") == pytest.approx(entry["speedup"])
    for gate in report["gates"]:
        assert page.value(f"gate.{gate['name']}.value") == pytest.approx(gate["value"])
        (cell,) = page.find(data_gate=gate["name"])
        assert cell["data-passed"] == "true"
    (met,) = page.find(data_slo="result")
    assert met["data-met"] == "true"
    sessions = report["evaluation"]["sessions"]
    assert page.value("sessions.result.create_ms") == pytest.approx(sessions["result"]["create_ms"])
    metrics = report["evaluation"]["metrics"]
    assert page.value("metrics.top5_accuracy") == pytest.approx(metrics["top5_accuracy_result"])
    assert page.value("metrics.confidence_result.mean") == pytest.approx(metrics["confidence_result"]["mean"])
    (spec,) = metrics["custom"]
    assert page.value(f"custom.{spec}") == pytest.approx(metrics["custom"][spec])


def test_charts_draw_the_stored_samples(report):
    page = Page(render_html(report))
    latency = report["evaluation"]["latency"]
    histograms = {a["data-series"]: a for a in page.find("polygon") if "data-runs" in a}
    assert set(histograms) == {"baseline", "result"}
    for model in ("baseline", "result"):
        assert int(histograms[model]["data-runs"]) == len(latency["samples_ms"][model])
        (marker,) = [m for m in page.find("line", data_series=model) if "marker" in m.get("class", "")]
        assert float(marker["data-value"]) == pytest.approx(np.median(latency["samples_ms"][model]), rel=1e-5)
    sweep = {e["batch_size"]: e["stats"]["result"] for e in latency["sweep"]}
    for chart, series, stat in (
        ("batch-sweep-latency", "result", "p50_ms"),
        ("batch-sweep-latency", "result p99", "p99_ms"),
        ("batch-sweep-throughput", "result", "throughput_per_s"),
    ):
        points = page.find("circle", data_series=series, in_chart=chart)
        drawn = {int(c["data-x"]): float(c["data-value"]) for c in points}
        assert drawn == pytest.approx({batch: stats[stat] for batch, stats in sweep.items()}, rel=1e-5)
    assert "SLO p99 ≤ 50 ms" in "".join(page.text)  # in the latency chart's legend
    bubbles = {c["data-series"]: c for c in page.find("circle") if "data-size" in c}
    assert int(bubbles["result"]["data-size"]) == report["summary"]["size_bytes_result"]
    assert float(bubbles["baseline"]["data-value"]) == pytest.approx(report["summary"]["accuracy_baseline"] * 100)


def test_sweep_chart_draws_the_slo_limit_when_near_the_data():
    svg = line_chart(
        "batch-sweep-latency",
        [1, 8, 32],
        {"result": [10.0, 40.0, 150.0]},
        dashed={"result": [20.0, 80.0, 260.0]},
        threshold=(200.0, "SLO p99 ≤ 200 ms"),
        title="t",
        x_label="batch size",
        y_label="ms",
    )
    page = Page(svg)
    (line,) = page.find("line", **{"class": "threshold"})
    assert float(line["data-value"]) == 200.0
    far = line_chart("x", [1, 8], {"result": [1.0, 2.0]}, threshold=(200.0, "SLO"), title="t", x_label="", y_label="")
    assert not Page(far).find("line", **{"class": "threshold"}) and "above: 200" in far


def test_html_is_self_contained(report):
    html = render_html(report)
    page = Page(html)
    assert not page.find("script") and not page.find("link") and not page.find("img") and not page.find("iframe")
    for _, attrs in page.elements:
        for name in ("src", "href"):
            assert not attrs.get(name, "").startswith(("http:", "https:", "//")), attrs
    urls = {u for u in html.split('"') if u.startswith(("http://", "https://"))}
    assert urls <= {"http://www.w3.org/2000/svg"}  # the SVG namespace is a name, never fetched
    assert "@import" not in html
    assert all(ref.startswith("#") for ref in html.split("url(")[1:])  # only references inside the page


def test_failed_gate_and_missed_slo_render_as_failures(report):
    failed = copy.deepcopy(report)
    failed["passed"] = False
    failed["gates"][-1].update(value=75.0, passed=False)
    failed["evaluation"]["latency"]["slo"]["models"]["result"].update(met=False, largest_batch_meeting=None)
    page = Page(render_html(failed))
    assert page.find(data_verdict="FAILED")
    (cell,) = page.find(data_gate="slo_latency_p99_ms")
    assert cell["data-passed"] == "false"
    (met,) = page.find(data_slo="result")
    assert met["data-met"] == "false"
    assert "MISSES" in "".join(page.text)


def test_older_or_smaller_reports_still_render(report):
    old = copy.deepcopy(report)  # as written before latency profiles: no sweep, samples, sessions, confidence
    for key in ("sweep", "samples_ms", "slo", "stop_rule", "stopped", "inter_op_threads", "warmup"):
        old["evaluation"]["latency"].pop(key)
    old["evaluation"].pop("sessions")
    for key in ("confidence_baseline", "confidence_result", "top5_accuracy_baseline", "top5_accuracy_result", "custom"):
        old["evaluation"]["metrics"].pop(key)
    page = Page(render_html(old))
    charts = {a["data-chart"] for a in page.find("svg") if "data-chart" in a}
    assert charts == {"accuracy-size-speed", "stages"}
    assert page.value("latency_p50_ms_result") == pytest.approx(report["summary"]["latency_p50_ms_result"])
    assert "## Stages" in render_markdown(old)

    no_latency = copy.deepcopy(old)
    no_latency["evaluation"]["latency"] = None
    for key in ("latency_p50_ms_baseline", "latency_p50_ms_result", "speedup"):
        no_latency["summary"][key] = None
    assert "Latency was not measured" in "".join(Page(render_html(no_latency)).text)

    one_batch = copy.deepcopy(report)
    one_batch["evaluation"]["latency"]["sweep"] = one_batch["evaluation"]["latency"]["sweep"][:1]
    page = Page(render_html(one_batch))
    assert not page.find("svg", data_chart="batch-sweep-latency")
    assert "evaluate.latency.batch_sizes" in "".join(page.text)


def test_markdown_has_the_profile_and_output_sections(report):
    md = render_markdown(report)
    assert md.startswith("# modelforge report: PASSED")
    for heading in ("## Gates", "## Latency profile", "## Output comparison", "## Stages"):
        assert heading in md
    assert "| 32 |" in md  # a sweep row
    assert "Latency SLO p99 <= 50 ms at batch 1" in md
    assert "Top-5 accuracy" in md and "Top-1 confidence mean" in md


def test_step_summary_is_compact_markdown(report):
    text = render_step_summary(report)
    assert text.startswith("### :white_check_mark: modelforge: PASSED")
    assert "| Gate | Threshold | Value | Verdict |" in text
    assert "## Stages" not in text and text.endswith("\n\n")


def test_junit_has_one_case_per_gate(report):
    root = ET.fromstring(render_junit(report))
    suite = root.find("testsuite")
    assert suite.get("tests") == str(len(report["gates"])) and suite.get("failures") == "0"
    assert [c.get("name") for c in suite.iter("testcase")] == [g["name"] for g in report["gates"]]
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert float(props["speedup"]) == pytest.approx(report["summary"]["speedup"], rel=1e-5)

    failed = copy.deepcopy(report)
    failed["passed"] = False
    failed["gates"][0].update(value=2.5, passed=False)
    suite = ET.fromstring(render_junit(failed)).find("testsuite")
    assert suite.get("failures") == "1"
    (failure,) = suite.iter("failure")
    assert "accuracy_drop_pp = 2.5, threshold 0.5" in failure.get("message")


@pytest.mark.parametrize("source", ["file", "dir"])
def test_report_command_re_renders_every_format(tmp_path, report, source):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text(json.dumps(report))
    target = out if source == "dir" else out / "report.json"

    html = run_cli("report", target, "--format", "html", "-o", tmp_path / "again.html")
    assert html.returncode == 0, html.explain()
    assert (tmp_path / "again.html").read_text() == render_html(report)

    md = run_cli("report", target)  # Markdown on stdout by default
    assert md.returncode == 0 and md.stdout == render_markdown(report)
    as_json = run_cli("report", target, "--format", "json")
    assert json.loads(as_json.stdout) == report
    junit = run_cli("report", target, "-f", "junit", "--summary-file", tmp_path / "summary.md")
    assert ET.fromstring(junit.stdout).find("testsuite").get("failures") == "0"
    assert (tmp_path / "summary.md").read_text() == render_step_summary(report)


def test_report_command_exit_codes(tmp_path, report):
    failed = copy.deepcopy(report)
    failed["passed"] = False
    (tmp_path / "report.json").write_text(json.dumps(failed))
    assert run_cli("report", tmp_path, "--format", "md").returncode == 0  # rendering is not gating
    assert run_cli("report", tmp_path, "--exit-code").returncode == 1
    missing = run_cli("report", tmp_path / "nowhere")
    assert missing.returncode == 2 and "not found" in missing.stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "report.json").write_text('{"not": "a report"}')
    assert run_cli("report", tmp_path / "bad").returncode == 2
    assert run_cli("report", tmp_path, "--format", "pdf").returncode == 2
