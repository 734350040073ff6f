"""OpenVINO target, the backend interface on two runtimes, precisions by CPU flags, `--target auto`, bench and
doctor across runtimes. Real models (the bundled digits CNN, small ONNX graphs built here) on real runtimes;
CPU flags are simulated where a test needs a CPU this machine is not."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    DIGITS_CALIBRATION,
    DIGITS_EVAL,
    DIGITS_MODEL,
    FAST_LATENCY,
    cli_env,
    digits_recipe,
    load_report,
    one_error_line,
    run_cli,
    write_recipe,
)

from modelforge.machine import precision_support
from modelforge.quantization.auto_target import Candidate, install_hint, measure_and_pick, plan_candidates
from modelforge.runtimes.serving import offer

NO_BF16 = frozenset({"sse4_2", "avx", "fma", "avx2", "avx512f", "avx512_vnni"})
WITH_AMX = frozenset({"avx2", "avx512f", "amx_tile", "amx_int8", "amx_bf16"})
needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None,
    reason="the [openvino] extra is not installed (pip install 'modelforge[openvino]')",
)


def _eval_batch(n: int = 64) -> np.ndarray:
    with np.load(DIGITS_EVAL) as data:
        return data[data.files[0]][:n]


# ------------------------------------------------------------------------------------- backend interface


@needs_openvino
def test_both_runtimes_run_the_bundled_model_and_agree():
    from modelforge.runtimes.base import Backend, open_backend

    x = _eval_batch()
    ort = open_backend(DIGITS_MODEL, threads=1)
    ov = open_backend(DIGITS_MODEL, runtime="openvino", precision="fp32", threads=1)
    assert isinstance(ort, Backend) and isinstance(ov, Backend)
    assert ov.input_names == ort.input_names and ov.output_names == ort.output_names
    (a,), (b,) = ort.run({ort.input_names[0]: x}), ov.run({ov.input_names[0]: x})
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)
    assert (a.argmax(1) == b.argmax(1)).all()
    assert ov.info.runtime == "openvino" and ov.info.precision == "fp32" and ov.info.threads == 1
    assert ov.info.config["inference_precision_hint"] == "f32"  # fp32 means f32, not OpenVINO's own bf16 choice


# -------------------------------------------------------------------------------------- target openvino


@pytest.fixture(scope="module")
def openvino_int8_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ov") / "int8"
    recipe = digits_recipe(out)
    recipe["passes"][0]["config"].update(target="openvino")
    recipe["gates"] = {"min_agreement": 0.97}
    result = run_cli("run", write_recipe(out.parent / "int8.yaml", recipe), "--quiet")
    assert result.returncode == 0, result.explain()
    return out


@needs_openvino
def test_target_openvino_writes_ir_beside_onnx_and_evaluates_it_on_openvino(openvino_int8_run):
    import openvino as ov

    out = openvino_int8_run
    for name in ("model.onnx", "model.xml", "model.bin", "report.json", "manifest.json"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "manifest.json").read_text())
    listed = json.dumps(manifest)
    assert "model.xml" in listed and "model.bin" in listed  # hashed like every other output
    report = load_report(out)
    runtimes = report["evaluation"]["runtimes"]
    assert runtimes["baseline"]["runtime"] == "onnxruntime" and runtimes["baseline"]["precision"] == "fp32"
    assert runtimes["result"]["runtime"] == "openvino" and runtimes["result"]["precision"] == "int8"
    assert report["summary"]["top1_agreement"] >= 0.97
    metrics = report["stages"][-1]["metrics"]
    chosen = metrics["openvino_scheme"]["chosen"]  # both schemes were built and judged (test_openvino_nncf.py)
    assert metrics["target"] == {"runtime": "openvino", "precision": "int8", "quantized": True, "scheme": chosen}
    rows = {r["scheme"]: r for r in metrics["openvino_scheme"]["candidates"]}
    assert set(rows) == {"modelforge", "nncf"} and rows[chosen]["verdict"] == "chosen"
    for row in rows.values():  # both candidates' figures, on the same gates and the same interleaved timing
        assert row["latency_p50_ms"] > 0 and row["top1_agreement"] is not None and row["size_bytes"] > 0
    assert f"chosen: {chosen}" in (out / "report.md").read_text()
    if chosen == "nncf":  # NNCF's INT8 exists only as IR: model.onnx is the float model it quantized
        assert (out / "model.onnx").read_bytes() == DIGITS_MODEL.read_bytes()
    # Its size is the IR's (what OpenVINO loads), not the ONNX file's written beside it.
    ir_bytes = (out / "model.xml").stat().st_size + (out / "model.bin").stat().st_size
    assert report["summary"]["size_bytes_result"] == ir_bytes == report["models"]["result"]["size_bytes"]
    assert ir_bytes != (out / "model.onnx").stat().st_size

    # The IR loads in plain OpenVINO and computes what the evaluated model computed (within INT8 noise).
    compiled = ov.Core().compile_model(str(out / "model.xml"), "CPU")
    x = _eval_batch()
    got = compiled(x)[compiled.outputs[0]]
    from modelforge.runtimes.base import open_backend

    ort = open_backend(DIGITS_MODEL, threads=1)
    want = ort.run({ort.input_names[0]: x})[0]
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95


@needs_openvino
def test_target_openvino_fp32_ships_the_float_model_as_ir(tmp_path):
    out = tmp_path / "fp32"
    recipe = digits_recipe(out)
    recipe["passes"][0]["config"].update(target="openvino", precision="fp32")
    result = run_cli("run", write_recipe(tmp_path / "fp32.yaml", recipe), "--quiet")
    assert result.returncode == 0, result.explain()
    report = load_report(out)
    assert report["evaluation"]["runtimes"]["result"]["precision"] == "fp32"
    assert report["summary"]["output_cosine"] > 0.99999
    assert (out / "model.xml").is_file() and (out / "model.bin").is_file()


@needs_openvino
def test_ir_already_converted_in_the_run_is_copied_not_converted_again(tmp_path, monkeypatch):
    """An export after an OpenVINO quantize writes model.onnx + IR into its work folder, and the output needs
    them again: one conversion, the same files; when a file changed since, the model is converted again."""
    import dataclasses

    from modelforge.model.onnx_model import onnx_artifact
    from modelforge.runtimes import openvino as openvino_runtime
    from modelforge.runtimes.serving import serve_on
    from modelforge.runtimes.writers import write_artifact

    converted = []
    convert = openvino_runtime.write_ir

    def counting_write_ir(onnx_path, xml_path, **kwargs):  # the real conversion, counted
        converted.append(onnx_path)
        return convert(onnx_path, xml_path, **kwargs)

    monkeypatch.setattr(openvino_runtime, "write_ir", counting_write_ir)
    first, second, third = (tmp_path / name for name in ("export-work", "output", "again"))
    for folder in (first, second, third):
        folder.mkdir()
    served = serve_on(onnx_artifact(DIGITS_MODEL), "openvino", "int8")
    written = write_artifact(served, first)
    copied = write_artifact(dataclasses.replace(served, path=written[0]), second)
    assert converted == [first / "model.onnx"]
    assert [p.name for p in copied] == ["model.onnx", "model.xml", "model.bin"]
    for name in ("model.xml", "model.bin"):
        assert (second / name).read_bytes() == (first / name).read_bytes()

    (first / "model.bin").write_bytes(b"")  # no longer what was converted: convert again
    write_artifact(dataclasses.replace(served, path=written[0]), third)
    assert converted == [first / "model.onnx", third / "model.onnx"]
    assert (third / "model.bin").read_bytes() == (second / "model.bin").read_bytes()


def test_target_openvino_without_the_extra_exits_2_with_the_pip_command(tmp_path):
    """openvino made unimportable in a fresh process (sys.modules entry None), as on a core install."""
    for args in (
        ["quantize", str(DIGITS_MODEL), "-c", str(DIGITS_CALIBRATION), "-o", str(tmp_path / "o"), "--target",
         "openvino"],
        ["bench", str(DIGITS_MODEL), "--runtime", "onnxruntime,openvino"],
    ):  # fmt: skip
        proc = _cli_with("sys.modules['openvino'] = None", args)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert "pip install 'modelforge[openvino]'" in proc.stderr
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------ precisions by CPU


def test_bf16_is_offered_only_where_the_cpu_computes_bf16():
    assert precision_support("bf16", NO_BF16)[0] is False
    assert "avx512_bf16" in precision_support("bf16", NO_BF16)[1]
    assert precision_support("bf16", frozenset({"avx512_bf16"}))[0] is True
    assert precision_support("bf16", WITH_AMX)[0] is True
    assert offer("onnxruntime", "bf16", WITH_AMX)[0] is False  # no bf16 execution in onnxruntime's CPU provider
    usable, skipped = plan_candidates(openvino=True, flags=NO_BF16)
    assert ("openvino", "bf16") not in usable and ("openvino", "int8") in usable
    assert any(s["precision"] == "bf16" and "bf16" in s["why"] for s in skipped)
    usable, _ = plan_candidates(openvino=True, flags=WITH_AMX)
    assert ("openvino", "bf16") in usable


def test_core_install_means_onnxruntime_only_and_says_once_what_would_help():
    usable, skipped = plan_candidates(openvino=False, flags=WITH_AMX)
    assert {runtime for runtime, _ in usable} == {"onnxruntime"}
    assert all(s["why"] == "not installed" for s in skipped if s["runtime"] == "openvino")
    assert "pip install 'modelforge[openvino]'" in install_hint(WITH_AMX)
    assert install_hint(frozenset({"sse4_2"})) is None  # nothing to gain: nothing to say


def _cli_with(prelude: str, args: list[str]) -> subprocess.CompletedProcess:
    """`modelforge ARGS` through its real entry point in a fresh process, after `prelude` (a simulated CPU or a
    missing package)."""
    entry = "from modelforge.cli.app import main\nsys.argv = ['modelforge'] + sys.argv[1:]\nmain()\n"
    code = f"import sys\n{prelude}\n{entry}"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=cli_env())


@needs_openvino
def test_bf16_request_on_a_cpu_without_it_is_bad_input(tmp_path):
    simulated = f"import modelforge.machine as m\nm.cpu_flags = lambda: frozenset({sorted(NO_BF16)!r})"
    out = tmp_path / "bf16"
    proc = _cli_with(
        simulated,
        ["quantize", str(DIGITS_MODEL), "-c", str(DIGITS_CALIBRATION), "-o", str(out), "--target", "openvino",
         "--precision", "bf16", "--quiet"],
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "precision bf16 is not offered on this CPU" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
    doctor = _cli_with(simulated, ["doctor", "--json"])
    runtimes = {r["runtime"]: r for r in json.loads(doctor.stdout)["runtimes"]}
    assert runtimes["openvino"]["precisions"]["bf16"]["usable"] is False
    assert runtimes["openvino"]["precisions"]["int8"]["usable"] is True


# -------------------------------------------------------------------------------------------- target auto


def _mlp(path: Path, seed: int, dead_width: int = 0, dead_layers: int = 0) -> Path:
    """x[?, 64] -> MatMul -> Relu -> MatMul -> logits[?, 10]; with `dead_width`, also a chain of real, large
    MatMuls on x whose result is multiplied by zero and added: the same outputs, much more work."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.standard_normal((64, 64)).astype(np.float32) / 8, "w1"),
        numpy_helper.from_array(rng.standard_normal((64, 10)).astype(np.float32) / 8, "w2"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y0" if dead_width else "logits"]),
    ]
    if dead_width:
        heavy = np.random.default_rng(99)
        inits.append(numpy_helper.from_array(heavy.standard_normal((64, dead_width)).astype(np.float32), "d0"))
        last = "dz0"
        nodes.append(helper.make_node("MatMul", ["x", "d0"], [last]))
        for i in range(1, dead_layers + 1):
            w = heavy.standard_normal((dead_width, dead_width)).astype(np.float32) / dead_width
            inits.append(numpy_helper.from_array(w, f"d{i}"))
            nodes.append(helper.make_node("MatMul", [last, f"d{i}"], [f"dz{i}"]))
            last = f"dz{i}"
        inits.append(numpy_helper.from_array(np.zeros((dead_width, 10), np.float32), "zero"))
        nodes += [
            helper.make_node("MatMul", [last, "zero"], ["dead"]),
            helper.make_node("Add", ["y0", "dead"], ["logits"]),
        ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _bound(path: Path, model: Path):
    from modelforge.data import bind, open_dataset
    from modelforge.model.onnx_model import io_spec, load_onnx
    from modelforge.recipe.schema import DataSource

    x = np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32)
    np.savez(path, x=x)
    return bind(open_dataset(DataSource(path=path), ["batch", 64]), io_spec(load_onnx(model)), "eval data")


