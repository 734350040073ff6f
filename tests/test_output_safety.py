"""The output directory is written atomically: never half-written, never clobbered without --force; --force
moves only a folder modelforge wrote, to OUT.previous, and says so; a dry run writes nothing."""

from __future__ import annotations

import json

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


def _existing_output(parent, ours=True, name="out"):
    """A folder in the way of the output: an earlier modelforge output (with its manifest.json), or not."""
    out = parent / name
    (out / "nested").mkdir(parents=True)
    (out / "unrelated.txt").write_text("keep me\n")
    (out / "model.onnx").write_bytes(b"not a model")
    (out / "nested" / "data.bin").write_bytes(bytes(range(256)))
    if ours:
        manifest = {"manifest_version": 1, "tool": "modelforge", "files": [], "recipe": {}}
        (out / "manifest.json").write_text(json.dumps(manifest))
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


def test_force_replaces_the_output_and_keeps_the_old_one_as_previous(tmp_path):
    out = _existing_output(tmp_path)
    before = snapshot(out)
    result = _quantize(out, "--force")
    assert result.returncode == 0, result.explain()
    assert not (out / "unrelated.txt").exists()
    assert not (out / "nested").exists()
    for name in OUTPUT_FILES:
        assert (out / name).is_file(), name
    assert (out / "model.onnx").read_bytes() != b"not a model"
    previous = tmp_path / "out.previous"
    assert snapshot(previous) == before  # recoverable, byte for byte
    said = [line for line in result.stderr.splitlines() if "moved the previous output" in line]
    assert len(said) == 1 and str(previous) in said[0], result.explain()  # one line, even with -q
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.previous"]

    # the next --force replaces that one slot (it is ours too): one old copy, not one per run
    newer = snapshot(out)
    assert _quantize(out, "--force").returncode == 0
    assert snapshot(previous) == newer
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.previous"]


def test_force_never_moves_or_deletes_a_folder_modelforge_did_not_write(tmp_path):
    out = _existing_output(tmp_path, ours=False)
    before = snapshot(out)
    result = _quantize(out, "--force")
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    assert str(out) in line and "not written by modelforge" in line
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_the_readme_tour_no_longer_wipes_other_runs(tmp_path):
    """`-o out/ --force` after out/quickstart and out/digits-int8 were written: out/ itself is no output of
    ours, so it is refused and both runs stay; `-o out/my-model --force` is the way."""
    out = tmp_path / "out"
    out.mkdir()
    runs = [_existing_output(out, name=name) for name in ("quickstart", "digits-int8")]
    before = [snapshot(run) for run in runs]
    result = _quantize(out, "--force")
    assert result.returncode == 2, result.explain()
    assert "not written by modelforge" in one_error_line(result)
    assert [snapshot(run) for run in runs] == before
    assert sorted(p.name for p in out.iterdir()) == ["digits-int8", "quickstart"]


def test_force_never_replaces_a_previous_slot_someone_else_made(tmp_path):
    out = _existing_output(tmp_path)
    theirs = _existing_output(tmp_path, ours=False, name="out.previous")
    before, kept = snapshot(out), snapshot(theirs)
    result = _quantize(out, "--force")
    assert result.returncode == 2, result.explain()
    assert str(theirs) in one_error_line(result)
    assert snapshot(out) == before and snapshot(theirs) == kept


def test_force_on_an_empty_folder_keeps_no_previous(tmp_path):
    (tmp_path / "out").mkdir()
    assert _quantize(tmp_path / "out", "--force").returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_dry_run_accepts_an_existing_output_and_writes_nothing(tmp_path):
    out = _existing_output(tmp_path, ours=False)
    before = snapshot(tmp_path)
    result = _quantize(out, "--dry-run")
    assert result.returncode == 0, result.explain()
    assert "nothing was written" in result.stderr and f"{out} (exists: a real run needs --force" in result.stderr
    assert snapshot(tmp_path) == before
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
