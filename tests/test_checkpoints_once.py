"""Checkpoints live in one place (issue 18, item 3): the output's checkpoints/ (working copies in the cache,
removed once the pass is done) or the folder the user named; nothing beside the output. A dry run says where;
`--resume` says which finished step it reuses (issue 18, item 11)."""

from __future__ import annotations

import json

import pytest
from conftest import cli_env, run_cli, write_recipe

pm = pytest.importorskip("prune_models")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt-model")
    paths = pm.write_data(folder)
    (xt, yt), _, _ = pm.digits_split()
    pm.export(pm.fit(pm.build_residual(), xt, yt, epochs=3), folder / "model.pt2", xt)
    return folder / "model.pt2", paths


def _recipe(folder, model, out, **prune):
    """A recipe in the test's folder naming the module's model (outside it: the runs pass --allow-paths)."""
    pt2, paths = model
    config = {"method": "magnitude", "sparsity": 0.5, "train": {"epochs": 1, "batch_size": 128}, **prune}
    return write_recipe(
        folder / "recipe.yaml",
        {
            "version": 1,
            "model": str(pt2),
            "data": {"train": str(paths["train"]), "eval_data": str(paths["val"])},
            "passes": [{"name": "prune", "config": config}],
            "evaluate": {"skip_latency": True},
            "output": str(out),
            "cache": False,
        },
    )


def test_default_checkpoints_end_up_inside_the_output_once(model, tmp_path):
    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    out = work / "out"
    recipe = _recipe(tmp_path, model, out)
    env = cli_env(MODELFORGE_CACHE_DIR=str(cache))

    plan = run_cli("run", recipe, "--allow-paths", str(model[0].parent), "--dry-run", env=env)
    assert plan.returncode == 0, plan.explain()
    text = " ".join(plan.stderr.split())  # the plan may wrap long paths
    where = text[text.index("checkpoints (prune): ") :]
    assert where.startswith(f"checkpoints (prune): {cache / 'checkpoints'}/out-") and str(out / "checkpoints") in where
    assert not out.exists() and not cache.exists()  # the dry run wrote nothing

    result = run_cli("run", recipe, "--allow-paths", str(model[0].parent), "-q", env=env)
    assert result.returncode == 0, result.explain()
    assert sorted(p.name for p in work.iterdir()) == ["out"]  # no OUTPUT.checkpoints beside it
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert list((cache / "checkpoints").iterdir()) == []  # the working copies are gone once the pass is done
    report = json.loads((out / "report.json").read_text())
    stage = next(s for s in report["stages"] if s["name"] == "prune")["metrics"]
    assert stage["checkpoints"] == "checkpoints/ in the output"
    listed = {f["path"] for f in json.loads((out / "manifest.json").read_text())["files"]}
    assert {"checkpoints/best.pt", "checkpoints/last.pt"} <= listed


def test_a_named_checkpoint_folder_keeps_them_and_resume_says_what_it_reuses(model, tmp_path):
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    recipe = _recipe(tmp_path, model, out, checkpoint_dir=str(ckpt))
    plan = run_cli("run", recipe, "--allow-paths", str(model[0].parent), "--dry-run")
    assert plan.returncode == 0, plan.explain()
    assert f"checkpoints (prune): {ckpt} (kept there)" in " ".join(plan.stderr.split())

    first = run_cli("run", recipe, "--allow-paths", str(model[0].parent), "-q")
    assert first.returncode == 0, first.explain()
    assert (ckpt / "step-1" / "model.pt2").is_file() and (ckpt / "step-1" / "last.pt").is_file()
    assert not (out / "checkpoints").exists()  # they live in the named folder, once

    again = _recipe(tmp_path, model, tmp_path / "again", checkpoint_dir=str(ckpt), resume=True)
    resumed = run_cli("run", again, "--allow-paths", str(model[0].parent))
    assert resumed.returncode == 0, resumed.explain()
    said = [x for x in resumed.stderr.splitlines() if "finished in an earlier run" in x]
    assert said == [f"prune step 1/1: finished in an earlier run, reused from {ckpt / 'step-1'}"], resumed.explain()
    before = json.loads((out / "report.json").read_text())["summary"]["accuracy_result"]
    after = json.loads((tmp_path / "again" / "report.json").read_text())["summary"]["accuracy_result"]
    assert after == before  # the reused step is the same model


def test_distill_keeps_the_students_checkpoints_inside_the_output_once(model, tmp_path):
    pt2, paths = model
    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    out = work / "out"
    config = {"student_from_teacher": 0.5, "baseline": False, "train": {"epochs": 1, "batch_size": 128}}
    recipe = write_recipe(
        tmp_path / "distill.yaml",
        {
            "version": 1,
            "model": str(pt2),
            "data": {"train": str(paths["train"]), "eval_data": str(paths["val"])},
            "passes": [{"name": "distill", "config": config}],
            "evaluate": {"skip_latency": True},
            "output": str(out),
            "cache": False,
        },
    )
    result = run_cli(
        "run", recipe, "--allow-paths", str(model[0].parent), "-q", env=cli_env(MODELFORGE_CACHE_DIR=str(cache))
    )
    assert result.returncode in (0, 1), result.explain()  # a one-epoch student may miss a default gate
    assert sorted(p.name for p in work.iterdir()) == ["out"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert list((cache / "checkpoints").iterdir()) == []