def test_auto_picks_the_fastest_candidate_that_meets_the_gates(tmp_path):
    """Real models timed for real: the original carries a large dead branch; one candidate is the same function
    without it (fast, exact), one carries a larger branch (slower, exact), one is fast but computes something
    else (fails the cosine gate). The labels are runtime x precision names; onnxruntime runs all four."""
    from modelforge.progress import Progress
    from modelforge.quantization.fallback import Budget

    original = _mlp(tmp_path / "original.onnx", seed=0, dead_width=512, dead_layers=2)
    lean = _mlp(tmp_path / "lean.onnx", seed=0)
    slower = _mlp(tmp_path / "slower.onnx", seed=0, dead_width=512, dead_layers=6)
    wrong = _mlp(tmp_path / "wrong.onnx", seed=5)
    candidates = [
        Candidate("onnxruntime", "fp32", original),
        Candidate("onnxruntime", "int8", slower),
        Candidate("onnxruntime", "bf16", wrong),
        Candidate("onnxruntime", "lean", lean),
    ]
    fast = {"warmup": 2, "min_runs": 16, "max_seconds": 3.0, "min_seconds": 0.5}
    winner = measure_and_pick(
        candidates, float_path=original, data=_bound(tmp_path / "x.npz", original),
        budget=Budget(min_cosine=0.99), batch=1, threads=1, progress=Progress(), measure=fast,
    )  # fmt: skip
    assert winner.path == lean, [(c.name, c.latency["p50_ms"], c.lost) for c in candidates]
    by_path = {c.path: c for c in candidates}
    assert by_path[slower].lost.startswith("slower") and not by_path[slower].misses
    assert "misses the gates" in by_path[wrong].lost and "cosine" in by_path[wrong].lost
    assert by_path[original].lost.startswith("slower")
    assert by_path[lean].metrics["output_cosine"] > 0.9999

    # Only slower candidates: the original ships (auto never ships a slower model).
    again = [Candidate("onnxruntime", "fp32", lean), Candidate("onnxruntime", "int8", slower)]
    winner = measure_and_pick(
        again, float_path=lean, data=_bound(tmp_path / "x2.npz", lean),
        budget=Budget(), batch=1, threads=1, progress=Progress(), measure=fast,
    )  # fmt: skip
    assert winner.path == lean and again[1].lost.startswith("slower")


