"""Regression tests for the bugs a review found: each test fails on the code before its fix.

Real models and data throughout (the bundled digits CNN, small ONNX graphs built here, a torch.export program);
nothing of onnxruntime, onnx or torch is mocked.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from conftest import (
    DIGITS,
    DIGITS_CALIBRATION,
    DIGITS_EVAL,
    DIGITS_MODEL,
    cli_env,
    digits_recipe,
    load_report,
    one_error_line,
    run_cli,
    write_recipe,
)
from onnx import TensorProto, helper, numpy_helper

REPORT_DIGITS = Path(__file__).parent / "data" / "report_digits.json"


def _quantize(model, out, *extra, calibration=DIGITS_CALIBRATION, cwd=None, env=None):
    return run_cli(
        "quantize", model, "-c", calibration, "-o", out, "--threads", "1", "-q", "--no-speed-aware", *extra,
        cwd=cwd, env=env,
    )  # fmt: skip


def _digits_eval() -> tuple[np.ndarray, np.ndarray]:
    with np.load(DIGITS_EVAL) as data:
        return data["image"], data["labels"]


def _fast_recipe(tmp_path: Path, out: Path, **overrides) -> Path:
    return write_recipe(tmp_path / "recipe.yaml", digits_recipe(out, **overrides))


# --------------------------------------------------------------------------------------- unsafe loading


def _evil_pickle(marker: Path) -> bytes:
    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch '{marker}'",))

    return pickle.dumps(RunsCode())


def test_pt2_archive_with_a_pickle_is_refused_without_running_it(tmp_path):
    """torch.export.load falls back to torch.load(weights_only=False) when an archive member is not a plain
    tensor pickle: a crafted .pt2 ran arbitrary code before the fix."""
    torch = pytest.importorskip("torch")
    program = torch.export.export(torch.nn.Sequential(torch.nn.Linear(4, 3)), (torch.randn(2, 4),))
    good = tmp_path / "good.pt2"
    torch.export.save(program, str(good))
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt2"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(evil, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            dst.writestr(item, _evil_pickle(marker) if item.filename.endswith("sample_inputs/model.pt") else data)
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32))

    result = _quantize(evil, tmp_path / "out", calibration=tmp_path / "x.npz")

    assert not marker.exists(), "the pickle in the archive was executed"
    assert result.returncode == 2, result.explain()
    assert "pickle" in one_error_line(result)  # one line: torch's own logged traceback is muted too
    assert not (tmp_path / "out").exists()
    # The same program saved normally still converts and quantizes.
    assert _quantize(good, tmp_path / "good-out", calibration=tmp_path / "x.npz").returncode == 0


# --------------------------------------------------------------------------------------- labels


@pytest.mark.parametrize(("bad", "shown"), [(-1, "label -1"), (10, "label 10")])
def test_labels_out_of_range_are_rejected_before_any_work(tmp_path, bad, shown):
    """A negative label silently counted as a miss (accuracy 89% instead of 99%); both ends are now checked
    with the data, before the passes run (a dry run finds them)."""
    images, labels = _digits_eval()
    eval_file = tmp_path / "eval.npz"
    np.savez(eval_file, image=images, labels=np.where(labels == 3, bad, labels))

    dry = run_cli("quantize", DIGITS_MODEL, "-c", DIGITS_CALIBRATION, "-e", eval_file, "--dry-run")
    assert dry.returncode == 2, dry.explain()
    assert shown in one_error_line(dry) and "0..9" in one_error_line(dry)

    result = _quantize(DIGITS_MODEL, tmp_path / "out", "-e", eval_file, "--max-accuracy-drop", "1")
    assert result.returncode == 2, result.explain()
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------- terminal output


def test_paths_with_brackets_are_printed_as_they_are(tmp_path):
    """rich took `[br]` in a path for a style tag and dropped it from the terminal lines and tables."""
    folder = tmp_path / "sp ace" / "[br]"
    folder.mkdir(parents=True)
    for file in (DIGITS_MODEL, DIGITS_CALIBRATION, DIGITS_EVAL):
        shutil.copy(file, folder / file.name)
    out = tmp_path / "[out] x"
    result = run_cli(
        "quantize", folder / "model.onnx", "-c", folder / "calibration.npz", "-e", folder / "eval.npz",
        "-o", out, "--threads", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.explain()
    assert f"Evaluated on eval data {folder / 'eval.npz'}." in result.stdout
    assert f"Wrote {out}/" in result.stdout

    compared = run_cli("compare", out, out)
    assert compared.returncode == 0, compared.explain()
    assert f"A = {out}" in compared.stdout

    bench = run_cli(
        "bench", folder / "model.onnx", out / "model.onnx", "--batch-sizes", "1", "--min-runs", "5",
        "--max-seconds", "0.2", "--warmup", "1", "--threads", "1",
    )  # fmt: skip
    assert bench.returncode == 0, bench.explain()
    assert "[br]/model.onnx" in bench.stdout and "[out] x/model.onnx" in bench.stdout


def test_debug_table_shows_node_names_on_an_80_column_terminal():
    """With a boxed table and long headers, rich gave the Node and Op columns zero width at 80 columns."""
    result = run_cli("debug", DIGITS_MODEL, "-c", DIGITS_CALIBRATION, "-q", "--top", "3", env=cli_env(COLUMNS="80"))
    assert result.returncode == 0, result.explain()
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert "/featur" in result.stdout and "Conv" in result.stdout and "Added" in result.stdout


# --------------------------------------------------------------------------------------- recipes from flags


def test_recipe_from_flags_replays_from_another_folder(tmp_path):
    """--save-recipe and recipe.resolved.yaml kept the flags' relative paths, which `run` then read relative to
    the recipe's own folder: the replay failed with "model ... not found". A missing folder for --save-recipe
    was an internal error."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(DIGITS_MODEL, work / "model.onnx")
    shutil.copy(DIGITS_CALIBRATION, work / "calib.npz")
    saved = work / "recipes" / "new" / "r.yaml"

    made = _quantize("model.onnx", "out", "--save-recipe", saved, calibration="calib.npz", cwd=work)
    assert made.returncode == 0, made.explain()
    recipe = yaml.safe_load(saved.read_text())
    assert recipe["model"]["path"] == str(work / "model.onnx")
    assert recipe["data"]["calibration"]["path"] == str(work / "calib.npz")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for replayed in (saved, work / "out" / "recipe.resolved.yaml"):
        # its paths lie in work/, outside the recipe's folder and the cwd: the user allows them explicitly
        dry = run_cli("run", replayed, "-o", "replay", "--dry-run", "--allow-paths", work, cwd=elsewhere)
        assert dry.returncode == 0, dry.explain()


