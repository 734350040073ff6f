"""Triton export: config.pbtxt parsed by Triton's own ModelConfig protobuf (dims, dtypes, batching from the
measured sweep, warm-up files with a real sample, labels), version 2 on re-export, the memory budget, and
bad inputs (exit 2 or 3, one line, nothing written)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import DIGITS_CALIBRATION, DIGITS_EVAL, DIGITS_MODEL, one_error_line, run_cli, snapshot

pytest.importorskip("tritonclient", reason="the [triton] extra (tritonclient) checks generated configs")

from modelforge.export.batching import choose_batching  # noqa: E402
from modelforge.export.triton import model_config_pb2, parse_config  # noqa: E402

SWEEP = "1,4,16"


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    folder = tmp_path_factory.mktemp("triton")
    labels = folder / "labels.txt"
    labels.write_text("\n".join(f"digit {i}" for i in range(10)) + "\n")
    out = folder / "model_repository"
    result = run_cli(
        "export", DIGITS_MODEL, "--target", "triton", "--name", "digits", "-c", DIGITS_CALIBRATION,
        "-e", DIGITS_EVAL, "-o", out, "--batch-sizes", SWEEP, "--labels", labels, "--threads", "1", "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.explain()
    return out


def _stage(out):
    report = json.loads((out / "report.json").read_text())
    return next(s for s in report["stages"] if s["pass"] == "export")["metrics"]


def test_config_round_trips_through_tritons_protobuf(repository):
    config = parse_config((repository / "digits" / "config.pbtxt").read_text())
    pb2 = model_config_pb2()
    assert config.name == "digits" and config.platform == "onnxruntime_onnx"
    (image,) = config.input
    assert image.name == "image" and image.data_type == pb2.TYPE_FP32 and list(image.dims) == [1, 8, 8]
    (logits,) = config.output
    assert logits.name == "logits" and list(logits.dims) == [10] and logits.label_filename == "labels.txt"
    assert config.instance_group[0].kind == pb2.ModelInstanceGroup.KIND_CPU
    triton = _stage(repository)["triton"]
    swept = [row["batch_size"] for row in triton["sweep"]]
    assert swept == [1, 4, 16] and all(row["p50_ms"] > 0 and row["throughput_per_s"] > 0 for row in triton["sweep"])
    # max_batch_size and the preferred sizes come from the sweep: no memory budget, so the largest measured.
    assert config.max_batch_size == 16 == triton["max_batch_size"]
    preferred = list(config.dynamic_batching.preferred_batch_size)
    assert preferred and set(preferred) <= set(swept)
    assert preferred == triton["dynamic_batching"]["preferred_batch_sizes"]
    assert (
        config.dynamic_batching.max_queue_delay_microseconds
        == triton["dynamic_batching"]["max_queue_delay_microseconds"]
    )
    assert (repository / "digits" / "1" / "model.onnx").read_bytes() == DIGITS_MODEL.read_bytes()
    assert (repository / "digits" / "labels.txt").read_text().splitlines()[3] == "digit 3"


def test_warmup_is_a_real_calibration_sample_in_tritons_raw_format(repository):
    config = parse_config((repository / "digits" / "config.pbtxt").read_text())
    (warmup,) = config.model_warmup
    assert warmup.batch_size == 1
    spec = warmup.inputs["image"]
    assert list(spec.dims) == [1, 8, 8]
    raw = (repository / "digits" / "warmup" / spec.input_data_file).read_bytes()
    first = np.load(DIGITS_CALIBRATION)["image"][0].astype("<f4")
    assert raw == first.tobytes()  # row-major little-endian float32, one sample


def test_every_repository_file_is_in_the_manifest(repository):
    manifest = json.loads((repository / "manifest.json").read_text())
    listed = {f["path"] for f in manifest["files"]}
    on_disk = {p.relative_to(repository).as_posix() for p in repository.rglob("*") if p.is_file()}
    assert listed == on_disk - {"manifest.json"}
    html = (repository / "report.html").read_text()
    assert 'id="export"' in html and 'data-table="batch-sweep"' in html  # the sweep with its memory column
    assert [f'data-batch="{b}"' in html for b in (1, 4, 16)] == [True] * 3
    assert {"digits/config.pbtxt", "digits/1/model.onnx", "baseline_stats.json", "report.json"} <= listed


def test_memory_budget_picks_the_largest_batch_that_fits(repository):
    rows = [dict(row) for row in _stage(repository)["triton"]["sweep"]]
    assert all(row["peak_memory_bytes"] for row in rows)  # measured for every batch size
    ordered = sorted(rows, key=lambda r: r["peak_memory_bytes"])
    budget = ordered[0]["peak_memory_bytes"]
    fitting = [r["batch_size"] for r in rows if r["peak_memory_bytes"] <= budget]
    chosen = choose_batching(rows, budget)
    assert chosen["max_batch_size"] == max(fitting)
    assert set(chosen["preferred_batch_sizes"]) <= set(fitting)
    assert choose_batching(rows, budget - 1)["max_batch_size"] is None


def test_re_export_adds_version_2_and_keeps_version_1(repository, tmp_path):
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(repository, repo)
    shutil.copytree(repo / "digits", repo / "other_model")  # another model served from the same repository
    (repo / "NOTES.txt").write_text("the user's own file")
    before = snapshot(repo / "digits" / "1")
    other = snapshot(repo / "other_model")
    result = run_cli(
        "export", DIGITS_MODEL, "--target", "triton", "--name", "digits", "-c", DIGITS_CALIBRATION,
        "-o", repo, "--skip-latency", "--no-warmup", "--threads", "1", "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.explain()
    assert snapshot(repo / "digits" / "1") == before and snapshot(repo / "other_model") == other
    assert (repo / "NOTES.txt").read_text() == "the user's own file"
    assert (repo / "digits" / "2" / "model.onnx").is_file()
    assert _stage(repo)["triton"]["version"] == 2
    config = parse_config((repo / "digits" / "config.pbtxt").read_text())
    assert not config.model_warmup and config.max_batch_size == 32  # --skip-latency: no sweep, default max
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_bad_triton_inputs_are_one_line_and_write_nothing(tmp_path):
    labels = tmp_path / "three.txt"
    labels.write_text("a\nb\nc\n")
    out = tmp_path / "out"
    result = run_cli(
        "export", DIGITS_MODEL, "--target", "triton", "-c", DIGITS_CALIBRATION, "-o", out, "--labels", labels,
        "--skip-latency",
    )  # fmt: skip
    assert result.returncode == 2 and "expected 10" in one_error_line(result)
    result = run_cli("export", DIGITS_MODEL, "--target", "triton", "--name", "a/b", "-o", out)
    assert result.returncode == 2 and "a/b" in one_error_line(result)
    result = run_cli(
        "export", DIGITS_MODEL, "--target", "triton", "-c", DIGITS_CALIBRATION, "-o", out, "--batch-sizes", "1",
        "--memory-budget", "0.001", "--threads", "1", "-q",
    )  # fmt: skip
    assert result.returncode == 3 and "memory budget" in one_error_line(result)
    assert not out.exists()


def test_openvino_ir_and_tensorrt_plan_configs_name_their_triton_backend():
    from modelforge.artifact import IOSpec, TensorSpec
    from modelforge.export.triton import config_text

    io = IOSpec(
        inputs=(TensorSpec("pixels", "uint8", (None, 224, 224, 3)), TensorSpec("mask", "bool", ("batch", "n"))),
        outputs=(TensorSpec("scores", "float16", (None, 1000)),),
    )
    for suffix, key, value in ((".xml", "backend", "openvino"), (".plan", "platform", "tensorrt_plan")):
        text = config_text(
            name="m", model_suffix=suffix, io=io, max_batch_size=8, batching=None, instance_kind="KIND_GPU",
            instance_count=2, warmup_inputs=None, labels=False, tensorrt_accelerator=None,
        )  # fmt: skip
        config = parse_config(text)
        assert getattr(config, key) == value
        assert config.default_model_filename == ("model.xml" if suffix == ".xml" else "model.plan")
        pb2 = model_config_pb2()
        assert [(t.data_type, list(t.dims)) for t in config.input] == [
            (pb2.TYPE_UINT8, [224, 224, 3]),
            (pb2.TYPE_BOOL, [-1]),
        ]
        assert config.output[0].data_type == pb2.TYPE_FP16
        assert config.instance_group[0].count == 2 and config.instance_group[0].kind == pb2.ModelInstanceGroup.KIND_GPU


def test_tensorrt_accelerator_for_onnx_runtime_parses():
    from modelforge.artifact import IOSpec, TensorSpec
    from modelforge.export.triton import config_text

    io = IOSpec(inputs=(TensorSpec("x", "float32", (None, 4)),), outputs=(TensorSpec("y", "float32", (None, 2)),))
    text = config_text(
        name="m", model_suffix=".onnx", io=io, max_batch_size=0, batching=None, instance_kind="KIND_GPU",
        instance_count=1, warmup_inputs=None, labels=False, tensorrt_accelerator="fp16",
    )  # fmt: skip
    config = parse_config(text)
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
    assert list(config.input[0].dims) == [-1, 4]  # max_batch_size 0: the batch axis stays in dims


def test_fixed_shape_model_has_no_batching_and_warms_up_with_its_whole_shape(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "fixed.onnx")
    samples = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=samples)
    out = tmp_path / "repo"
    result = run_cli(
        "export", tmp_path / "fixed.onnx", "--target", "triton", "-c", tmp_path / "data.npz", "-o", out,
        "--skip-latency", "--threads", "1", "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.explain()
    config = parse_config((out / "model" / "config.pbtxt").read_text())
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [2, 4]
    raw = (out / "model" / "warmup" / "x.raw").read_bytes()
    assert raw == samples[:2].astype("<f4").tobytes()
    assert json.loads((out / "baseline_stats.json").read_text())["batch_size"] == 2


def test_unknown_target_names_the_recipe_field(tmp_path):
    result = run_cli("export", DIGITS_MODEL, "--target", "coreml", "-o", tmp_path / "out")
    line = one_error_line(result)
    assert result.returncode == 2 and "passes[0].config.target" in line and "'triton'" in line


def test_a_model_quantized_for_openvino_is_served_by_tritons_openvino_backend(tmp_path):
    """quantize --target openvino -> export triton in one recipe: the repository serves the IR that was measured."""
    pytest.importorskip("openvino", reason="the [openvino] extra writes the IR")
    from conftest import FAST_LATENCY, write_recipe

    recipe = {
        "version": 1,
        "model": str(DIGITS_MODEL),
        "data": {"calibration": str(DIGITS_CALIBRATION), "eval_data": str(DIGITS_EVAL)},
        "passes": [
            {"name": "quantize", "config": {"target": "openvino", "precision": "int8", "speed_aware": False}},
            # A memory budget makes the batch sweep run even with latency skipped.
            {
                "name": "export",
                "config": {"target": "triton", "name": "digits", "batch_sizes": [1, 4], "memory_budget": 4096},
            },
        ],
        "evaluate": {"latency": dict(FAST_LATENCY), "skip_latency": True},
        "output": {"dir": str(tmp_path / "repo")},
    }
    result = run_cli("run", write_recipe(tmp_path / "recipe.yaml", recipe), "-q")
    assert result.returncode == 0, result.explain()
    config = parse_config((tmp_path / "repo" / "digits" / "config.pbtxt").read_text())
    assert config.backend == "openvino" and config.default_model_filename == "model.xml"
    version = tmp_path / "repo" / "digits" / "1"
    assert sorted(p.name for p in version.iterdir()) == ["model.bin", "model.xml"]
    # The same weights as the IR written beside model.onnx (the XML differs only in generated layer ids).
    assert (version / "model.bin").read_bytes() == (tmp_path / "repo" / "model.bin").read_bytes()
    triton = _stage(tmp_path / "repo")["triton"]
    assert triton["served_files"] == ["model.xml", "model.bin"]
    assert triton["sweep_runtime"]["runtime"] == "openvino"  # the batch sweep measured what Triton serves