def test_auto_ships_a_candidate_only_when_paired_blocks_clear_the_ship_line(tmp_path):
    """The sweep ranks; paired blocks against the original decide, as the quantize pass's ship decision does. A
    copy of the original (the same speed) never wins on noise; a clearly faster one wins with its interval on
    record, above the ship line."""
    import shutil

    from modelforge.progress import Progress
    from modelforge.quantization.auto_target import auto_record
    from modelforge.quantization.fallback import Budget
    from modelforge.quantization.speed import MIN_WORTHWHILE_SPEEDUP

    original = _mlp(tmp_path / "original.onnx", seed=0, dead_width=512, dead_layers=2)
    copy = shutil.copy(original, tmp_path / "copy.onnx")
    lean = _mlp(tmp_path / "lean.onnx", seed=0)
    fast = {"warmup": 2, "min_runs": 16, "max_seconds": 3.0, "min_seconds": 0.5}
    data = _bound(tmp_path / "x.npz", original)

    same = [Candidate("onnxruntime", "fp32", original), Candidate("onnxruntime", "int8", Path(copy))]
    winner = measure_and_pick(
        same, float_path=original, data=data, budget=Budget(), batch=1, threads=1, progress=Progress(), measure=fast
    )
    assert winner.path == original, same[1].lost
    assert same[1].lost.startswith(("slower", "not clearly faster"))

    both = [Candidate("onnxruntime", "fp32", original), Candidate("onnxruntime", "lean", lean)]
    winner = measure_and_pick(
        both, float_path=original, data=data, budget=Budget(), batch=1, threads=1, progress=Progress(), measure=fast
    )
    assert winner.path == lean
    assert winner.confirmation.bounded and winner.confirmation.low > MIN_WORTHWHILE_SPEEDUP
    record = auto_record(both, winner, [], None)
    assert record["ship_comparison"]["candidate"] == "onnxruntime lean"
    assert "paired blocks" in record["why"]


