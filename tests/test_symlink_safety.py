"""Writes never follow links (issue 25, items 4 and 5): a link planted where an export into a Triton repository
reads or writes, or in a checkpoint folder, is refused with exit 2 naming it; what it points at is neither
written nor read into the output. Each test plants harmless marker files outside the folder and checks them
byte for byte afterwards."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import DIGITS_CALIBRATION, DIGITS_MODEL, one_error_line, run_cli

from modelforge.errors import InputError
from modelforge.safe_files import copy_tree, make_dirs, open_for_write, write_text


def tree(folder: Path) -> dict[str, object]:
    """Every entry under `folder` without following links: a file's bytes, a link's target, a folder's mark."""
    entries: dict[str, object] = {}
    for here, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            path = Path(here) / name
            key = path.relative_to(folder).as_posix()
            if path.is_symlink():
                entries[key] = ("link", os.readlink(path))
            elif path.is_dir():
                entries[key] = "dir"
            else:
                entries[key] = path.read_bytes()
    return entries


@pytest.fixture
def outside(tmp_path):
    """Marker files and a marker folder outside every folder a run may write: they must never change."""
    folder = tmp_path / "outside"
    (folder / "victim-dir").mkdir(parents=True)
    (folder / "victim.txt").write_text("the victim's own file\n")
    (folder / "victim-dir" / "keep.txt").write_text("the victim's folder\n")
    (folder / "secret.txt").write_text("SECRET MARKER\n")
    (folder / "secret-dir").mkdir()
    (folder / "secret-dir" / "key.txt").write_text("SECRET FOLDER MARKER\n")
    return folder


# ------------------------------------------------------------------------------------------- the primitives


def test_a_link_as_the_file_or_in_its_folder_chain_is_refused(tmp_path, outside):
    root = tmp_path / "root"
    root.mkdir()
    before = tree(outside)
    (root / "config.pbtxt").symlink_to(outside / "victim.txt")
    with pytest.raises(InputError, match="config.pbtxt is a symbolic link"):
        write_text(root / "config.pbtxt", "overwritten", root)
    (root / "model").mkdir()
    (root / "model" / "warmup").symlink_to(outside / "victim-dir")
    with pytest.raises(InputError, match="warmup is a symbolic link"):
        write_text(root / "model" / "warmup" / "image.raw", "planted", root)
    with pytest.raises(InputError, match="warmup is a symbolic link"):
        make_dirs(root / "model" / "warmup" / "deeper", root)
    assert tree(outside) == before
    assert not list(root.glob("**/.*tmp-*"))  # no temporary file left behind


def test_a_write_replaces_a_hard_linked_file_instead_of_changing_it(tmp_path):
    """A carried-over repository shares its files with the previous output by hard links: writing the new
    config must never change the old one (it is still the previous output until the run finishes)."""
    old = tmp_path / "old.pbtxt"
    old.write_text("old config\n")
    new = tmp_path / "repo" / "config.pbtxt"
    new.parent.mkdir()
    os.link(old, new)
    write_text(new, "new config\n", tmp_path / "repo")
    assert old.read_text() == "old config\n" and new.read_text() == "new config\n"


