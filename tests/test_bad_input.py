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