@needs_openvino
def test_target_auto_end_to_end_records_the_table_and_ships_the_winner(tmp_path):
    out = tmp_path / "auto"
    recipe = digits_recipe(out)
    recipe["passes"][0]["config"].update(target="auto")  # speed_aware off (digits_recipe): no search per runtime
    recipe["gates"] = {"min_agreement": 0.97}
    recipe["evaluate"] = {"latency": dict(FAST_LATENCY)}
    result = run_cli("run", write_recipe(tmp_path / "auto.yaml", recipe))
    assert result.returncode == 0, result.explain()
    assert "target auto:" in result.stdout
    report = load_report(out)
    auto = report["stages"][-1]["metrics"]["auto"]
    measured = {(r["runtime"], r["precision"]) for r in auto["candidates"]}
    assert ("onnxruntime", "fp32") in measured and ("openvino", "fp32") in measured
    html = (out / "report.html").read_text()
    assert '<table class="records">' in html and '"candidates"' not in html  # a table, not JSON
    chosen = [r for r in auto["candidates"] if r["verdict"] == "chosen"]

    label = auto["chosen"]["precision"] + (f"-{auto['chosen']['scheme']}" if "scheme" in auto["chosen"] else "")
    assert len(chosen) == 1 and (chosen[0]["runtime"], chosen[0]["precision"]) == (auto["chosen"]["runtime"], label)
    listed = measured | {(r["runtime"], r["precision"]) for r in auto["not_measured"]}
    assert ("openvino", "int8-nncf") in listed  # NNCF's INT8 competes next to modelforge's (issue 24)
    for row in auto["candidates"]:
        assert row["latency_p50_ms"] > 0 and row["latency_p99_ms"] >= row["latency_p50_ms"]
        assert row["verdict"] == "chosen" or row["reason"]
    fastest_eligible = min(
        (r for r in auto["candidates"] if "misses" not in (r["reason"] or "")), key=lambda r: r["latency_p50_ms"]
    )
    assert chosen[0] is fastest_eligible or chosen[0]["runtime"] == "onnxruntime"  # or none was clearly faster
    served = report["evaluation"]["runtimes"]["result"]
    assert (served["runtime"], served["precision"]) == (auto["chosen"]["runtime"], auto["chosen"]["precision"])
    assert (out / "model.xml").is_file() == (served["runtime"] == "openvino")
    markdown = (out / "report.md").read_text()
    assert "### quantize: auto" in markdown and f"result on {served['runtime']}" in markdown


