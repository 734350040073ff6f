"""The output directory is written atomically: never half-written, never clobbered without --force."""

from __future__ import annotations

import numpy as np
from conftest import (
    DIGITS_CALIBRATION,
    DIGITS_EVAL,
    DIGITS_MODEL,
    OUTPUT_FILES,
    leftovers,
    one_error_line,
    run_cli,
    snapshot,
)


def _existing_output(parent):
    out = parent / "out"
    (out / "nested").mkdir(parents=True)
    (out / "unrelated.txt").write_text("keep me\n")
    (out / "model.onnx").write_bytes(b"not a model")
    (out / "nested" / "data.bin").write_bytes(bytes(range(256)))
    return out


def _quantize(out, *extra, calibration=DIGITS_CALIBRATION):
    return run_cli(
        "quantize", DIGITS_MODEL, "-c", calibration, "-e", DIGITS_EVAL, "-o", out, "--threads", "1", "-q", *extra
    )


def test_existing_output_is_left_untouched_without_force(tmp_path):
    out = _existing_output(tmp_path)
    before = snapshot(out)
    result = _quantize(out)
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    assert str(out) in line and "--force" in line
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_force_replaces_the_output(tmp_path):
    out = _existing_output(tmp_path)
    result = _quantize(out, "--force")
    assert result.returncode == 0, result.explain()
    assert not (out / "unrelated.txt").exists()
    assert not (out / "nested").exists()
    for name in OUTPUT_FILES:
        assert (out / name).is_file(), name
    assert (out / "model.onnx").read_bytes() != b"not a model"
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failed_run_leaves_nothing_behind(tmp_path):
    bad = tmp_path / "data" / "bad.npz"
    bad.parent.mkdir()
    np.savez(bad, image=np.zeros((8, 1, 9, 9), dtype=np.float32))
    parent = tmp_path / "results"
    parent.mkdir()
    result = _quantize(parent / "out", calibration=bad)
    assert result.returncode == 2, result.explain()
    assert list(parent.iterdir()) == []  # no output, no hidden .out.partial-* staging folder


def test_failed_forced_run_keeps_the_old_output(tmp_path):
    """--force replaces the output only once the new one is complete: a failing run keeps the old one."""
    bad = tmp_path / "bad.npz"
    np.savez(bad, image=np.zeros((8, 1, 9, 9), dtype=np.float32))
    parent = tmp_path / "results"
    parent.mkdir()
    out = _existing_output(parent)
    before = snapshot(out)
    result = _quantize(out, "--force", calibration=bad)
    assert result.returncode == 2, result.explain()
    assert snapshot(out) == before
    assert leftovers(parent) == []
    assert sorted(p.name for p in parent.iterdir()) == ["out"]


def test_output_path_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "out"
    target.write_text("a file\n")
    result = _quantize(target, "--force")
    assert result.returncode == 2, result.explain()
    one_error_line(result)
    assert target.read_text() == "a file\n"
    assert leftovers(tmp_path) == []
