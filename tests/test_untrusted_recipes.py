"""Recipes from pull requests (issue 25 §6): a recipe file may not run code, replace a folder, or read files
outside its own folder and the current one unless the command line says so (--allow-recipe-code, --force,
--allow-paths); modules are never imported implicitly from the current folder; a dry run imports no user code.

Layout of every test: the user works in `work/` (the cwd, their project), the pull request's recipe lives in
`work/pr/`, and what an attacker would want lies in `secret/`, outside both. Marker files stand in for secrets
and for code that ran.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import (
    DIGITS_CALIBRATION,
    DIGITS_EVAL,
    DIGITS_MODEL,
    FAST_LATENCY,
    REPO,
    load_report,
    one_error_line,
    run_cli,
    write_recipe,
)


@pytest.fixture
def project(tmp_path) -> Path:
    """`work/`: the user's project with the digits model and data; `work/pr/`: where a pull request's recipe is."""
    work = tmp_path / "work"
    (work / "pr").mkdir(parents=True)
    for source in (DIGITS_MODEL, DIGITS_CALIBRATION, DIGITS_EVAL):
        shutil.copy(source, work / source.name)
    (tmp_path / "secret").mkdir()
    return work


def pr_recipe(work: Path, **sections) -> dict:
    """A quick quantize recipe as a pull request would add it (paths relative to its folder, work/pr/)."""
    recipe = {
        "model": "../model.onnx",
        "data": {"calibration": "../calibration.npz", "eval_data": "../eval.npz"},
        "passes": [{"name": "quantize", "config": {"speed_aware": False, "fallback": False}}],
        "evaluate": {"latency": dict(FAST_LATENCY), "skip_latency": True},
        "output": {"dir": "out"},
        "cache": False,
    }
    recipe.update(sections)
    return recipe


def refused(result, *named: str) -> str:
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    for text in named:
        assert text in line, line
    return line


# ------------------------------------------------------------------------------------------------ code


EVIL_METRIC = (
    "from pathlib import Path\nPath({marker!r}).write_text('imported')\ndef f(b, r, labels):\n    return 1.0\n"
)


@pytest.fixture
def evil_metric(project) -> tuple[Path, Path]:
    """evilmetric.py in the cwd: importing it writes the marker. Returns (recipe, marker)."""
    marker = project.parent / "secret" / "imported"
    (project / "evilmetric.py").write_text(EVIL_METRIC.format(marker=str(marker)))
    evaluate = {"skip_latency": True, "custom_metrics": ["evilmetric:f"]}
    return write_recipe(project / "pr" / "recipe.yaml", pr_recipe(project, evaluate=evaluate)), marker


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_recipes_custom_metric_needs_allow_recipe_code(project, evil_metric, dry_run):
    recipe, marker = evil_metric
    result = run_cli("run", recipe, *(["--dry-run"] if dry_run else []), cwd=project)
    refused(result, "evaluate.custom_metrics[0]", "evilmetric:f", "--allow-recipe-code")
    assert not marker.exists() and not (project / "out").exists()


def test_allowed_recipe_code_is_still_never_imported_from_the_current_folder(project, evil_metric):
    """`python -m modelforge` puts the cwd first on sys.path: the entry point drops it, so even an allowed
    metric is only found where the user pointed (--code-path)."""
    recipe, marker = evil_metric
    for flags in (["--dry-run"], []):
        result = run_cli("run", recipe, "--allow-recipe-code", *flags, cwd=project)
        if flags:  # a dry run never imports user code, allowed or not
            assert result.returncode == 0, result.explain()
        else:
            refused(result, "evilmetric", "--code-path")
        assert not marker.exists()
    result = run_cli("run", recipe, "--allow-recipe-code", "--code-path", project, "-q", cwd=project)
    assert result.returncode == 0, result.explain()
    assert marker.exists()  # the user named both the code and where it lives: it runs
    assert load_report(project / "out")["evaluation"]["metrics"]["custom"]["evilmetric:f"] == 1.0


def test_modelforges_own_metrics_need_no_grant(project):
    evaluate = {"skip_latency": True, "custom_metrics": ["modelforge.evaluate.custom:mean_kl_divergence"]}
    recipe = write_recipe(project / "pr" / "recipe.yaml", pr_recipe(project, evaluate=evaluate))
    assert run_cli("run", recipe, "--dry-run", cwd=project).returncode == 0


def test_factories_in_a_recipe_need_allow_recipe_code(project):
    (project / "weights.pt").write_bytes(b"")  # never read: refused first
    model = {"path": "../weights.pt", "factory": "nets:build"}
    recipe = write_recipe(project / "pr" / "r1.yaml", pr_recipe(project, model=model, passes=[]))
    refused(run_cli("run", recipe, "--dry-run", cwd=project), "model.factory", "nets:build")
    distill = {"name": "distill", "config": {"student_factory": "nets:small"}}
    recipe = write_recipe(project / "pr" / "r2.yaml", pr_recipe(project, passes=[distill]))
    refused(run_cli("run", recipe, "--dry-run", cwd=project), "passes[0].config.student_factory", "nets:small")


def test_a_dry_run_never_imports_a_factory_even_when_allowed(project):
    """--dry-run checks the weights and data files but does not import the factory's module (which writes the
    marker on import); the plan says so."""
    marker = project.parent / "secret" / "imported"
    code = project.parent / "code"
    code.mkdir()
    (code / "nets.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('x')\ndef build():\n    pass\n"
    )
    (project / "weights.safetensors").write_bytes(b"")
    model = {"path": "../weights.safetensors", "factory": "nets:build"}
    recipe = write_recipe(project / "pr" / "recipe.yaml", pr_recipe(project, model=model))
    result = run_cli("run", recipe, "--dry-run", "--allow-recipe-code", "--code-path", code, cwd=project)
    assert result.returncode == 0, result.explain()
    assert "not imported in a dry run" in result.stderr
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------ force


def test_output_force_in_a_recipe_needs_force_on_the_command_line(project):
    victim = project / "victim"
    victim.mkdir()
    (victim / "marker").write_text("keep me")
    recipe = write_recipe(
        project / "pr" / "recipe.yaml", pr_recipe(project, output={"dir": str(victim), "force": True})
    )
    for flags in (["--dry-run"], []):
        refused(run_cli("run", recipe, *flags, "-q", cwd=project), "output.force", "--force")
        assert (victim / "marker").read_text() == "keep me"
    # Even with --force on the command line, a folder modelforge did not write is never moved or deleted.
    result = run_cli("run", recipe, "--force", "-q", cwd=project)
    assert result.returncode == 2, result.explain()
    assert "not written by modelforge" in result.stderr
    assert (victim / "marker").read_text() == "keep me"


# ------------------------------------------------------------------------------------------------ paths


def _triton_recipe(project: Path, labels: str) -> Path:
    export = {"name": "export", "config": {"target": "triton", "labels": labels, "batch_sizes": [1]}}
    return write_recipe(project / "pr" / "recipe.yaml", pr_recipe(project, passes=[export]))


def test_a_recipe_cannot_read_a_file_outside_the_project_into_an_artifact(project):
    secret = project.parent / "secret" / "labels.txt"
    secret.write_text("".join(f"SECRET-{i}\n" for i in range(10)))  # ten lines: valid labels for the digits
    (project / "pr" / "labels.txt").symlink_to(secret)
    for labels in ("../../secret/labels.txt", str(secret), "labels.txt"):  # relative, absolute, a link out
        recipe = _triton_recipe(project, labels)
        line = refused(run_cli("run", recipe, "-q", cwd=project), "passes[0].config.labels", "--allow-paths")
        assert "outside the recipe's folder" in line
        assert not (project / "pr" / "out").exists() and not (project / "out").exists()
    written = [p for p in project.rglob("*") if p.is_file() and not p.is_symlink()]
    assert not any("SECRET" in p.read_text(errors="ignore") for p in written)


def test_data_and_model_outside_are_refused_and_allow_paths_allows_them(project):
    outside = project.parent / "secret"
    shutil.copy(DIGITS_CALIBRATION, outside / "calibration.npz")
    recipe = pr_recipe(project)
    recipe["data"]["calibration"] = str(outside / "calibration.npz")
    path = write_recipe(project / "pr" / "recipe.yaml", recipe)
    refused(run_cli("run", path, "--dry-run", cwd=project), "data.calibration", str(outside / "calibration.npz"))
    allowed = run_cli("run", path, "--dry-run", "--allow-paths", outside, cwd=project)
    assert allowed.returncode == 0, allowed.explain()
    recipe["output"] = {"dir": str(outside / "out")}  # writing outside is refused alike; -o on the command line is not
    recipe["data"]["calibration"] = "../calibration.npz"
    path = write_recipe(path, recipe)
    refused(run_cli("run", path, "--dry-run", cwd=project), "output.dir")
    assert run_cli("run", path, "--dry-run", "-o", outside / "out", cwd=project).returncode == 0


def test_the_bundled_recipes_run_from_the_repository_root():
    """They name ../calibration/... and ../examples/...: inside the cwd tree when run from the repository root,
    as CI and the README do."""
    result = run_cli("run", REPO / "recipes" / "quickstart.yaml", "--dry-run", "-o", "never-written", cwd=REPO)
    assert result.returncode == 0, result.explain()
