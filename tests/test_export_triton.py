"""Triton export: config.pbtxt parsed by Triton's own ModelConfig protobuf (dims, dtypes, batching from the
measured sweep, warm-up files with a real sample, labels), a shared repository that stays servable (two
models, three versions, signatures checked, reports outside it), an export without data, the memory budget,
and bad inputs (exit 2 or 3, one line, nothing written)."""

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
    out = folder / "run"
    result = run_cli(
        "export", DIGITS_MODEL, "--target", "triton", "--name", "digits", "-c", DIGITS_CALIBRATION,
        "-e", DIGITS_EVAL, "-o", out, "--batch-sizes", SWEEP, "--labels", labels, "--threads", "1", "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.explain()
    return out / "model_repository"


def _stage(out):
    if out.name == "model_repository":  # the default repository lives in the run's output
        out = out.parent
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
    out = repository.parent
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {f["path"] for f in manifest["files"]}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert listed == on_disk - {"manifest.json"}
    assert [p.name for p in repository.iterdir()] == ["digits"]  # the repository root holds model folders only
    html = (out / "report.html").read_text()
    assert 'id="export"' in html and 'data-table="batch-sweep"' in html  # the sweep with its memory column
    assert [f'data-batch="{b}"' in html for b in (1, 4, 16)] == [True] * 3
    inside = {f"model_repository/digits/{f}" for f in ("config.pbtxt", "1/model.onnx", "baseline_stats.json")}
    assert inside | {"report.json", "model.onnx"} <= listed


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


def _renamed(source, folder, inputs, outputs):
    """The digits model with other input/output names (another model's signature)."""
    import onnx

    model = onnx.load(source)
    renames = {**inputs, **outputs}
    for node in model.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for value in [*model.graph.input, *model.graph.output]:
        value.name = renames.get(value.name, value.name)
    path = folder / f"{'-'.join(renames.values())}.onnx"
    onnx.save(model, path)
    return path


def _export(model, repo, out, *extra):
    return run_cli(
        "export", model, "--target", "triton", "-c", DIGITS_CALIBRATION, "--repository", repo, "-o", out,
        "--skip-latency", "--threads", "1", "-q", *extra,
    )  # fmt: skip


def test_two_models_and_three_versions_share_one_repository(tmp_path):
    """Model a (digits: image -> logits), model b (pixels -> scores), a's version 2; a version 3 of a with b's
    signature is refused unless --replace-config. Every config parses, each model keeps its own baseline,
    the root holds only model folders, and nothing of another model or version changes."""
    repo = tmp_path / "repo"
    other = _renamed(DIGITS_MODEL, tmp_path, {"image": "pixels"}, {"logits": "scores"})
    assert _export(DIGITS_MODEL, repo, tmp_path / "run-a1", "--name", "a").returncode == 0
    result = _export(other, repo, tmp_path / "run-b1", "--name", "b", "--no-warmup")
    assert result.returncode == 0, result.explain()
    a1, b1 = snapshot(repo / "a"), snapshot(repo / "b")
    result = _export(DIGITS_MODEL, repo, tmp_path / "run-a2", "--name", "a")
    assert result.returncode == 0, result.explain()
    assert f"added {repo / 'a' / '2'}" in result.stderr
    assert snapshot(repo / "b") == b1 and snapshot(repo / "a" / "1") == {
        k.removeprefix("1/"): v for k, v in a1.items() if k.startswith("1/")
    }
    assert _stage(tmp_path / "run-a2")["triton"]["version"] == 2
    # The shared files version 2 replaced stay in its run's output.
    assert (tmp_path / "run-a2" / "replaced" / "a" / "baseline_stats.json").read_bytes() == a1["baseline_stats.json"]

    before = snapshot(repo)
    refused = _export(other, repo, tmp_path / "run-a3", "--name", "a")
    assert refused.returncode == 2, refused.explain()
    line = one_error_line(refused)
    assert "image FP32 [1, 8, 8]" in line and "pixels FP32 [1, 8, 8]" in line and "logits" in line and "scores" in line
    assert "--replace-config" in refused.stderr
    assert snapshot(repo) == before and not (tmp_path / "run-a3").exists()

    result = _export(other, repo, tmp_path / "run-a3", "--name", "a", "--replace-config")
    assert result.returncode == 0, result.explain()
    assert sorted(p.name for p in repo.iterdir()) == ["a", "b"]  # reports never land at the root
    assert sorted(p.name for p in (repo / "a").iterdir() if p.name.isdigit()) == ["1", "2", "3"]
    assert not [p for p in repo.rglob(".*")]  # no staging folder or temporary file left
    names = {}
    for name in ("a", "b"):
        config = parse_config((repo / name / "config.pbtxt").read_text())
        names[name] = ([t.name for t in config.input], [t.name for t in config.output])
        baseline = json.loads((repo / name / "baseline_stats.json").read_text())
        assert (repo / name / baseline["model"]).is_file()  # the baseline names its own model's version
        assert [i["name"] for i in baseline["inputs"]] == names[name][0]
    assert names == {"a": (["pixels"], ["scores"]), "b": (["pixels"], ["scores"])}
    assert json.loads((repo / "a" / "baseline_stats.json").read_text())["model"] == "3/model.onnx"
    for version in ("1", "2", "3"):
        assert (repo / "a" / version / "model.onnx").is_file()
    assert (tmp_path / "run-a3" / "replaced" / "a" / "config.pbtxt").read_text().count('"image"') == 2
    for run in ("run-a1", "run-b1", "run-a2", "run-a3"):  # each run's reports in its own folder
        assert {"report.json", "manifest.json", "model.onnx"} <= {p.name for p in (tmp_path / run).iterdir()}
    # drift finds a model's baseline from its folder
    drift = run_cli("drift", repo / "b", DIGITS_EVAL, "-o", tmp_path / "drift.json", "-q")
    assert drift.returncode in (0, 1), drift.explain()
    assert json.loads((tmp_path / "drift.json").read_text())["model"] == str(repo / "b" / "1" / "model.onnx")
    drift = run_cli("drift", repo, DIGITS_EVAL, "-o", tmp_path / "drift2.json", "-q")
    assert drift.returncode == 2 and "holds no baseline_stats.json" in one_error_line(drift)
    assert str(repo / "a") in drift.stderr and str(repo / "b") in drift.stderr  # the hint names the models


def test_a_hand_written_config_with_the_backend_named_accepts_a_matching_version(tmp_path):
    """`backend: "onnxruntime"` is the platform onnxruntime_onnx; a config left to Triton's auto-complete (no
    inputs or outputs listed) is checked on its runtime only."""
    for name, tensors in (("named", True), ("auto", False)):
        model_dir = tmp_path / "repo" / name
        (model_dir / "1").mkdir(parents=True)
        (model_dir / "1" / "model.onnx").write_bytes(DIGITS_MODEL.read_bytes())
        config = f'name: "{name}"\nbackend: "onnxruntime"\nmax_batch_size: 8\n'
        if tensors:
            config += 'input [ { name: "image" data_type: TYPE_FP32 dims: [ 1, 8, 8 ] } ]\n'
            config += 'output [ { name: "logits" data_type: TYPE_FP32 dims: [ 10 ] } ]\n'
        (model_dir / "config.pbtxt").write_text(config)
        result = _export(DIGITS_MODEL, tmp_path / "repo", tmp_path / f"run-{name}", "--name", name)
        assert result.returncode == 0, result.explain()
        assert (model_dir / "2" / "model.onnx").is_file()
        assert (tmp_path / f"run-{name}" / "replaced" / name / "config.pbtxt").read_text() == config


def test_a_repository_is_never_the_runs_output(repository, tmp_path):
    """Not even one an earlier modelforge wrote with its reports at the root (so --force would move it aside)."""
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(repository.parent, repo)
    (repo / "model_repository" / "digits").rename(repo / "digits")
    (repo / "model_repository").rmdir()
    before = snapshot(repo)
    for extra in ((), ("--force",)):
        result = run_cli(
            "export", DIGITS_MODEL, "--target", "triton", "--name", "digits", "-o", repo, "--skip-latency",
            "-q", *extra,
        )  # fmt: skip
        assert result.returncode == 2, result.explain()
        assert "Triton model repository" in one_error_line(result) and "--repository" in result.stderr
    result = _export(DIGITS_MODEL, repo, repo / "reports", "--name", "digits")
    assert result.returncode == 2 and "inside the Triton repository" in one_error_line(result)
    assert snapshot(repo) == before and not (tmp_path / "repo.previous").exists()


def test_a_gate_failure_leaves_a_shared_repository_alone(tmp_path):
    repo = tmp_path / "repo"
    result = run_cli(  # no data: agreement is not measured, so its gate fails
        "export", DIGITS_MODEL, "--target", "triton", "--repository", repo, "-o", tmp_path / "run",
        "--skip-latency", "--threads", "1", "-q", "--min-agreement", "0.5",
    )  # fmt: skip
    assert result.returncode == 1, result.explain()
    assert (tmp_path / "run" / "report.json").is_file() and not repo.exists()
    assert f"not added {repo / 'model' / '1'}: a gate failed" in result.stderr


def test_export_without_data_gives_a_servable_layout(tmp_path):
    """No --calibration, no --eval-data: the sweep runs on generated inputs, warm-up uses Triton's own
    random_data, and the baseline and the evaluation are skipped, each with a line saying so."""
    out = tmp_path / "run"
    result = run_cli(
        "export", DIGITS_MODEL, "--target", "triton", "--name", "digits", "-o", out, "--batch-sizes", "1,4",
        "--threads", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.explain()
    assert "no drift baseline: no data" in result.stderr and "evaluation skipped" in result.stderr
    model_dir = out / "model_repository" / "digits"
    config = parse_config((model_dir / "config.pbtxt").read_text())
    (warmup,) = config.model_warmup
    assert warmup.inputs["image"].random_data and not warmup.inputs["image"].input_data_file
    assert not (model_dir / "warmup").exists() and not (model_dir / "baseline_stats.json").exists()
    triton = _stage(out)["triton"]
    assert [row["batch_size"] for row in triton["sweep"]] == [1, 4] and config.max_batch_size == 4
    assert "generated" in triton["sweep_inputs"]
    report = json.loads((out / "report.json").read_text())
    assert report["evaluation"]["skipped"] and report["summary"]["top1_agreement"] is None
    assert (model_dir / "1" / "model.onnx").read_bytes() == DIGITS_MODEL.read_bytes()


def test_generated_inputs_are_dtype_correct_and_ids_stay_small():
    from modelforge.export.batching import generated_samples
    from modelforge.export.triton import config_text
    from modelforge.model.artifact import IOSpec, TensorSpec

    io = IOSpec(
        inputs=(TensorSpec("ids", "int64", (None, "seq")), TensorSpec("mask", "bool", (None, "seq")),
                TensorSpec("x", "float16", (None, 3))),
        outputs=(TensorSpec("y", "float32", (None, 2)),),
    )  # fmt: skip
    samples = generated_samples(io, {"seq": 5})
    assert samples["ids"].dtype == np.int64 and samples["ids"].shape[1:] == (5,) and samples["ids"].min() >= 0
    assert samples["ids"].max() <= 1 and samples["mask"].dtype == bool and samples["x"].dtype == np.float16
    specs = {n: TensorSpec(n, str(v.dtype), v.shape[1:]) for n, v in samples.items()}
    config = parse_config(
        config_text(
            name="m",
            model_suffix=".onnx",
            io=io,
            max_batch_size=4,
            batching=None,
            instance_kind="KIND_CPU",
            instance_count=1,
            warmup_inputs=specs,
            labels=False,
            tensorrt_accelerator=None,
            warmup_generated=True,
        )  # fmt: skip
    )
    inputs = config.model_warmup[0].inputs
    assert inputs["ids"].zero_data and inputs["mask"].zero_data and inputs["x"].random_data


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
    from modelforge.export.triton import config_text
    from modelforge.model.artifact import IOSpec, TensorSpec

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
    from modelforge.export.triton import config_text
    from modelforge.model.artifact import IOSpec, TensorSpec

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
    out = tmp_path / "run"
    result = run_cli(
        "export", tmp_path / "fixed.onnx", "--target", "triton", "-c", tmp_path / "data.npz", "-o", out,
        "--skip-latency", "--threads", "1", "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.explain()
    model_dir = out / "model_repository" / "model"
    config = parse_config((model_dir / "config.pbtxt").read_text())
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [2, 4]
    raw = (model_dir / "warmup" / "x.raw").read_bytes()
    assert raw == samples[:2].astype("<f4").tobytes()
    assert json.loads((model_dir / "baseline_stats.json").read_text())["batch_size"] == 2


def test_unknown_target_names_the_option_and_every_target(tmp_path):
    result = run_cli("export", DIGITS_MODEL, "--target", "coreml", "-o", tmp_path / "out")
    line = one_error_line(result)
    assert result.returncode == 2 and "--target 'coreml'" in line
    assert all(target in line for target in ("triton", "jetson", "tensorrt", "tflite"))


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
        "output": {"dir": str(tmp_path / "run")},
    }
    result = run_cli("run", write_recipe(tmp_path / "recipe.yaml", recipe), "-q")
    assert result.returncode == 0, result.explain()
    config = parse_config((tmp_path / "run" / "model_repository" / "digits" / "config.pbtxt").read_text())
    assert config.backend == "openvino" and config.default_model_filename == "model.xml"
    version = tmp_path / "run" / "model_repository" / "digits" / "1"
    assert sorted(p.name for p in version.iterdir()) == ["model.bin", "model.xml"]
    # The same IR as beside model.onnx (converted once in the export's work folder, then copied).
    assert (version / "model.bin").read_bytes() == (tmp_path / "run" / "model.bin").read_bytes()
    assert (version / "model.xml").read_bytes() == (tmp_path / "run" / "model.xml").read_bytes()
    triton = _stage(tmp_path / "run")["triton"]
    assert triton["served_files"] == ["model.xml", "model.bin"]
    assert triton["sweep_runtime"]["runtime"] == "openvino"  # the batch sweep measured what Triton serves


def test_a_recipe_names_a_repository_only_inside_its_folder(tmp_path):
    """`repository` is a path a recipe file chooses to write: the recipe path rule applies (--allow-paths)."""
    from conftest import write_recipe

    outside = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    recipe = {
        "version": 1,
        "model": str(DIGITS_MODEL),
        "passes": [{"name": "export", "config": {"target": "triton", "repository": str(outside / "repo")}}],
        "output": {"dir": str(tmp_path / "run")},
    }
    result = run_cli("run", write_recipe(tmp_path / "recipe.yaml", recipe), "-q")
    assert result.returncode == 2 and "passes[0].config.repository" in one_error_line(result)
    assert not outside.exists() and not (tmp_path / "run").exists()


def test_the_engine_runs_without_a_pass_on_data_and_callables_and_returns_its_record(tmp_path):
    """export/ is a domain package: a work folder, a config and a progress channel in; the model handed on and
    the stage record out, with no pass context or pipeline around it."""
    from modelforge.export.config import ExportConfig
    from modelforge.export.job import ExportJob
    from modelforge.export.run import export_target
    from modelforge.model.loader import load_model
    from modelforge.progress import Progress

    class Lines(Progress):
        def __init__(self):
            self.lines = []

        def log(self, message):
            self.lines.append(message)

    progress = Lines()
    config = ExportConfig(target="triton", name="digits", batch_sizes=[1, 4])
    job = ExportJob(workdir=tmp_path, threads=1, measure_latency=False, progress=progress)
    result = export_target(load_model(DIGITS_MODEL), config, job)
    assert result.artifact.format == "onnx" and result.artifact.side_outputs == (tmp_path / "bundle",)
    assert result.artifact.path.read_bytes() == DIGITS_MODEL.read_bytes() and result.artifact.publications == ()
    assert list(result.record) == ["target", "baseline_stats", "triton"] and result.record["baseline_stats"] is None
    assert result.record["triton"]["max_batch_size"] == 4 and result.record["triton"]["sweep"] == []
    assert progress.lines == ["no drift baseline: no data (pass --calibration or --eval-data to record one)"]
    folder = tmp_path / "bundle" / "model_repository" / "digits"
    assert parse_config((folder / "config.pbtxt").read_text()).max_batch_size == 4
    assert (folder / "1" / "model.onnx").read_bytes() == DIGITS_MODEL.read_bytes()
