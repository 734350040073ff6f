"""A stage cache entry is untrusted: a poisoned one is a miss with a warning, never served (issue 25 §3).

One real run fills a cache; each case poisons a copy of it the way the security review did (swapped model
bytes, a `../` file name, a folder or a bogus runtime in `serving`, a linked file) and runs again. The run
must recompute (stage metric `cache: miss`), ship the same model as the clean run, and read or write nothing
outside its own folders.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import (
    DIGITS_MODEL,
    cli_env,
    digits_recipe,
    fresh_cache_env,
    load_report,
    run_cli,
    sha256,
    write_recipe,
)

MARKER = b"MODELFORGE-TEST-MARKER-cache"


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> tuple[Path, Path]:
    """The stage cache and output of one clean run (quantize on digits)."""
    root = tmp_path_factory.mktemp("clean")
    cache, out = root / "cache", root / "out"
    recipe = write_recipe(root / "recipe.yaml", digits_recipe(out))
    result = run_cli("run", recipe, "-q", env=fresh_cache_env(cache))
    assert result.returncode == 0, result.explain()
    assert load_report(out)["stages"][0]["metrics"]["cache"] == "miss"
    return cache, out


def _entry(cache: Path) -> Path:
    entries = [p for p in cache.iterdir() if (p / "entry.json").is_file()]
    assert len(entries) == 1, entries
    return entries[0]


def _edit(entry: Path, change) -> None:
    meta = json.loads((entry / "entry.json").read_text())
    change(meta)
    (entry / "entry.json").write_text(json.dumps(meta))


def _rerun(tmp_path: Path, cache: Path):
    out = tmp_path / "out"
    tmp = tmp_path / "tmp"  # the run's work folders, so that a write through `../` lands where we can see it
    tmp.mkdir()
    recipe = write_recipe(tmp_path / "recipe.yaml", digits_recipe(out))
    result = run_cli("run", recipe, env=cli_env(MODELFORGE_CACHE_DIR=str(cache), TMPDIR=str(tmp)))
    return result, out


def _model_file(entry: Path) -> Path:
    """The entry's model file, by the name the entry recorded (the pass's own file name, not always model.onnx)."""
    return entry / json.loads((entry / "entry.json").read_text())["model"]


def _swap_model(entry: Path, tmp_path: Path) -> None:
    shutil.copyfile(DIGITS_MODEL, _model_file(entry))  # a valid model, but not the one the entry recorded


def _escape_name(entry: Path, tmp_path: Path) -> None:
    planted = tmp_path / "escape-marker"  # entry/../../escape-marker
    planted.write_bytes(MARKER)
    record = {"name": "../../escape-marker", "sha256": "0" * 64, "size": len(MARKER)}
    _edit(entry, lambda meta: meta["files"].append(record))


def _serving_folder(entry: Path, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "credentials").write_bytes(MARKER)
    _edit(entry, lambda meta: meta.update(serving={"extra_output": str(secrets)}))


def _bogus_runtime(entry: Path, tmp_path: Path) -> None:
    _edit(entry, lambda meta: meta.update(serving={"runtime": "../../evil", "precision": "fp32"}))


def _linked_file(entry: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.onnx"
    shutil.copyfile(DIGITS_MODEL, other)
    model = _model_file(entry)
    model.unlink()
    model.symlink_to(other)


POISONS = {
    "swapped-model": _swap_model,
    "dotdot-file-name": _escape_name,
    "serving-folder": _serving_folder,
    "bogus-runtime": _bogus_runtime,
    "linked-file": _linked_file,
}


@pytest.mark.parametrize("poison", list(POISONS))
def test_a_poisoned_cache_entry_is_a_miss_and_the_right_model_ships(tmp_path, clean_run, poison):
    clean_cache, clean_out = clean_run
    cache = tmp_path / "cache"
    shutil.copytree(clean_cache, cache, symlinks=True)
    POISONS[poison](_entry(cache), tmp_path)
    outside = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and cache not in p.parents}

    result, out = _rerun(tmp_path, cache)

    assert result.returncode == 0, result.explain()
    assert load_report(out)["stages"][0]["metrics"]["cache"] == "miss"
    assert sha256(out / "model.onnx") == sha256(clean_out / "model.onnx")
    warnings = [line for line in result.stderr.splitlines() if line.startswith("stage cache:")]
    assert len(warnings) == 1, result.explain()
    # Nothing written outside the run's own folders, nothing planted shipped.
    assert not (tmp_path / "tmp" / "escape-marker").exists()
    assert {p: p.read_bytes() for p in outside} == outside
    assert not any(MARKER in p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert "credentials" not in (out / "manifest.json").read_text()
    runtime = load_report(out)["evaluation"]["runtimes"]["result"]
    assert runtime["runtime"] == "onnxruntime" and runtime["precision"] == "int8"


def test_a_poisoned_entry_is_replaced_by_the_fresh_result(tmp_path, clean_run):
    clean_cache, clean_out = clean_run
    cache = tmp_path / "cache"
    shutil.copytree(clean_cache, cache, symlinks=True)
    _swap_model(_entry(cache), tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, _ = _rerun(tmp_path / "a", cache)

    again, out = _rerun(tmp_path / "b", cache)

    assert first.returncode == 0 and again.returncode == 0, again.explain()
    assert load_report(out)["stages"][0]["metrics"]["cache"] == "hit"
    assert sha256(out / "model.onnx") == sha256(clean_out / "model.onnx")
    assert sha256(_model_file(_entry(cache))) == sha256(clean_out / "model.onnx")
