"""Distillation: the KD loss against a hand-computed value, a distilled student beating the same student trained
on labels alone, `resume` equal to an uninterrupted run, students derived from the teacher with hint layers,
mismatched output shapes (exit 2 naming both), and a 2-process torchrun run that matches the 1-process one."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import cli_env, one_error_line, run_cli

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

import prune_models as pm  # noqa: E402

# The distillation data: the 1200 training digits with 60% of their labels redrawn at random. The teacher was
# trained on clean labels, so a student that listens to it learns the digits; one trained on the labels alone
# learns the noise. Sized so that the verdict holds on any CPU: float training differs with the instruction set
# and thread count, so the gap must be far outside the run-to-run spread, not merely above it on one machine.
# Measured over seeds 0-2, thread counts 1 and 2, AVX-512 and AVX2 kernels: student 0.97-0.99, label-only
# baseline 0.88-0.90, gap 0.077-0.097 (spread about 0.01). With 400 samples and 40% noise the gap was 0.027-0.087
# and the student 0.81-0.90: one seed on one machine decided the verdict.
NOISY_SHARE = 0.6
SAMPLES = 1200
MIN_GAIN = 0.04  # five times the measured spread below the smallest gap


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distill")
    (xt, yt), (xv, yv), (xs, ys) = pm.digits_split()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same reductions on a 2-core CI runner and a 64-core workstation
    try:
        torch.manual_seed(0)  # the teacher's initial weights (torch seeds itself differently in every process)
        model = pm.fit(pm.ResidualNet(16), xt, yt, epochs=6)
    finally:
        torch.set_num_threads(threads)
    assert pm.accuracy(model, xs, ys) > 0.95
    pm.export(model, folder / "teacher.pt2", xt)
    from safetensors.torch import save_file

    save_file(model.state_dict(), str(folder / "teacher.safetensors"))
    torch.manual_seed(0)
    pm.export(pm.ResidualNet(8), folder / "student.pt2", xt)
    rng = np.random.default_rng(0)
    noisy = yt[:SAMPLES].copy()
    flip = rng.random(SAMPLES) < NOISY_SHARE
    noisy[flip] = rng.integers(0, 10, int(flip.sum()))
    np.savez(folder / "train.npz", pixels=xt[:SAMPLES], labels=noisy)
    # the tests of resume and hints need no statistical verdict: a third of the samples keeps them quick
    np.savez(folder / "train-small.npz", pixels=xt[:400], labels=noisy[:400])
    np.savez(folder / "val.npz", pixels=xv, labels=yv)
    return folder


def _recipe(folder, out, config, **extra):
    from modelforge.recipe.load import recipe_from_dict

    raw = {
        "model": str(folder / "teacher.pt2"),
        "data": {"train": str(folder / "train-small.npz"), "eval_data": str(folder / "val.npz")},
        "passes": [{"name": "distill", "config": config}],
        "evaluate": {"skip_latency": True},
        "output": str(out),
        "cache": False,
        **extra,
    }
    return recipe_from_dict(raw)


def _stage(report):
    return next(s for s in report["stages"] if s["name"] == "distill")["metrics"]


def test_kd_loss_equals_a_hand_computed_value():
    from modelforge.distillation import kd_loss, output_loss

    student = [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]]
    teacher = [[3.0, 1.0, 0.0], [0.0, 0.0, 4.0]]
    labels = [2, 0]
    t, alpha = 2.0, 0.7

    def softmax(row, temp):
        e = [math.exp(v / temp) for v in row]
        return [v / sum(e) for v in e]

    kl = ce = 0.0
    for s_row, t_row, label in zip(student, teacher, labels, strict=True):
        p_t, p_s = softmax(t_row, t), softmax(s_row, t)
        kl += sum(a * (math.log(a) - math.log(b)) for a, b in zip(p_t, p_s, strict=True))
        ce += -math.log(softmax(s_row, 1.0)[label])
    expected = alpha * (kl / 2) * t * t + (1 - alpha) * ce / 2
    value = kd_loss(torch.tensor(student), torch.tensor(teacher), torch.tensor(labels), t, alpha)
    assert float(value) == pytest.approx(expected, rel=1e-6)
    # alpha 1: the soft term alone, still scaled by T^2
    alone = kd_loss(torch.tensor(student), torch.tensor(teacher), torch.tensor(labels), t, 1.0)
    assert float(alone) == pytest.approx(kl / 2 * t * t, rel=1e-6)
    # MSE and cosine on outputs (regression / embedding teachers)
    a, b = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    assert float(output_loss(a, b, "mse")) == pytest.approx((1 + 1 + 0 + 1) / 4)
    assert float(output_loss(a, b, "cosine")) == pytest.approx(((1 - 0.0) + (1 - 1.0)) / 2)


def _distill_args(teacher) -> tuple:
    return (
        "distill", "--teacher", teacher / "teacher.pt2", "--student", teacher / "student.pt2",
        "--train-data", teacher / "train.npz", "--eval-data", teacher / "val.npz", "--epochs", "8",
        "--batch-size", "32", "--temperature", "2", "--threads", "1", "-q", "--no-cache",
        "--no-default-gates",  # a width-8 student on noisy labels: KD vs label-only is the point, not the drop
    )  # fmt: skip


@pytest.fixture(scope="module")
def single_run(teacher, tmp_path_factory):
    """One `modelforge distill` run in one process (the torchrun test compares with it)."""
    out = tmp_path_factory.mktemp("single") / "out"
    result = run_cli(*_distill_args(teacher), "-o", out)
    assert result.returncode == 0, result.explain()
    return out


@pytest.mark.slow
def test_the_distilled_student_beats_the_label_only_baseline(single_run):
    out = single_run
    assert {"model.onnx", "model.pt2", "report.json", "report.html", "manifest.json"} <= {p.name for p in out.iterdir()}
    report = json.loads((out / "report.json").read_text())
    assert [s["name"] for s in report["stages"]] == ["convert", "distill", "convert"]
    m = _stage(report)
    models = m["models"]
    assert m["baseline"].startswith("label-only")  # on by default: a small run
    assert models["student"]["accuracy"] > models["baseline"]["accuracy"] + MIN_GAIN, models
    assert models["student"]["agreement_with_teacher"] > models["baseline"]["agreement_with_teacher"]
    assert m["gain_over_baseline_pp"] > 100 * MIN_GAIN
    assert models["student"]["params"] < 0.3 * models["teacher"]["params"]
    assert m["params_ratio"] == pytest.approx(models["student"]["params"] / models["teacher"]["params"])
    assert 0 < m["macs_ratio"] < 0.3
    assert m["teacher_cache"]["enabled"] and m["teacher_cache"]["epochs"] == 8
    assert m["teacher_cache"]["seconds_saved"] == pytest.approx(7 * m["teacher_cache"]["build_seconds"], abs=1e-3)
    assert len(m["training_curve"]) == 8 and len(m["baseline_training_curve"]) == 8
    # the report's summary compares the teacher's ONNX form with the student's, on the same runtime
    assert report["summary"]["accuracy_result"] == pytest.approx(models["student"]["accuracy"], abs=0.01)
    assert report["summary"]["speedup"] is not None and report["summary"]["size_ratio"] > 2
    html = (out / "report.html").read_text()
    assert 'id="distillation"' in html and "Label-only baseline: training curve" in html
    assert "Distilled student: training curve" in html


def test_mismatched_output_shapes_exit_2_naming_both(teacher, tmp_path):
    wrong = tmp_path / "wrong.pt2"
    seven = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 7))
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(seven.eval(), (torch.zeros(4, 1, 8, 8),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(wrong))
    out = tmp_path / "out"
    result = run_cli(
        "distill", "--teacher-factory", "prune_models:build_residual", "--teacher-weights",
        teacher / "teacher.safetensors", "--student", wrong, "--train-data", teacher / "train.npz", "-o", out, "-q",
        "--code-path", pm.Path(pm.__file__).parent, cwd=pm.Path(pm.__file__).parent,
    )  # fmt: skip
    # a teacher built by a factory (prune_models.build_residual: the width-16 net) with its weights
    assert result.returncode == 2, result.explain()
    one_error_line(result)
    assert "[N, 10]" in result.stderr and "[N, 7]" in result.stderr
    assert not out.exists() and not (tmp_path / "out.checkpoints").exists()


def test_resume_equals_an_uninterrupted_run(teacher, tmp_path):
    from modelforge.passes.base import Progress
    from modelforge.run.runner import run_recipe

    def recipe(name, resume, checkpoints):
        config = {
            "student": str(teacher / "student.pt2"),
            "temperature": 2.0,
            "baseline": False,
            "train": {"epochs": 2, "batch_size": 64},
            "checkpoint_dir": str(tmp_path / checkpoints),
            "resume": resume,
        }
        return _recipe(teacher, tmp_path / name, config)

    class Interrupt(Progress):
        steps = 0

        def advance(self, amount: int = 1) -> None:
            Interrupt.steps += 1
            if Interrupt.steps == 10:  # the distilled student's second epoch (7 steps per epoch)
                raise KeyboardInterrupt

    whole = run_recipe(recipe("whole", False, "ck-whole"))
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe("broken", False, "ck"), progress=Interrupt())
    assert not (tmp_path / "broken").exists()
    resumed = run_recipe(recipe("resumed", True, "ck"))
    assert _stage(resumed.report)["resumed_from_epoch"] == 1
    assert _stage(resumed.report)["training_curve"] == _stage(whole.report)["training_curve"]
    a = torch.export.load(str(whole.output_dir / "model.pt2")).state_dict
    b = torch.export.load(str(resumed.output_dir / "model.pt2")).state_dict
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_student_from_the_teacher_with_hint_layers(teacher, tmp_path):
    from modelforge.run.runner import run_recipe

    config = {
        "student_from_teacher": 0.5,
        "hints": [{"teacher": "block2.bn2", "student": "block2.bn2"}],
        "baseline": False,
        "train": {"epochs": 2, "batch_size": 64},
    }
    report = run_recipe(_recipe(teacher, tmp_path / "out", config)).report
    m = _stage(report)
    assert "width 0.5" in m["student_source"]
    assert 0.15 < m["params_ratio"] < 0.45 and m["macs_ratio"] < 0.5  # the first conv and classifier are kept
    assert m["teacher_cache"] == {"enabled": False, "reason": "hint layers need the teacher's features for every batch"}
    assert "baseline" not in m["models"] and m["baseline_training_curve"] is None
    assert m["training_curve"][1]["loss"] < m["training_curve"][0]["loss"]  # KD and hint terms both trained
    assert m["models"]["student"]["accuracy"] > 0.2  # two epochs from pruned weights (chance: 0.1)
    from modelforge.distillation.losses import FeatureTap
    from modelforge.errors import InputError

    with pytest.raises(InputError, match="'nope' is not a layer of the teacher"):
        FeatureTap(pm.ResidualNet(8), ["nope"], "teacher")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="torchrun's gloo rendezvous is tested on Linux/macOS")
def test_two_torchrun_processes_match_one_and_only_rank_0_writes(teacher, single_run, tmp_path):
    work = tmp_path / "two"
    work.mkdir()
    argv = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", "--max-restarts", "0",
        "-m", "modelforge", *map(str, _distill_args(teacher)), "-o", str(work / "out"),
    ]  # fmt: skip
    proc = subprocess.run(argv, cwd=work, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # rank 0 wrote the output and its checkpoints (inside it, once); rank 1 left nothing (no second staging folder)
    assert sorted(p.name for p in work.iterdir()) == ["out"]
    assert sorted(p.name for p in (work / "out" / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    one = json.loads((single_run / "report.json").read_text())
    two = json.loads((work / "out" / "report.json").read_text())
    assert _stage(two)["distributed"] == {"world_size": 2} and _stage(one)["distributed"] == {"world_size": 1}
    a, b = _stage(one)["models"]["student"]["accuracy"], _stage(two)["models"]["student"]["accuracy"]
    assert abs(a - b) <= 0.05, (a, b)  # the same global batch and schedule; only the sample order differs
    assert b > 0.8
    assert "PASSED" in proc.stderr and proc.stderr.count("PASSED") == 1  # one rank reports
    assert os.environ.get("RANK") is None  # the test process itself is not a rank


def test_the_distill_then_int8_recipe_is_valid(tmp_path):
    """The shipped recipe parses, its student path resolves beside the recipe, and the chain converts once."""
    import yaml

    from modelforge.recipe.load import recipe_from_dict, resolve_paths
    from modelforge.run.plan import check_pass_chain

    path = pm.Path(__file__).parents[1] / "recipes" / "distill-then-int8.yaml"
    recipe = resolve_paths(recipe_from_dict(yaml.safe_load(path.read_text())), path.parent)
    assert [p.name for p in recipe.passes] == ["distill", "quantize"]
    assert recipe.passes[0].config["student"] == str((path.parent / "../examples/distill/student.pt2").resolve())
    assert recipe.passes[0].config["baseline"] is True
    recipe.model.format = "torch-export"  # the teacher is made by scripts/make_distill_example.py
    assert [cls.name for _, cls in check_pass_chain(recipe)] == ["distill", "quantize"]
