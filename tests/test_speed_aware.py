"""Speed-aware quantization: the search's decisions, and the never-slower rule through the CLI.

The decision logic is tested with a scripted judge (which speed-up intervals it would measure), so the
assertions do not depend on this machine's speed; the CLI tests check what was recorded and shipped,
whatever the timing. The statistics themselves: tests/test_paired_stats.py.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from conftest import DIGITS_CALIBRATION, DIGITS_EVAL, DIGITS_MODEL, load_report, run_cli

from modelforge.measure.paired import RatioInterval
from modelforge.quantization.speed import (
    EVERYTHING,
    MIN_WORTHWHILE_SPEEDUP,
    choose_fastest,
    conv_kind,
    ship_verdict,
)


def measured(estimate: float, low: float, high: float, pairs: int = 20) -> RatioInterval:
    return RatioInterval(estimate, low, high, pairs, 0.95)


CLEARLY_NO_GAIN = measured(1.0, 0.99, 1.01)


class ScriptedJudge:
    """Speed-up intervals by (first, second) file names: what a paired measurement would have found."""

    def __init__(self, intervals: dict[tuple[str, str], RatioInterval]):
        self.intervals = intervals
        self.asked: list[tuple[str, str]] = []

    def compare(self, first: Path, second: Path, **_) -> RatioInterval:
        key = (first.name, second.name)
        self.asked.append(key)
        return self.intervals.get(key, CLEARLY_NO_GAIN)

    def forget(self, path: Path) -> None:
        pass


def build_named(nodes: frozenset[str], path: Path) -> Path:
    return path  # the search only hands paths to the judge here


GROUPS = {"Conv 1x1": ["c1", "c2"], "HardSigmoid": ["h1"], "Conv depthwise": ["d1"]}
FAST = measured(1.8, 1.6, 2.0)


def test_a_group_stays_in_float_only_when_its_gain_is_significant(tmp_path):
    judge = ScriptedJudge(
        {
            ("q.onnx", "speed-compute-only.onnx"): measured(0.9, 0.85, 0.95),  # light ops in float: slower
            ("q.onnx", "speed-01.onnx"): measured(1.16, 0.97, 1.4),  # HardSigmoid: 1.16x, but cannot tell
            ("q.onnx", "speed-02.onnx"): measured(1.4, 1.3, 1.5),  # depthwise in float: clearly faster
            ("float.onnx", "speed-02.onnx"): FAST,
        }
    )
    choice = choose_fastest(Path("float.onnx"), Path("q.onnx"), GROUPS, build_named, judge, tmp_path)
    assert choice.float_groups == ["Conv depthwise"]
    assert choice.shipped == "quantized" and choice.model_path.name == "speed-02.onnx"
    assert choice.speedup_vs_float == 1.8 and choice.decision == "clear"
    assert [s["kept_float"] for s in choice.steps] == [False, False, False, True, True]
    assert choice.steps[2]["interval"] == [0.97, 1.4]  # the noisy 1.16x is recorded with its interval
    assert choice.record()["ship_interval"]["interval"] == [1.6, 2.0]


def test_everything_quantized_is_always_a_candidate(tmp_path):
    """Two groups each looked faster in float, but together they do not beat everything quantized head to
    head: the fully quantized (smaller) model goes on."""
    judge = ScriptedJudge(
        {
            ("q.onnx", "speed-01.onnx"): measured(1.06, 1.01, 1.1),
            ("speed-01.onnx", "speed-02.onnx"): measured(1.05, 1.01, 1.09),
            ("q.onnx", "speed-02.onnx"): measured(0.97, 0.9, 1.02),  # the head-to-head comparison
            ("float.onnx", "q.onnx"): measured(1.5, 1.4, 1.6),
        }
    )
    choice = choose_fastest(Path("float.onnx"), Path("q.onnx"), GROUPS, build_named, judge, tmp_path)
    assert choice.float_groups == [] and choice.model_path == Path("q.onnx")
    assert choice.steps[-1]["group"].endswith(EVERYTHING) and choice.steps[-1]["kept_float"] is False
    assert choice.shipped == "quantized" and choice.speedup_vs_float == 1.5


def test_the_float_model_ships_when_int8_is_clearly_below_the_ship_line(tmp_path):
    judge = ScriptedJudge({("float.onnx", "q.onnx"): measured(1.05, 1.02, 1.08)})
    choice = choose_fastest(Path("float.onnx"), Path("q.onnx"), GROUPS, build_named, judge, tmp_path)
    assert choice.shipped == "float" and choice.model_path == Path("float.onnx")
    assert "float model ships" in choice.reason and choice.decision == "clear"


def test_compute_only_int8_is_tried_first_and_its_float_groups_skipped(tmp_path):
    judge = ScriptedJudge(
        {
            ("q.onnx", "speed-compute-only.onnx"): measured(1.2, 1.1, 1.3),
            ("float.onnx", "speed-compute-only.onnx"): measured(1.3, 1.2, 1.4),
        }
    )
    choice = choose_fastest(Path("float.onnx"), Path("q.onnx"), GROUPS, build_named, judge, tmp_path)
    assert choice.float_groups == ["HardSigmoid"]
    assert ("q.onnx", "speed-01.onnx") not in judge.asked  # HardSigmoid already in float


def test_ship_verdicts_from_the_interval():
    line = MIN_WORTHWHILE_SPEEDUP
    clear_int8 = ship_verdict(measured(1.4, line + 0.01, 1.6))
    assert (clear_int8.shipped, clear_int8.decision) == ("quantized", "clear")
    clear_float = ship_verdict(measured(1.0, 0.95, line - 0.01))
    assert (clear_float.shipped, clear_float.decision) == ("float", "clear")
    # Straddling the line when time is up (a busy machine): a tie, so the smaller model, unless it measured
    # slower than float; the report says the run could not tell.
    wide = ship_verdict(measured(1.25, 0.9, 2.0))
    assert (wide.shipped, wide.decision) == ("quantized", "unclear") and "could not tell" in wide.reason
    slower = ship_verdict(measured(0.95, 0.8, 1.2))
    assert (slower.shipped, slower.decision) == ("float", "unclear") and "float model ships" in slower.reason


def test_convolutions_are_grouped_by_kind():
    def conv(group: int) -> onnx.NodeProto:
        return onnx.helper.make_node("Conv", ["x", "w"], ["y"], group=group)

    assert conv_kind(conv(32), [32, 1, 3, 3]) == "Conv depthwise"
    assert conv_kind(conv(1), [64, 32, 1, 1]) == "Conv 1x1"
    assert conv_kind(conv(1), [64, 32, 3, 3]) == "Conv spatial"


def test_cli_records_the_search_and_never_ships_a_model_it_measured_slower(tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "quantize", DIGITS_MODEL, "-c", DIGITS_CALIBRATION, "-e", DIGITS_EVAL, "-o", out, "--threads", "1", "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.explain()
    report = load_report(out)
    stage = report["stages"][-1]["metrics"]
    search = stage["speed_search"]
    assert search["shipped"] in ("quantized", "float") and search["reason"]
    assert report["evaluation"]["latency"]["session_config"] == {"session.intra_op.allow_spinning": "0"}
    if search["shipped"] == "float":
        assert (out / "model.onnx").read_bytes() == DIGITS_MODEL.read_bytes()
        assert stage["quantized_nodes"] == 0
    else:  # clearly above the ship line, or straddling it and not measured slower than float
        low, high = search["ship_interval"]["interval"]
        assert high >= search["speedup_vs_float"] >= low
        assert low > MIN_WORTHWHILE_SPEEDUP or (search["decision"] == "unclear" and search["speedup_vs_float"] >= 1)
        assert stage["quantized_nodes"] > 0
    assert "speed search" in (out / "report.md").read_text()
