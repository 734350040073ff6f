"""Shared helpers for the test suite: the bundled digits data, CLI runs in a subprocess, small recipes.

Every test uses real models and real data (the bundled digits CNN, models fitted here on scikit-learn's
digits); nothing of onnxruntime, onnx or torch is mocked. Runs are kept small: one latency thread and
a few timed runs, so the whole suite stays within a few minutes on two cores.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DIGITS = REPO / "calibration" / "digits"
DIGITS_MODEL = DIGITS / "model.onnx"
DIGITS_CALIBRATION = DIGITS / "calibration.npz"
DIGITS_EVAL = DIGITS / "eval.npz"

# Latency settings that keep a run short; the figures themselves are never asserted.
FAST_LATENCY = {"threads": 1, "warmup": 1, "min_runs": 8, "max_seconds": 2}

# The keys DESIGN.md promises in report.json's flat `summary` (CI reads them without knowing the passes).
SUMMARY_KEYS = (
    "accuracy_baseline",
    "accuracy_result",
    "accuracy_drop_pp",
    "top1_agreement",
    "output_cosine",
    "latency_p50_ms_baseline",
    "latency_p50_ms_result",
    "speedup",
    "size_bytes_baseline",
    "size_bytes_result",
    "size_ratio",
)

OUTPUT_FILES = ("model.onnx", "report.json", "report.md", "manifest.json", "recipe.resolved.yaml")


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    args: tuple[str, ...]

    def explain(self) -> str:
        return f"modelforge {' '.join(self.args)} -> {self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "PYTHONWARNINGS")}
    env.update({"COLUMNS": "200", "NO_COLOR": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def run_cli(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300):
    """Run `modelforge ARGS` as a user would (a fresh process, through the package's entry point)."""
    argv = tuple(str(a) for a in args)
    proc = subprocess.run(
        [sys.executable, "-m", "modelforge", *argv],
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr, argv)


def write_recipe(path: Path, recipe: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def digits_recipe(out: Path, **overrides: Any) -> dict[str, Any]:
    """A one-pass quantize recipe on the bundled digits model, with quick latency settings."""
    recipe: dict[str, Any] = {
        "version": 1,
        "model": str(DIGITS_MODEL),
        "data": {"calibration": str(DIGITS_CALIBRATION), "eval_data": str(DIGITS_EVAL)},
        # speed_aware off: the tests built on this recipe examine the INT8 model, not whether it pays here.
        "passes": [{"name": "quantize", "config": {"method": "minmax", "speed_aware": False}}],
        "evaluate": {"latency": dict(FAST_LATENCY)},
        "output": {"dir": str(out)},
        "seed": 0,
    }
    recipe.update(overrides)
    return recipe


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under a folder with its bytes (to prove a folder was left untouched)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(parent: Path) -> list[str]:
    """Hidden staging or swap folders a run must never leave behind."""
    return sorted(
        p.name for p in parent.iterdir() if p.name.startswith(".") and (".partial-" in p.name or ".old-" in p.name)
    )


def load_report(out: Path) -> dict[str, Any]:
    return json.loads((out / "report.json").read_text())


def one_error_line(result: CliResult) -> str:
    """The user-facing error: exactly one line on stderr, no traceback."""
    assert "Traceback" not in result.stderr, result.explain()
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.explain()
    return lines[0]


def ort_predictions(model: Path, x: np.ndarray, input_name: str | None = None) -> np.ndarray:
    """Top-1 classes of a model on an array, straight from onnxruntime (an independent check)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = input_name or session.get_inputs()[0].name
    return session.run(None, {name: x.astype(np.float32)})[0].argmax(axis=1)


def _seed_everything() -> None:
    """Seed Python's, NumPy's and (once imported) torch's global generators.

    torch's default generator starts from a different seed in every process, so a model built before any
    `manual_seed` (a teacher, a student, a probe) differed run to run, and so did every verdict trained on it.
    Seeding before each fixture and each test makes such draws the same in every run and in any test order."""
    import random

    random.seed(0)
    np.random.seed(0)
    torch = sys.modules.get("torch")  # never import a framework here: most tests do not need one
    if torch is not None:
        torch.manual_seed(0)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    _seed_everything()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    _seed_everything()
    return (yield)


@pytest.fixture(autouse=True)
def isolated_stage_cache(tmp_path_factory, monkeypatch):
    """Each test gets an empty stage cache: results never leak between tests or into the user's ~/.cache."""
    monkeypatch.setenv("MODELFORGE_CACHE_DIR", str(tmp_path_factory.mktemp("stage-cache")))


def fresh_cache_env(folder: Path) -> dict[str, str]:
    """CLI environment with its own empty stage cache (a run that must really compute, not reuse)."""
    folder.mkdir(parents=True, exist_ok=True)
    assert not any(folder.iterdir())
    return cli_env(MODELFORGE_CACHE_DIR=str(folder))


@pytest.fixture(scope="session")
def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits, scaled to [0, 1] like the bundled data: (x [N, 64], y [N])."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int64)


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory) -> tuple[CliResult, Path]:
    """INT8 quantization of the digits CNN through the CLI, run once and shared by the tests that read its output.

    (The README's quickstart recipe itself runs on calibration/quickstart: see test_quickstart.py.)
    """
    out = tmp_path_factory.mktemp("quickstart") / "out"
    result = run_cli(
        "quantize",
        DIGITS_MODEL,
        "-c",
        DIGITS_CALIBRATION,
        "-e",
        DIGITS_EVAL,
        "-o",
        out,
        "--max-accuracy-drop",
        "0.5",
        "--threads",
        "1",
        "--no-speed-aware",  # these tests examine the INT8 model; test_speed_aware.py covers the speed search
        env=fresh_cache_env(out.parent / "stage-cache"),
    )
    return result, out
