"""What people read in report.md / report.html: rounded numbers, Markdown tables no value can break, the baseline
named by the format it was handed over in, and nested findings (the `target: auto` candidates) as tables.

Rendered from the stored report of a real digits run (tests/data/report_digits.json), with the stage details a
prune run records (its values and names as a real run wrote them) added to it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from modelforge.report.format import md_cell, md_table, model_label
from modelforge.report.html import render_html
from modelforge.report.markdown import render_markdown, render_step_summary

STORED = Path(__file__).parent / "data" / "report_digits.json"
PARAMS_RATIO = 0.33748416677073484  # as a structured prune run recorded it


@pytest.fixture
def report() -> dict:
    report = json.loads(STORED.read_text())
    report["stages"].append(
        {
            "name": "prune",
            "pass": "prune",
            "seconds": 12.345678,
            "input_format": "torch-export",
            "output_format": "torch-export",
            "metrics": {
                "method": "magnitude",
                "importance": "magnitude (|w|)",
                "params_ratio": PARAMS_RATIO,
                "accuracy_after_prune": 0.9129629629629629,
                "layers": [
                    {"layer": "stem|conv`0`", "weights": 288, "zeros": 144, "sparsity": 0.5000000000000001},
                    {"layer": "head\nfc", "weights": 640, "zeros": 320, "sparsity": 0.5},
                ],
            },
        }
    )
    return report


def _unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def _tables(markdown: str) -> list[list[str]]:
    tables, current = [], []
    for line in markdown.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables + ([current] if current else [])


def test_every_markdown_table_keeps_its_columns(report):
    """`|`, backticks and newlines inside values are escaped, in every table of report.md and the CI summary."""
    for markdown in (render_markdown(report), render_step_summary(report)):
        tables = _tables(markdown)
        assert tables
        for table in tables:
            columns = _unescaped_pipes(table[0])
            assert all(_unescaped_pipes(row) == columns for row in table), table
    markdown = render_markdown(report)
    assert "importance=magnitude (\\|w\\|)" in markdown
    assert "stem\\|conv\\`0\\`" in markdown and "head fc" in markdown


def test_floats_are_rounded_in_md_and_html_and_whole_in_json(report):
    markdown, html = render_markdown(report), render_html(report)
    assert "params_ratio=0.3375" in markdown
    assert "0.3375" in html
    for text in (markdown, html):
        assert str(PARAMS_RATIO) not in text
        assert "0.9129629629629629" not in text and "0.5000000000000001" not in text
    assert json.loads(json.dumps(report))["stages"][-1]["metrics"]["params_ratio"] == PARAMS_RATIO


def test_md_cell_and_table_escape_once():
    assert md_cell("a|b") == "a\\|b" and md_cell("x\ny") == "x y" and md_cell("`n`") == "\\`n\\`"
    assert md_cell(0.123456789) == "0.1235" and md_cell(3) == "3" and md_cell(None) == "None"
    assert md_table(("k", "v"), [("a|b", 1.0 / 3)]) == ["| k | v |", "|---|---|", "| a\\|b | 0.3333 |"]


def test_baseline_is_labelled_by_its_source_format(report):
    baseline = report["models"]["baseline"]
    assert model_label(baseline) == "ONNX"
    assert "(ONNX) vs result" in render_markdown(report)
    baseline.update(path="examples/prune/model.pt2", source_format="torch-export")  # as a .pt2 run records it
    assert model_label(baseline) == "torch.export, run as ONNX"
    assert "`examples/prune/model.pt2` (torch.export, run as ONNX) vs result" in render_markdown(report)
    assert "(torch.export, run as ONNX) vs result" in render_html(report)
    assert model_label({"format": "onnx", "source_format": "keras"}) == "Keras, run as ONNX"


def test_auto_table_is_a_table_in_html_not_json(report):
    auto = {
        "chosen": {"runtime": "onnxruntime", "precision": "int8"},
        "why": "fastest candidate that meets the gates",
        "candidates": [
            {"runtime": "onnxruntime", "precision": "int8", "latency_p50_ms": 0.0151234, "verdict": "chosen"},
            {"runtime": "openvino", "precision": "fp32", "latency_p50_ms": 0.0412345, "verdict": "slower"},
        ],
        "not_measured": [],
    }
    report["stages"][0]["metrics"]["auto"] = auto
    html = render_html(report)
    start = html.index('id="stages"')
    section = html[start : html.index("</section>", start)]
    assert '"candidates"' not in section and "<pre>" not in section
    table = re.search(r'<table class="records">.*?</table>', section)
    assert table, section[:2000]
    cells = re.findall(r"<td>([^<]*)</td>", table.group(0))
    assert cells[:4] == ["onnxruntime", "int8", "0.01512", "chosen"], cells
    assert "openvino" in cells and "0.04123" in cells