def test_a_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "last.pt"
    target.write_bytes(b"previous epoch")
    with pytest.raises(RuntimeError), open_for_write(target) as file:
        file.write(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"previous epoch" and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_copy_tree_refuses_links_and_keeps_modes(tmp_path, outside):
    source = tmp_path / "bundle"
    (source / "m" / "1").mkdir(parents=True)
    (source / "m" / "1" / "model.onnx").write_bytes(b"onnx")
    (source / "build.sh").write_text("#!/bin/sh\n")
    (source / "build.sh").chmod(0o755)
    copied = copy_tree(source, tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in copied) == ["build.sh", "m/1/model.onnx"]
    assert os.access(tmp_path / "out" / "build.sh", os.X_OK)
    (source / "m" / "secret").symlink_to(outside / "secret-dir")
    with pytest.raises(InputError, match="secret is a symbolic link"):
        copy_tree(source, tmp_path / "out2")
    assert not (tmp_path / "out2" / "m" / "secret").exists()


# ------------------------------------------------------------------------- a Triton repository carried over


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    pytest.importorskip("tritonclient", reason="the [triton] extra (tritonclient) checks generated configs")
    folder = tmp_path_factory.mktemp("triton")
    out = folder / "repo"
    result = run_cli(
        "export", DIGITS_MODEL, "--target", "triton", "--name", "digits", "-c", DIGITS_CALIBRATION,
        "--repository", out, "-o", folder / "run", "--skip-latency", "--threads", "1", "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.explain()
    assert (out / "digits" / "warmup").is_dir()
    return out


def _add_version(repo: Path, run: Path, *extra: str):
    return run_cli(
        "export", DIGITS_MODEL, "--target", "triton", "--name", "digits", "-c", DIGITS_CALIBRATION,
        "--repository", repo, "-o", run, "--skip-latency", "--threads", "1", "-q", *extra,
    )  # fmt: skip


def _plant_config(repo: Path, outside: Path) -> Path:
    (repo / "digits" / "config.pbtxt").unlink()
    (repo / "digits" / "config.pbtxt").symlink_to(outside / "victim.txt")
    return repo / "digits" / "config.pbtxt"


def _plant_warmup(repo: Path, outside: Path) -> Path:
    shutil.rmtree(repo / "digits" / "warmup")
    (repo / "digits" / "warmup").symlink_to(outside / "victim-dir", target_is_directory=True)
    return repo / "digits" / "warmup"


def _plant_baseline(repo: Path, outside: Path) -> Path:
    (repo / "digits" / "baseline_stats.json").unlink()
    (repo / "digits" / "baseline_stats.json").symlink_to(outside / "victim.txt")
    return repo / "digits" / "baseline_stats.json"


def _plant_secret_file(repo: Path, outside: Path) -> Path:
    (repo / "digits" / "notes.txt").symlink_to(outside / "secret.txt")
    return repo / "digits" / "notes.txt"


def _plant_secret_folder(repo: Path, outside: Path) -> Path:
    (repo / "other_model").symlink_to(outside / "secret-dir", target_is_directory=True)
    return repo / "other_model"


def _plant_secret_in_a_version(repo: Path, outside: Path) -> Path:
    (repo / "digits" / "1" / "model.onnx.data").symlink_to(outside / "secret.txt")
    return repo / "digits" / "1" / "model.onnx.data"


@pytest.mark.parametrize(
    "plant", [_plant_config, _plant_warmup, _plant_baseline], ids=["config.pbtxt", "warmup", "baseline"]
)
def test_a_link_where_a_new_version_reads_or_writes_is_refused(repository, tmp_path, outside, plant):
    repo = tmp_path / "repo"
    shutil.copytree(repository, repo)
    link = plant(repo, outside)
    markers, before = tree(outside), tree(repo)
    result = _add_version(repo, tmp_path / "run")
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    assert str(link) in line and "symbolic link" in line
    assert tree(outside) == markers  # nothing written through the link
    assert tree(repo) == before  # the repository is left as it was (no version 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside", "repo"]  # no run folder or staging left


@pytest.mark.parametrize(
    "plant",
    [_plant_secret_file, _plant_secret_folder, _plant_secret_in_a_version],
    ids=["secret-file", "secret-folder", "secret-in-version"],
)
def test_a_link_the_export_never_touches_stays_as_it_is(repository, tmp_path, outside, plant):
    """Nothing is carried or copied out of a repository any more: a link elsewhere in it is neither followed,
    nor read into the run's output, nor changed; the new version goes beside it."""
    repo = tmp_path / "repo"
    shutil.copytree(repository, repo)
    link = plant(repo, outside)
    markers, target = tree(outside), os.readlink(link)
    result = _add_version(repo, tmp_path / "run")
    assert result.returncode == 0, result.explain()
    assert tree(outside) == markers and os.readlink(link) == target
    assert (repo / "digits" / "2" / "model.onnx").is_file()
    assert b"SECRET" not in b"".join(p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------- a checkpoint folder


@pytest.fixture(scope="module")
def prunable(tmp_path_factory):
    """An untrained residual CNN as model.pt2 plus small digits data: every run here stops before training."""
    import prune_models as pm

    folder = tmp_path_factory.mktemp("prunable")
    paths = pm.write_data(folder)
    (xt, _), _, _ = pm.digits_split()
    pm.export(pm.build_residual().eval(), folder / "model.pt2", xt)
    return folder / "model.pt2", paths


@pytest.mark.parametrize(
    ("planted", "resume"),
    [("start.pt2", False), ("start.pt2", True), ("step-1/best.pt", False), ("step-1/last.pt", True)],
)
def test_a_link_in_the_checkpoint_folder_is_refused(prunable, tmp_path, outside, planted, resume):
    model, paths = prunable
    ckpt = tmp_path / "ckpt"
    (ckpt / Path(planted).parent).mkdir(parents=True, exist_ok=True)
    (ckpt / planted).symlink_to(outside / "victim.txt")
    markers = tree(outside)
    out = tmp_path / "out"
    result = run_cli(
        "prune", model, "--method", "magnitude", "--train-data", paths["train"], "--eval-data", paths["val"],
        "--epochs", "1", "--checkpoint-dir", ckpt, *(["--resume"] if resume else []), "-o", out,
        "--threads", "1", "-q",
    )  # fmt: skip
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    assert str(ckpt / planted) in line and "symbolic link" in line
    assert tree(outside) == markers
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "outside"]


def test_the_training_loop_refuses_a_link_where_it_checkpoints(tmp_path, outside):
    """A link planted while training runs (after the folder was checked) is refused at the write, not followed."""
    import torch

    from modelforge.training import TrainConfig, train

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    data = ((torch.rand(16, 4),), torch.randint(0, 2, (16,)))
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "last.pt").symlink_to(outside / "victim.txt")
    markers = tree(outside)
    with pytest.raises(InputError, match="last.pt is a symbolic link"):
        train(module, data, None, TrainConfig(epochs=1, batch_size=8), checkpoint_dir=folder, seed=0)
    assert tree(outside) == markers
    assert np.array_equal(sorted(p.name for p in folder.iterdir()), ["last.pt"])


def test_a_repository_modelforge_did_not_write_is_added_to_in_place(repository, tmp_path):
    """The user's own repository (no manifest of ours, their own files at the root): the new version is added
    beside what is there, which stays byte for byte; as the run's -o it is refused, never moved aside."""
    repo = tmp_path / "repo"
    shutil.copytree(repository, repo)
    (repo / "model.onnx").write_bytes(b"the user's own file with a name a run writes")
    before = tree(repo)
    refused = run_cli(
        "export", DIGITS_MODEL, "--target", "triton", "--name", "digits", "-o", repo, "--skip-latency", "-q",
    )  # fmt: skip
    assert refused.returncode == 2 and "Triton model repository" in one_error_line(refused)
    assert tree(repo) == before and not (tmp_path / "repo.previous").exists()
    result = _add_version(repo, tmp_path / "run")
    assert result.returncode == 0, result.explain()

    def kept(entries: dict) -> dict:  # all but the model folder's shared files, which version 2 replaces
        return {k: v for k, v in entries.items() if not k.startswith("digits/") or k.startswith("digits/1")}

    assert kept(tree(repo)) == kept(before)
    assert (repo / "digits" / "2" / "model.onnx").is_file() and not (tmp_path / "repo.previous").exists()