def test_side_files_go_into_new_folders_and_a_directory_is_bad_input(tmp_path):
    schema = run_cli("schema", "-o", tmp_path / "new" / "dir" / "recipe.schema.json")
    assert schema.returncode == 0, schema.explain()
    json.loads((tmp_path / "new" / "dir" / "recipe.schema.json").read_text())

    folder = tmp_path / "a-folder"
    folder.mkdir()
    out = tmp_path / "out"
    junit = _quantize(DIGITS_MODEL, out, "--junit", folder)
    assert junit.returncode == 2, junit.explain()  # was: the whole run, then an internal error (exit 3)
    assert "--junit" in one_error_line(junit)
    assert not out.exists()

    rendered = run_cli("report", REPORT_DIGITS, "-o", folder)
    assert rendered.returncode == 2, rendered.explain()
    assert "cannot write" in one_error_line(rendered)


# --------------------------------------------------------------------------------------- models


def test_missing_external_data_is_a_one_line_input_error(tmp_path):
    """A model whose external-data file is missing was an internal error (exit 3) while sizing it."""
    model = onnx.load(str(DIGITS_MODEL))
    onnx.save_model(model, str(tmp_path / "model.onnx"), save_as_external_data=True, location="weights.bin")
    (tmp_path / "weights.bin").unlink()

    for args in (
        ("quantize", tmp_path / "model.onnx", "-c", DIGITS_CALIBRATION, "-o", tmp_path / "out"),
        ("inspect", tmp_path / "model.onnx"),
        ("bench", tmp_path / "model.onnx"),
    ):
        result = run_cli(*args)
        assert result.returncode == 2, result.explain()
        assert "weights.bin" in one_error_line(result)


def _fixed_batch_digits(path: Path, batch: int) -> Path:
    model = onnx.load(str(DIGITS_MODEL))
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_value = batch
    onnx.save(model, str(path))
    return path


def test_fixed_batch_model_with_a_partial_last_batch(tmp_path):
    """A model exported with batch 4 crashed onnxruntime (internal error) on a last batch of 2 samples."""
    model = _fixed_batch_digits(tmp_path / "fixed4.onnx", 4)
    images, labels = _digits_eval()
    np.savez(tmp_path / "eval10.npz", image=images[:10], labels=labels[:10])

    result = _quantize(model, tmp_path / "out", "-e", tmp_path / "eval10.npz", "--max-accuracy-drop", "5")
    assert result.returncode == 0, result.explain()
    report = load_report(tmp_path / "out")
    assert report["evaluation"]["metrics"]["samples"] == 8
    assert "2 dropped" in report["evaluation"]["data"]

    np.savez(tmp_path / "eval3.npz", image=images[:3], labels=labels[:3])
    too_few = _quantize(model, tmp_path / "out2", "-e", tmp_path / "eval3.npz")
    assert too_few.returncode == 2, too_few.explain()
    assert "fixed batch size 4" in one_error_line(too_few)


