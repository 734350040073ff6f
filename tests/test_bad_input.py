"""The bad inputs of issue 8, through a real `modelforge` process: exit 2, one line naming the file and what
is wrong with it, found before any work, nothing written. (tests/test_bad_input_fuzz.py covers many more.)"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DIGITS_CALIBRATION, DIGITS_EVAL, DIGITS_MODEL, digits_recipe, one_error_line, run_cli, snapshot


def _digits_with_nan(path, samples=(0, 9, 10), value=np.nan):
    with np.load(DIGITS_EVAL) as data:
        arrays = {k: data[k].copy() for k in data.files}
    for index in samples:
        arrays["image"][index, 0, index % 8, 2] = value
    np.savez_compressed(path, **arrays)
    return path


@pytest.mark.parametrize("role", ["-c", "-e"])
def test_nan_in_data_names_tensor_and_sample_count(tmp_path, role):
    bad = _digits_with_nan(tmp_path / "with-nan.npz")
    out = tmp_path / "out"
    data = ["-c", bad] if role == "-c" else ["-c", DIGITS_CALIBRATION, "-e", bad]
    result = run_cli("quantize", DIGITS_MODEL, *data, "-o", out, cwd=tmp_path)
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)  # before any work: no pass log line, no progress bar
    assert str(bad) in line and "tensor 'image'" in line and "NaN" in line, line
    assert "in 3 of 540 samples (first: sample 0)" in line, line
    assert not out.exists()
    assert snapshot(tmp_path) == {"with-nan.npz": bad.read_bytes()}


def test_inf_is_named_as_inf(tmp_path):
    bad = _digits_with_nan(tmp_path / "with-inf.npz", samples=(4,), value=-np.inf)
    result = run_cli("quantize", DIGITS_MODEL, "-c", bad, "-o", tmp_path / "out")
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    assert "holds Inf values in 1 of 540 samples (first: sample 4)" in line, line


def test_recipe_that_is_not_utf8(tmp_path):
    import yaml

    recipe = tmp_path / "recipe.yaml"
    text = yaml.safe_dump(digits_recipe(tmp_path / "out"), sort_keys=False)
    recipe.write_bytes(text.encode() + "# réglages\n".encode("latin-1"))
    result = run_cli("run", recipe)
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    lines = text.count("\n") + 1
    assert f"recipe {recipe}: not UTF-8 text (byte 0xe9 on line {lines})" in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("output", ["/proc/modelforge-out", "a-file/out"])
def test_output_folder_that_cannot_be_created(tmp_path, output):
    (tmp_path / "a-file").write_text("a regular file\n")
    before = snapshot(tmp_path)
    result = run_cli("quantize", DIGITS_MODEL, "-c", DIGITS_CALIBRATION, "-o", output, cwd=tmp_path)
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    assert line.startswith(f"error: output {output}: cannot create"), line
    assert snapshot(tmp_path) == before


def test_finite_check_streams_in_chunks_and_counts_exactly(tmp_path, monkeypatch):
    """The check reads an array a chunk at a time (memory flat): a NaN in the last row of the last chunk and
    one in the first row are both found, with the right sample index and count."""
    from modelforge.data import sources
    from modelforge.data.sources import NpzDataset

    rows = np.zeros((100, 3, 4), dtype=np.float32)
    rows[0, 1, 2] = np.nan
    rows[99, 2, 3] = np.inf
    path = tmp_path / "rows.npz"
    np.savez_compressed(path, x=rows)
    reads = []
    dataset = NpzDataset(path)
    real = dataset.iter_chunks

    def counting(key, chunk, start=0, stop=None):
        for values in real(key, chunk, start, stop):
            reads.append(len(values))
            yield values

    monkeypatch.setattr(dataset, "iter_chunks", counting)
    monkeypatch.setattr(sources, "FINITE_CHECK_CHUNK_BYTES", 7 * 3 * 4 * 4)  # 7 rows a chunk
    assert dataset.nonfinite_samples("x") == (2, 0, ["NaN", "Inf"])
    assert max(reads) == 7 and sum(reads) == 100

    rows[0, 1, 2] = 0.0
    np.savez(path, x=rows)
    assert NpzDataset(path).nonfinite_samples("x") == (1, 99, ["Inf"])


# ------------------------------------------------- issue 18 §8: model files that are missing, unknown or misnamed


@pytest.fixture(scope="module")
def teacher_pt2(tmp_path_factory):
    """A small real torch.export program of the digits input (1x8x8), for the PyTorch commands."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10)).eval()
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(1, 1, 8, 8),)), str(path))
    return path


def _model_commands(model, out):
    """Every command that takes a model file, with the rest of its arguments valid."""
    return {
        "quantize": ("quantize", model, "-c", DIGITS_CALIBRATION, "-o", out),
        "prune": ("prune", model, "-t", DIGITS_EVAL, "-o", out),
        "distill": ("distill", "--teacher", model, "--student-from-teacher", "0.5", "-t", DIGITS_EVAL, "-o", out),
        "export-triton": ("export", model, "--target", "triton", "-c", DIGITS_CALIBRATION, "-o", out),
        "export-tflite": ("export", model, "--target", "tflite", "-c", DIGITS_CALIBRATION, "-o", out),
        "inspect": ("inspect", model),
        "bench": ("bench", model),
        "debug": ("debug", model, "-c", DIGITS_CALIBRATION),
    }


