"""Rendering an optimize search (report.json's `search` section, issue 22): the Pareto front, the HTML chart and
trial table, the Markdown section, and the terminal tables of `modelforge optimize`, from a search dict built
here from the contract (every status and every reason a trial loses)."""

from __future__ import annotations

import copy
import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from modelforge.cli.search_tables import optimize_tables
from modelforge.report.html import render_html
from modelforge.report.markdown import render_markdown
from modelforge.report.pareto import closest_candidates, misses, pareto_front, slo_ms, speedup_p50_ms
from tests.test_report_html import Page  # one HTML reader for the report tests

STORED = Path(__file__).parent / "data" / "report_digits.json"


def trial(id_, prune, tune, precision, runtime, p99, acc, size, status, lost=None, detail="", epochs=3, **extra):
    base_acc = 0.98
    return {
        "id": id_,
        "prune_ratio": prune,
        "fine_tune": tune,
        "precision": precision,
        "runtime": runtime,
        "epochs": epochs,
        "latency_p50_ms": None if p99 is None else round(p99 * 0.8, 4),
        "latency_p99_ms": p99,
        "accuracy": acc,
        "accuracy_drop_pp": None if acc is None else round(100 * (base_acc - acc), 4),
        "size_bytes": size,
        "status": status,
        "lost_because": lost,
        "detail": detail,
        "cached": extra.get("cached", False),
    }


TRIALS = [
    trial("p0.30-none-fp32-onnxruntime", 0.3, "none", "fp32", "onnxruntime", 6.0, None, 900_000, "lost", "slo",
          "p99 6.0 ms > SLO 4 ms before any training", epochs=None),
    trial("p0.30-none-fp32-openvino", 0.3, "none", "fp32", "openvino", 5.5, None, 900_000, "lost", "slo",
          "p99 5.5 ms > SLO 4 ms before any training", epochs=None),
    trial("p0.50-kd-fp32-onnxruntime", 0.5, "kd", "fp32", "onnxruntime", 3.6, 0.975, 480_000, "lost", "dominated",
          "p0.50-kd-int8-openvino is faster and more accurate"),
    trial("p0.50-labels-fp32-onnxruntime", 0.5, "labels", "fp32", "onnxruntime", 3.6, 0.95, 480_000, "lost",
          "stopped_early", "stopped by ASHA after 1 epoch at 95.0%", epochs=1),
    trial("p0.70-kd-fp32-onnxruntime", 0.7, "kd", "fp32", "onnxruntime", 2.9, 0.962, 260_000, "lost",
          "accuracy_gate", "drop 1.8 pp > 1 pp"),
    trial("p0.50-kd-int8-onnxruntime", 0.5, "kd", "int8", "onnxruntime", 2.1, 0.978, 130_000, "finalist"),
    trial("p0.50-kd-int8-openvino", 0.5, "kd", "int8", "openvino", 1.8, 0.979, 125_000, "winner", cached=True),
    trial("p0.30-kd-int8-openvino", 0.3, "kd", "int8", "openvino", 4.4, 0.985, 230_000, "lost", "slo",
          "p99 4.4 ms > SLO 4 ms"),
    # A finalist (quantized, measured interleaved) that lost: drawn grey like every loser.
    trial("p0.70-kd-int8-openvino", 0.7, "kd", "int8", "openvino", 1.5, 0.955, 70_000, "finalist", "accuracy_gate",
          "drop 2.5 pp > 1 pp"),
    trial("p0.50-kd-bf16-onnxruntime", 0.5, "kd", "bf16", "onnxruntime", None, None, None, "lost", "failed",
          "onnxruntime has no bf16 kernel for Conv on this CPU"),
    trial("p0.30-labels-fp32-openvino", 0.3, "labels", "fp32", "openvino", 3.9, None, 900_000, "lost", "budget",
          "time budget spent before its first epoch", epochs=0),
    trial("p0.70-labels-int8-onnxruntime", 0.7, "labels", "int8", "onnxruntime", 1.6, 0.97, 72_000, "finalist"),
]  # fmt: skip
BOTH = [t for t in TRIALS if t["latency_p99_ms"] is not None and t["accuracy"] is not None]
LATENCY_ONLY = [t for t in TRIALS if t["latency_p99_ms"] is not None and t["accuracy"] is None]