def _mlp(path: Path, with_nan: bool = False) -> Path:
    """x [batch, 16] -> MatMul -> Relu -> MatMul -> [batch, 4] (with_nan: sqrt of a negative: NaN outputs)."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((16, 32)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal((32, 4)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.array([1000.0], dtype=np.float32), "shift"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["z" if with_nan else "y"], name="mm2"),
    ]
    if with_nan:
        nodes += [
            helper.make_node("Sub", ["z", "shift"], ["s"], name="sub"),
            helper.make_node("Sqrt", ["s"], ["y"], name="sqrt"),
        ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    np.savez(path.with_suffix(".npz"), x=rng.standard_normal((64, 16)).astype(np.float32))
    return path


def test_int8_compute_share_counts_dynamic_integer_kernels(tmp_path):
    """Dynamic INT8 (MatMulInteger) was reported as 0% of the MACs in INT8: integer kernels were not counted."""
    model = _mlp(tmp_path / "mlp.onnx")
    # No default gates: on this random MLP they would keep a MatMul in float, and every MatMul must be counted.
    result = _quantize(
        model, tmp_path / "out", "--preset", "transformer", "--no-default-gates", calibration=model.with_suffix(".npz")
    )
    assert result.returncode == 0, result.explain()
    quantized = onnx.load(str(tmp_path / "out" / "model.onnx"))
    assert "MatMulInteger" in {n.op_type for n in quantized.graph.node}
    compute = load_report(tmp_path / "out")["models"]
    assert compute["result"]["compute"]["macs"] == compute["baseline"]["compute"]["macs"] == 16 * 32 + 32 * 4
    assert compute["result"]["compute"]["int8_mac_share"] == 1.0


def test_nan_outputs_still_get_a_report_with_the_gate_failed(tmp_path):
    """NaN in the outputs made report.json unwritable (internal error, exit 3) instead of a failed gate."""
    model = _mlp(tmp_path / "nan.onnx", with_nan=True)
    out = tmp_path / "out"
    result = _quantize(model, out, "--min-cosine", "0.9", "--json", calibration=model.with_suffix(".npz"))
    assert result.returncode == 1, result.explain()
    printed = json.loads(result.stdout, parse_constant=lambda name: pytest.fail(f"{name} in --json output"))
    assert printed["passed"] is False
    report = json.loads((out / "report.json").read_text(), parse_constant=lambda name: pytest.fail(name))
    assert report["evaluation"]["metrics"]["sqnr_db"] is None
    markdown = (out / "report.md").read_text()
    assert "identical" not in markdown  # null SQNR from NaN is not "identical outputs"


# --------------------------------------------------------------------------------------- data


def test_image_preprocessing_that_does_not_fit_is_found_before_work(tmp_path):
    """A mean with 2 values for grayscale images failed only when the first eval image loaded, after quantizing."""
    from PIL import Image

    images, _ = _digits_eval()
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(8):
        Image.fromarray((images[i, 0] * 255).astype(np.uint8)).save(folder / f"{i}.png")
    recipe = digits_recipe(tmp_path / "out")
    recipe["data"] = {"calibration": {"path": str(folder), "preprocessing": {"color": "L", "mean": [0.5, 0.2]}}}
    result = run_cli("run", write_recipe(tmp_path / "r.yaml", recipe), "--dry-run")
    assert result.returncode == 2, result.explain()
    assert "preprocessing.mean has 2 values" in one_error_line(result)


def test_a_mean_flag_that_is_not_numbers_is_a_usage_error(tmp_path):
    """`--mean 0.5,abc` was an internal error (exit 3, "could not convert string to float")."""
    result = _quantize(DIGITS_MODEL, tmp_path / "out", "--mean", "0.5,abc")
    assert result.returncode == 2, result.explain()
    assert "--mean" in one_error_line(result)


# --------------------------------------------------------------------------------------- output folder


def test_force_never_replaces_a_folder_holding_the_inputs_or_the_working_directory(tmp_path):
    """-o <the data folder> --force swapped the folder out and deleted it with the model and data in it;
    -o . --force ended in an internal error after all the work."""
    data = tmp_path / "digits"
    shutil.copytree(DIGITS, data)
    before = sorted(p.name for p in data.iterdir())
    result = _quantize(data / "model.onnx", data, "--force", calibration=data / "calibration.npz")
    assert result.returncode == 2, result.explain()
    assert "--force would move aside" in one_error_line(result)
    assert sorted(p.name for p in data.iterdir()) == before

    here = _quantize(DIGITS_MODEL, ".", "--force", cwd=data)
    assert here.returncode == 2, here.explain()
    assert sorted(p.name for p in data.iterdir()) == before


# --------------------------------------------------------------------------------------- stage cache


def test_an_unusable_stage_cache_never_fails_the_run(tmp_path):
    not_a_folder = tmp_path / "cache-file"
    not_a_folder.write_text("a file where the cache folder should be\n")
    result = _quantize(DIGITS_MODEL, tmp_path / "out", env=cli_env(MODELFORGE_CACHE_DIR=str(not_a_folder)))
    assert result.returncode == 0, result.explain()

    cache = tmp_path / "cache"
    env = cli_env(MODELFORGE_CACHE_DIR=str(cache))
    recipe = _fast_recipe(tmp_path, tmp_path / "first")
    assert run_cli("run", recipe, env=env).returncode == 0
    for entry in cache.glob("*/entry.json"):
        entry.write_text("{ damaged")
    again = run_cli("run", recipe, "-o", tmp_path / "second", "-q", env=env)
    assert again.returncode == 0, again.explain()
    assert load_report(tmp_path / "second")["stages"][0]["metrics"]["cache"] == "miss"


# --------------------------------------------------------------------------------------- reports


def test_accuracy_drop_exactly_at_the_threshold_passes():
    """(0.99 - 0.985) * 100 is 0.5000000000000004: a 0.5 pp gate failed on a drop of exactly 0.5 pp, which the
    quantize fallback (1e-9 tolerance) had accepted as within budget."""
    from modelforge.recipe.schema import GatesConfig
    from modelforge.report.build import build_summary
    from modelforge.report.compare import Tolerances, compare_reports
    from modelforge.run.gates import evaluate_gates

    evaluation = {
        "metrics": {
            "accuracy_baseline": 198 / 200,
            "accuracy_result": 197 / 200,
            "top1_agreement": 0.995,
            "output_cosine": 0.999,
        },
        "latency": None,
    }
    summary = build_summary(evaluation, 1000, 250)
    assert summary["accuracy_drop_pp"] == 0.5
    gates = evaluate_gates(GatesConfig(max_accuracy_drop=0.5), summary)
    assert gates[0]["passed"], gates

    reference = json.loads(REPORT_DIGITS.read_text())
    reference["summary"]["accuracy_result"] = 0.99
    candidate = json.loads(REPORT_DIGITS.read_text())
    candidate["summary"]["accuracy_result"] = 0.985
    checks = compare_reports(reference, candidate, Tolerances(max_accuracy_drop=0.5))["checks"]
    assert checks[0]["value"] == 0.5 and checks[0]["passed"], checks


def test_damaged_report_is_bad_input(tmp_path):
    damaged = tmp_path / "report.json"
    damaged.write_text(json.dumps({"schema_version": "1", "summary": {}}))
    for args in (("report", damaged), ("compare", REPORT_DIGITS, damaged)):
        result = run_cli(*args)
        assert result.returncode == 2, result.explain()  # was: internal error (exit 3)
        assert "not a valid modelforge report" in one_error_line(result)


def test_summary_wording_says_which_way_things_went(tmp_path):
    """No accuracy change read "-0.00 pp"; a result twice the size read "0.50x smaller"."""
    result = run_cli("report", REPORT_DIGITS, "--format", "md")
    assert result.returncode == 0, result.explain()
    assert json.loads(REPORT_DIGITS.read_text())["summary"]["accuracy_drop_pp"] == 0.0
    assert "-0.00 pp" not in result.stdout and "+0.00 pp" in result.stdout

    report = json.loads(REPORT_DIGITS.read_text())
    report["summary"]["size_ratio"] = 0.5
    (tmp_path / "report.json").write_text(json.dumps(report))
    for fmt in ("md", "html", "summary"):
        rendered = run_cli("report", tmp_path / "report.json", "--format", fmt)
        assert rendered.returncode == 0, rendered.explain()
        assert "2.00x larger" in rendered.stdout and "0.50x smaller" not in rendered.stdout


def test_debug_on_a_fixed_batch_model(tmp_path):
    """`modelforge debug` fed batches of 8 to a model exported with batch 4 (internal error, exit 3)."""
    model = _fixed_batch_digits(tmp_path / "fixed4.onnx", 4)
    result = run_cli("debug", model, "-c", DIGITS_CALIBRATION, "--samples", "10", "--json")
    assert result.returncode == 0, result.explain()
    layers = json.loads(result.stdout)["layers"]
    assert layers and all("sqnr_db" in layer for layer in layers)