@pytest.mark.parametrize("command", list(_model_commands("m", "o")))
@pytest.mark.parametrize("case", ["missing", "unknown"])
def test_missing_or_unknown_model_is_exit_2_naming_it(tmp_path, command, case):
    """Prune and distill took any file they could not place for ONNX and failed with exit 3 ("accepts
    torch-export, ..., got onnx"): every command says, in one line, that the file is missing or unknown."""
    model = tmp_path / ("absent.pt2" if case == "missing" else "notes.bin")
    if case == "unknown":
        model.write_text("these are my notes, not a model\n")
    out = tmp_path / "out"
    result = run_cli(*_model_commands(model, out)[command], cwd=tmp_path)
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    assert model.name in line, line
    assert ("not found" if case == "missing" else "unknown format (the file holds text)") in line, line
    assert not out.exists()


def test_onnx_bytes_under_another_name_are_recognised(tmp_path):
    misnamed = tmp_path / "digits.bin"
    misnamed.write_bytes(DIGITS_MODEL.read_bytes())
    result = run_cli("inspect", misnamed)
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    assert f"model {misnamed}: holds an ONNX model, but its name ends in '.bin'; name it .onnx" in line, line

    as_pt2 = tmp_path / "digits.pt2"
    as_pt2.write_bytes(DIGITS_MODEL.read_bytes())
    result = run_cli("quantize", as_pt2, "-c", DIGITS_CALIBRATION, "-o", tmp_path / "out")
    assert result.returncode == 2, result.explain()
    assert "named .pt2 but holds an ONNX model; name it .onnx" in one_error_line(result)


def test_text_named_pt2_is_one_line_without_torch_traceback(tmp_path, teacher_pt2):
    """torch.export.load logged a 12-line deserialisation traceback for a text file named .pt2 (the student)."""
    text = tmp_path / "student.pt2"
    text.write_text("not a model\n")
    out = tmp_path / "out"
    result = run_cli(
        "distill", "--teacher", teacher_pt2, "--student", text, "-t", DIGITS_EVAL, "--epochs", "1", "-o", out
    )
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)  # no torch log lines before it
    assert line == f"error: student {text}: not a torch.export archive (the file holds text)", line
    assert not out.exists()

    result = run_cli("prune", text, "-t", DIGITS_EVAL, "-o", out)
    assert result.returncode == 2, result.explain()
    assert one_error_line(result) == f"error: model {text}: not a torch.export archive (the file holds text)"


def test_onnx_model_for_tflite_is_bad_usage_naming_the_inputs_it_takes(tmp_path):
    result = run_cli("export", DIGITS_MODEL, "--target", "tflite", "-c", DIGITS_CALIBRATION, "-o", tmp_path / "o")
    assert result.returncode == 2, result.explain()  # was 3: "pass 'tflite' failed"
    line = one_error_line(result)
    assert "pass 'tflite' takes Keras (.keras/.h5) or SavedModel (folder) models" in line, line
    assert f"model {DIGITS_MODEL} is ONNX" in line, line


def test_every_export_target_is_listed_in_errors_help_and_explain():
    from modelforge.export.targets import EXPORT_TARGETS

    bogus = run_cli("export", DIGITS_MODEL, "--target", "bogus")
    assert bogus.returncode == 2, bogus.explain()
    assert one_error_line(bogus) == "error: --target 'bogus': expected one of triton, jetson, tensorrt or tflite"
    explained = run_cli("explain", "export")
    assert explained.returncode == 0, explained.explain()
    target_line = next(line for line in explained.stdout.splitlines() if line.strip().startswith("target "))
    helped = run_cli("export", "--help")
    for name in EXPORT_TARGETS:
        assert f"{name}: " in target_line, target_line
        assert name in helped.stdout
    assert "tflite" in EXPORT_TARGETS


def test_npz_with_zero_samples_says_so_naming_file_and_key(tmp_path, teacher_pt2):
    """A valid .npz with zero samples said "file is truncated" when a conversion read its first sample."""
    from modelforge.data.sources import NpzDataset
    from modelforge.errors import InputError

    empty = tmp_path / "empty.npz"
    np.savez(empty, image=np.zeros((0, 1, 8, 8), np.float32), labels=np.zeros(0, np.int64))
    with pytest.raises(InputError, match=r"empty.npz\[image\]: holds zero samples$"):
        NpzDataset(empty).read("image", 0, 1)
    result = run_cli("prune", teacher_pt2, "-t", empty, "-o", tmp_path / "out")
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    assert f"{empty}[image]: holds zero samples" in line and "truncated" not in line, line


def test_sniff_reads_the_format_from_the_bytes(tmp_path, teacher_pt2):
    from modelforge.model.formats import HDF5_MAGIC, sniff

    raw = DIGITS_MODEL.read_bytes()
    files = {
        "model.onnx": raw,
        "cut.onnx": raw[:-1],  # a truncated protobuf is not taken for ONNX
        "data.npz": DIGITS_CALIBRATION.read_bytes(),
        "model.h5": HDF5_MAGIC + bytes(600),
        "model.tflite": b"\x1c\x00\x00\x00TFL3" + bytes(200),
        "notes.txt": b"B is for bytes\n",  # 'B' is a valid protobuf tag (field 8): the walk still fails
        "empty.onnx": b"",
        "random.bin": np.random.default_rng(0).bytes(4096),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"\x08\x01")
    found = {name: sniff(tmp_path / name) for name in files}
    assert found == {
        "model.onnx": "onnx",
        "cut.onnx": None,
        "data.npz": "zip",
        "model.h5": "hdf5",
        "model.tflite": "tflite",
        "notes.txt": "text",
        "empty.onnx": "empty",
        "random.bin": None,
    }
    assert sniff(saved) == "savedmodel" and sniff(tmp_path) is None
    assert sniff(teacher_pt2) == "torch-export"