# ------------------------------------------------------------------------------------------------- bench


@needs_openvino
def test_bench_measures_models_x_runtimes_x_precisions(tmp_path):
    result = run_cli(
        "bench", DIGITS_MODEL, "--runtime", "onnxruntime,openvino", "--precision", "fp32,int8",
        "--batch-sizes", "1", "--min-runs", "8", "--warmup", "1", "--max-seconds", "1", "--threads", "1",
        "-o", tmp_path / "bench.json",
    )  # fmt: skip
    assert result.returncode == 0, result.explain()
    record = json.loads((tmp_path / "bench.json").read_text())
    stats = record["latency"]["sweep"][0]["stats"]
    assert set(stats) == {"model.onnx [onnxruntime fp32]", "model.onnx [openvino fp32]"}
    assert {r["runtime"] for r in record["runtimes"].values()} == {"onnxruntime", "openvino"}
    assert {(s["runtime"], s["precision"]) for s in record["skipped"]} == {
        ("onnxruntime", "int8"),
        ("openvino", "int8"),
    }
    assert all("quantize it first" in s["why"] for s in record["skipped"])
    assert "Not measured" in result.stdout


def test_bench_rejects_an_unknown_runtime():
    result = run_cli("bench", DIGITS_MODEL, "--runtime", "tvm")
    assert result.returncode == 2
    assert "--runtime tvm" in one_error_line(result)