def make_search(**changes) -> dict:
    search = {
        "version": 1,
        "objective": "accuracy",
        "constraints": {"latency_p99_ms": 4.0, "speedup": None, "max_accuracy_drop": 1.0, "batch_size": 1,
                        "threads": 2},
        "measured_on": {"cpu": "AMD EPYC", "isa": "avx512_vnni", "node": "driver"},
        "baseline": {"latency_p50_ms": 9.0, "latency_p99_ms": 11.4, "accuracy": 0.98, "size_bytes": 1_800_000},
        "space": {"prune_ratios": [0.3, 0.5, 0.7], "fine_tune": ["kd", "labels"], "precisions": ["fp32", "bf16",
                  "int8"], "runtimes": ["onnxruntime", "openvino"]},
        "stage_seconds": {"latency_screen": 4.2, "fine_tune": 61.0, "quantize": 9.5, "finalists": 12.3,
                          "total": 87.0},
        "ray": {"address": "local", "nodes": 1, "scheduler": "ASHA", "max_epochs": 6, "reduction_factor": 2},
        "trials": copy.deepcopy(TRIALS),
        "winner": "p0.50-kd-int8-openvino",
        "passed": True,
    }  # fmt: skip
    search.update(changes)
    return search


@pytest.fixture(scope="module")
def report() -> dict:
    report = json.loads(STORED.read_text())
    report["search"] = make_search()
    return report


@pytest.fixture(scope="module")
def page(report) -> Page:
    return Page(render_html(report))


def test_pareto_front_is_the_trials_nothing_beats_on_both_axes():
    front = [t["id"] for t in pareto_front(TRIALS)]
    assert front == [
        "p0.70-kd-int8-openvino",
        "p0.70-labels-int8-onnxruntime",
        "p0.50-kd-int8-openvino",
        "p0.30-kd-int8-openvino",
    ]
    # Brute force: on the front exactly when no other trial is as good on both and better on one.
    for t in BOTH:
        dominated = any(
            o["latency_p99_ms"] <= t["latency_p99_ms"]
            and o["accuracy"] >= t["accuracy"]
            and (o["latency_p99_ms"], o["accuracy"]) != (t["latency_p99_ms"], t["accuracy"])
            for o in BOTH
        )
        assert (t["id"] in front) is not dominated, t["id"]
    # Ties on both stay together; a same-latency, less accurate trial does not join; empty in, empty out.
    tie = [
        {"id": name, "latency_p99_ms": p99, "accuracy": acc}
        for name, p99, acc in (("a", 1.0, 0.9), ("b", 1.0, 0.9), ("c", 1.0, 0.8), ("d", 2.0, 0.9))
    ]
    assert [t["id"] for t in pareto_front(tie)] == ["a", "b"]
    assert pareto_front([]) == [] and pareto_front(LATENCY_ONLY) == []


def test_slo_from_a_speedup_and_the_closest_candidates():
    assert slo_ms(make_search()) == 4.0 and speedup_p50_ms(make_search()) is None
    # A speed-up is original p50 / trial p50: the limit is on the p50.
    by_speedup = make_search(constraints={"latency_p99_ms": None, "speedup": 3.0, "max_accuracy_drop": 1.0})
    assert slo_ms(by_speedup) is None and speedup_p50_ms(by_speedup) == pytest.approx(3.0)
    slow = next(t for t in TRIALS if t["id"] == "p0.50-kd-fp32-onnxruntime")  # p50 2.88 ms, drop 0.5 pp
    assert misses(slow, by_speedup) == [] and misses(slow, make_search(constraints={"speedup": 4.0})) == [
        "p50 2.88 ms > 2.25 ms"
    ]
    # An SLO nothing meets: the nearest fully measured trials come first (relative miss), never an unmeasured one.
    strict = make_search(constraints={"latency_p99_ms": 1.0, "max_accuracy_drop": 1.0}, winner=None, passed=False)
    closest = [t["id"] for t in closest_candidates(strict)]
    # 1.6 ms misses by 60%; 1.8 ms by 80%; 2.1 ms by 110%; 1.5 ms by 50% but 1.5 pp over the drop limit too.
    assert closest == ["p0.70-labels-int8-onnxruntime", "p0.50-kd-int8-openvino", "p0.50-kd-int8-onnxruntime"]


