"""Speed-aware quantization: the search's decisions, and the never-slower rule through the CLI.

The decision logic is tested with a scripted judge (which ratios it would measure), so the assertions do
not depend on this machine's speed; the CLI tests check what was recorded and shipped, whatever the timing.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from conftest import DIGITS_CALIBRATION, DIGITS_EVAL, DIGITS_MODEL, load_report, run_cli

from modelforge.quantization.speed import KEEP_FLOAT_MARGIN, MIN_WORTHWHILE_SPEEDUP, choose_fastest, conv_kind


class ScriptedJudge:
    """Ratios by (first, second) file names: what a latency measurement would have found."""

    def __init__(self, ratios: dict[tuple[str, str], float]):
        self.ratios = ratios
        self.asked: list[tuple[str, str]] = []

    def ratio(self, first: Path, second: Path, seconds: float = 0) -> float:
        key = (first.name, second.name)
        self.asked.append(key)
        return self.ratios.get(key, 1.0)

    def forget(self, path: Path) -> None:
        pass


def build_named(nodes: frozenset[str], path: Path) -> Path:
    return path  # the search only hands paths to the judge here


GROUPS = {"Conv 1x1": ["c1", "c2"], "HardSigmoid": ["h1"], "Conv depthwise": ["d1"]}


def test_groups_faster_in_float_are_kept_in_float(tmp_path):
    judge = ScriptedJudge(
        {
            ("q.onnx", "speed-compute-only.onnx"): 0.9,  # all light ops in float at once: slower
            ("q.onnx", "speed-01.onnx"): 1.01,  # HardSigmoid in float: within noise, stays INT8
            ("q.onnx", "speed-02.onnx"): 1.4,  # depthwise in float: clearly faster
            ("float.onnx", "speed-02.onnx"): 1.8,
        }
    )
    choice = choose_fastest(Path("float.onnx"), Path("q.onnx"), GROUPS, build_named, judge, tmp_path)
    assert choice.float_groups == ["Conv depthwise"]
    assert choice.shipped == "quantized" and choice.model_path.name == "speed-02.onnx"
    assert choice.speedup_vs_float == 1.8
    assert [s["kept_float"] for s in choice.steps] == [False, False, False, True]


def test_the_float_model_ships_when_no_int8_configuration_is_clearly_faster(tmp_path):
    judge = ScriptedJudge({("float.onnx", "q.onnx"): MIN_WORTHWHILE_SPEEDUP - 0.01})
    choice = choose_fastest(Path("float.onnx"), Path("q.onnx"), GROUPS, build_named, judge, tmp_path)
    assert choice.shipped == "float" and choice.model_path == Path("float.onnx")
    assert "float model ships" in choice.reason


def test_compute_only_int8_is_tried_first_and_its_float_groups_skipped(tmp_path):
    judge = ScriptedJudge(
        {("q.onnx", "speed-compute-only.onnx"): KEEP_FLOAT_MARGIN, ("float.onnx", "speed-compute-only.onnx"): 1.3}
    )
    choice = choose_fastest(Path("float.onnx"), Path("q.onnx"), GROUPS, build_named, judge, tmp_path)
    assert choice.float_groups == ["HardSigmoid"]
    assert ("q.onnx", "speed-01.onnx") not in judge.asked  # HardSigmoid already in float


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
    else:
        assert search["speedup_vs_float"] >= MIN_WORTHWHILE_SPEEDUP
        assert stage["quantized_nodes"] > 0
    assert "speed search" in (out / "report.md").read_text()