def test_html_pareto_chart(page):
    bubbles = [a for a in page.find("circle") if a["in-chart"] == "pareto"]
    by_id = {a["data-series"]: a for a in bubbles}
    assert len(bubbles) == len(BOTH) + 1  # every trial with both figures, and the baseline
    assert set(by_id) == {t["id"] for t in BOTH} | {"baseline"}
    assert by_id["p0.50-kd-int8-openvino"]["data-status"] == "winner"
    assert by_id["baseline"]["data-status"] == "baseline"
    assert {a["data-series"] for a in bubbles if a["data-status"] == "lost"} == {
        t["id"] for t in BOTH if t["lost_because"]
    }
    assert {a["data-series"] for a in bubbles if a["data-status"] == "finalist"} == {
        "p0.50-kd-int8-onnxruntime",
        "p0.70-labels-int8-onnxruntime",
    }
    for t in BOTH:  # x is the p99, y the accuracy in %, as in the trial
        assert float(by_id[t["id"]]["data-x"]) == pytest.approx(t["latency_p99_ms"])
        assert float(by_id[t["id"]]["data-value"]) == pytest.approx(100 * t["accuracy"])
    # The bubble's AREA is proportional to the size (for bubbles above the visible minimum radius).
    big, small = by_id["baseline"], by_id["p0.30-kd-int8-openvino"]
    assert (float(small["r"]) / float(big["r"])) ** 2 == pytest.approx(230_000 / 1_800_000, rel=0.02)
    # The SLO is one vertical line at 4 ms; the accuracy gate a horizontal one 1 pp under the baseline.
    (slo,) = [a for a in page.find("line", data_limit="x") if a["in-chart"] == "pareto"]
    assert float(slo["data-value"]) == 4.0 and slo["x1"] == slo["x2"]
    (gate,) = page.find("line", data_limit="y")
    assert float(gate["data-value"]) == pytest.approx(97.0)
    # The front is ringed and connected; screened-out trials (latency, no accuracy) are ticks on the axis.
    assert {a["data-series"] for a in bubbles if a["data-front"] == "true"} == {t["id"] for t in pareto_front(TRIALS)}
    (line,) = [a for a in page.find("polyline") if a["in-chart"] == "pareto"]
    assert line["data-front"] == "4" and len(line["points"].split()) == 4
    screened = page.find("line", data_status="screened")
    assert {a["data-series"] for a in screened} == {t["id"] for t in LATENCY_ONLY}
    text = " ".join(page.text)
    assert "SLO p99 ≤ 4 ms" in text and "winner: p0.50-kd-int8-openvino" in text


def test_html_trial_table_and_stage_times(page):
    rows = page.find("tr")
    trial_rows = [a["data-trial"] for a in rows if "data-trial" in a]
    assert sorted(trial_rows) == sorted(t["id"] for t in TRIALS)
    assert trial_rows[0] == "p0.50-kd-int8-openvino"  # the winner first, then the finalists
    assert {a["data-lost-because"] for a in page.find("td") if "data-lost-because" in a} == {
        "", "slo", "dominated", "stopped_early", "accuracy_gate", "failed", "budget"
    }  # fmt: skip
    (p99,) = page.find("td", data_metric="trial.p0.70-kd-fp32-onnxruntime.latency_p99_ms")
    assert float(p99["data-value"]) == 2.9
    text = " ".join(page.text)
    for t in TRIALS:
        assert t["detail"] in text
    assert page.find("p", data_winner="p0.50-kd-int8-openvino")
    stages = [a for a in page.find("rect") if a["in-chart"] == "search-stages"]
    assert [a["data-series"] for a in stages] == ["latency screen", "fine tune", "quantize", "finalists"]
    assert float(stages[1]["data-value"]) == 61.0
    assert "Total 87.0 s" in text and "ASHA" in text
    # Self-contained: no script, nothing loaded from elsewhere.
    assert not page.find("script")
    assert not [a for _, a in page.elements if any(v.startswith("http") for k, v in a.items() if k in ("src", "href"))]


def test_html_without_a_winner_lists_the_closest(report):
    failed = copy.deepcopy(report)
    failed["search"] = make_search(
        constraints={"latency_p99_ms": 1.0, "max_accuracy_drop": 1.0, "batch_size": 1, "threads": 2},
        winner=None,
        passed=False,
    )
    page = Page(render_html(failed))
    assert page.find("p", data_winner="")
    text = " ".join(page.text)
    assert "No candidate met the constraints" in text and "p99 1.8 ms > 1 ms" in text
    # A report without a search has no such section (older reports and every other command).
    assert 'id="search"' not in render_html(json.loads(STORED.read_text()))


def test_markdown_search_section(report):
    md = render_markdown(report)
    section = md.split("## Optimize search", 1)[1].split("\n## ", 1)[0]
    assert "**Winner: `p0.50-kd-int8-openvino`**: p99 1.800 ms (SLO 4 ms), accuracy 97.90% (-0.10 pp" in section
    table = [line for line in section.splitlines() if line.startswith("| p0.")]
    assert len(table) == len(TRIALS)
    assert table[0].startswith("| p0.50-kd-int8-openvino | 50% | kd | int8 | openvino | 3 | 1.800 ms |")
    assert "winner (cached)" in table[0]
    assert any("| stopped_early: stopped by ASHA after 1 epoch at 95.0% |" in line for line in table)
    assert "| fine tune | 61.0 s |" in section and "| total | 87.0 s |" in section


def render(renderables, width: int) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    for item in renderables:
        console.print(item)
    return console.file.getvalue()


@pytest.mark.parametrize("width", [80, 160])
def test_terminal_tables(width):
    out = render(optimize_tables(make_search(), width), width)
    assert max(len(line) for line in out.splitlines()) <= width
    assert "Finalists" in out and "1.800" in out and "2.100" in out and "1.600" in out  # numbers never cut
    assert "Winner: p0.50-kd-int8-openvino" in " ".join(out.split())
    assert "12 trials; lost: 3 slo, 2 accuracy gate, 1 dominated" in " ".join(out.split())
    assert "accuracy gate" in " ".join(out.split()).split("Winner")[0]  # the finalist that lost says why
    assert "2.900" not in out  # a trial that lost is not a finalist
    failed = make_search(constraints={"latency_p99_ms": 1.0, "max_accuracy_drop": 1.0}, winner=None, passed=False)
    out = " ".join(render(optimize_tables(failed, width), width).split())
    assert "No candidate met the constraints" in out and "Misses" in out
    assert "p99 1.8 ms > 1 ms" in out


def test_a_damaged_search_section_is_bad_input(tmp_path, report):
    """report.json may come from someone else: a damaged search is one line and exit 2, never a traceback."""
    from conftest import run_cli

    from modelforge.errors import InputError
    from modelforge.report.compare import load_report

    for damage, field in (
        (lambda s: s["trials"][2].update(latency_p99_ms="fast"), "search.trials[2].latency_p99_ms"),
        (lambda s: s.update(trials={"a": 1}), "search.trials: expected a list"),
        (lambda s: s["constraints"].update(latency_p99_ms=[4]), "search.constraints.latency_p99_ms"),
        (lambda s: s["trials"][0].update(status=3), "search.trials[0].status"),
    ):
        damaged = copy.deepcopy(report)
        damage(damaged["search"])
        (tmp_path / "report.json").write_text(json.dumps(damaged))
        with pytest.raises(InputError, match=re.escape(field)):
            load_report(tmp_path)
    result = run_cli("report", tmp_path, "--format", "html")  # the last damage, through the command
    assert result.returncode == 2 and "search.trials[0].status" in result.stderr, result.stderr
    (tmp_path / "report.json").write_text(json.dumps(report))
    assert load_report(tmp_path)["search"]["winner"] == "p0.50-kd-int8-openvino"
