"""Benchmark of `modelforge distill`'s targets; prints and writes JSON, never asserts.

Task: distorted 16x16 digits (benchmarks/distill_task.py: scikit-learn's digits upsampled, rotated, scaled,
shifted and noised; train / val / test from disjoint source images). A ResNet-style teacher (width 32) is
trained here with modelforge's training loop; the student is the same family at width 14 (about 19% of the
parameters), exported as a fresh-weights .pt2 and given with --student. modelforge sees train + val (val picks
the best epoch); accuracies are measured on the test split it never saw.

Targets: the student reaches >= 98% of the teacher's test accuracy, beats the same student trained on labels
alone with the same budget (the run's --baseline), and runs >= 2x faster than the teacher in ONNX Runtime
(the report's interleaved p50, batch 1 and 32). Then the same run under `torchrun --nproc-per-node 2` (gloo, CPU):
wall time and accuracy next to the 1-process run.

    python benchmarks/bench_distill.py --out bench-results/distill.json [--seeds 0 1] [--epochs 12]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def torch_accuracy(module, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    module.eval()
    with torch.no_grad():
        top1 = torch.cat([module(torch.from_numpy(x[i : i + 256])).argmax(1) for i in range(0, len(x), 256)])
    return float((top1.numpy() == y).mean())


def ort_accuracy(model: Path, x: np.ndarray, y: np.ndarray) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    top1 = np.concatenate([session.run(None, {name: x[i : i + 256]})[0].argmax(1) for i in range(0, len(x), 256)])
    return float((top1 == y).mean())


def prepare(work: Path, epochs: int, reuse: bool = False, progress=None) -> dict:
    """Data files, the trained teacher (.pt2) and a fresh student (.pt2); `reuse`: those already in `work`;
    `progress`: where the teacher's training reports its epochs (modelforge.progress.LineProgress prints them)."""
    import distill_task as task
    import torch

    from modelforge.model.torch.export import save_program
    from modelforge.training import TrainConfig, train

    if reuse and (work / "teacher.pt2").is_file() and (work / "task.json").is_file():
        return json.loads((work / "task.json").read_text())
    (xt, yt), (xv, yv), (xs, ys) = task.distorted_digits()
    for name, (x, y) in {"train": (xt, yt), "val": (xv, yv), "test": (xs, ys)}.items():
        np.savez(work / f"{name}.npz", pixels=x, labels=y)
    teacher = task.teacher_net()
    started = time.perf_counter()
    data = ((torch.from_numpy(xt),), torch.from_numpy(yt))
    shown = {"progress": progress, "description": "teacher"} if progress else {}
    train(teacher, data, ((torch.from_numpy(xv),), torch.from_numpy(yv)), TrainConfig(epochs=epochs, lr=3e-3),
          checkpoint_dir=work / "teacher-training", seed=0, **shown)  # fmt: skip
    example = (torch.from_numpy(xt[:4]),)
    save_program(teacher, example, work / "teacher.pt2")
    save_program(task.student_net(), example, work / "student.pt2")
    task_record = {
        "train_samples": len(yt),
        "val_samples": len(yv),
        "test_samples": len(ys),
        "teacher_epochs": epochs,
        "teacher_training_seconds": round(time.perf_counter() - started, 1),
        "teacher_test_accuracy": torch_accuracy(teacher, xs, ys),
    }
    (work / "task.json").write_text(json.dumps(task_record))
    return task_record


KD = {"temperature": 4.0, "alpha": 0.9}  # Hinton's soft targets; --temperature / --alpha change them


def recipe(work: Path, out: Path, seed: int, epochs: int, baseline: bool, latency: bool) -> dict:
    evaluate = {"latency": {"threads": 1, "batch_sizes": [1, 32], "max_seconds": 10}}
    return {
        "model": str(work / "teacher.pt2"),
        "data": {"train": str(work / "train.npz"), "eval_data": str(work / "val.npz")},
        "passes": [
            {
                "name": "distill",
                "config": {
                    "student": str(work / "student.pt2"),
                    "temperature": KD["temperature"],
                    "alpha": KD["alpha"],
                    "baseline": baseline,
                    "train": {"epochs": epochs, "lr": 3e-3, "batch_size": 64},
                    "checkpoint_dir": str(out) + ".checkpoints",
                },
            }
        ],
        "evaluate": evaluate if latency else {"skip_latency": True},
        "output": {"dir": str(out), "force": True},
        "seed": seed,
        "cache": False,
    }


def test_accuracies(work: Path, out: Path) -> dict:
    """Teacher, distilled student and label-only baseline on the test split (torch; the student also in ORT)."""
    import distill_task as task
    import torch

    from modelforge.model.torch.loading import load_program
    from modelforge.model.torch.rebuild import rebuild_modules

    test = np.load(work / "test.npz")
    xs, ys = test["pixels"], test["labels"]
    result = {
        "teacher": torch_accuracy(rebuild_modules(load_program(work / "teacher.pt2")), xs, ys),
        "student": torch_accuracy(rebuild_modules(load_program(out / "model.pt2")), xs, ys),
        "student_onnx": ort_accuracy(out / "model.onnx", xs, ys),
    }
    best = Path(str(out) + ".checkpoints") / "baseline" / "best.pt"
    if best.is_file():
        baseline = task.student_net()
        baseline.load_state_dict(torch.load(str(best), map_location="cpu", weights_only=True)["model"])
        result["baseline"] = torch_accuracy(baseline, xs, ys)
    return result


def distill_once(work: Path, seed: int, epochs: int) -> dict:
    from modelforge.recipe.load import recipe_from_dict
    from modelforge.run.runner import run_recipe

    out = work / f"out-seed{seed}"
    started = time.perf_counter()
    report = run_recipe(recipe_from_dict(recipe(work, out, seed, epochs, True, True), "bench")).report
    seconds = time.perf_counter() - started
    m = next(s for s in report["stages"] if s["name"] == "distill")["metrics"]
    latency = report["evaluation"]["latency"]
    sweep = {e["batch_size"]: e for e in latency.get("sweep") or []}
    test = test_accuracies(work, out)
    row = {
        "seed": seed,
        "kd": dict(KD),
        "test_accuracy": test,
        "student_share_of_teacher": test["student"] / test["teacher"],
        "gain_over_baseline_pp": 100 * (test["student"] - test["baseline"]) if "baseline" in test else None,
        "val_accuracy": {k: v["accuracy"] for k, v in m["models"].items()},
        "params": {k: v["params"] for k, v in m["models"].items()},
        "macs": {k: v["macs"] for k, v in m["models"].items()},
        "params_ratio": m["params_ratio"],
        "macs_ratio": m["macs_ratio"],
        "onnx_bytes": {
            "teacher": report["summary"]["size_bytes_baseline"],
            "student": report["summary"]["size_bytes_result"],
        },
        "speedup_batch1": report["summary"]["speedup"],
        "p50_ms_batch1": {
            "teacher": report["summary"]["latency_p50_ms_baseline"],
            "student": report["summary"]["latency_p50_ms_result"],
        },  # fmt: skip
        "speedup_by_batch": {b: e.get("speedup") for b, e in sweep.items()},
        "latency_threads": latency.get("threads"),
        "teacher_cache": m["teacher_cache"],
        "seconds_distill": m["seconds_distill"],
        "seconds_baseline": m["seconds_baseline"],
        "seconds_run": round(seconds, 1),
    }
    print("distill", json.dumps(row), flush=True)
    return row


def ddp_wall_times(work: Path, epochs: int, timeout: float) -> dict:
    """The same distillation (no baseline, no latency) as 1 process and as 2 torchrun processes, each timed."""
    import yaml

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = {}
    for procs in (1, 2):
        out = work / f"ddp-{procs}"
        path = work / f"ddp-{procs}.yaml"
        path.write_text(yaml.safe_dump(recipe(work, out, 0, epochs, False, False)))
        launcher = [sys.executable, "-m", "modelforge"]
        if procs > 1:
            launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs),
                        "-m", "modelforge"]  # fmt: skip
        started = time.perf_counter()
        proc = subprocess.run([*launcher, "run", str(path), "-q"], env=env, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            result[procs] = {"error": proc.stderr[-2000:]}
            continue
        report = json.loads((out / "report.json").read_text())
        m = next(s for s in report["stages"] if s["name"] == "distill")["metrics"]
        result[procs] = {
            "processes": procs,
            "wall_seconds": round(wall, 1),
            "distill_seconds": m["seconds_distill"],
            "world_size": m["distributed"]["world_size"],
            "test_accuracy": test_accuracies(work, out)["student"],
        }
        print("ddp", json.dumps(result[procs]), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results/distill.json"))
    parser.add_argument("--work", type=Path, default=None, help="Keep the models and data here (default: temp).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--ddp-epochs", type=int, default=4, help="Epochs of the 1- vs 2-process timing runs.")
    parser.add_argument("--skip-ddp", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="Reuse the teacher and data already in --work.")
    parser.add_argument("--temperature", type=float, default=KD["temperature"])
    parser.add_argument("--alpha", type=float, default=KD["alpha"])
    args = parser.parse_args()
    KD.update(temperature=args.temperature, alpha=args.alpha)
    import tempfile

    from modelforge.machine import machine_record

    with tempfile.TemporaryDirectory(prefix="bench-distill-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        record = {"benchmark": "distill", "machine": machine_record(("torch", "torch_pruning"))}
        record["task"] = prepare(work, args.epochs, args.reuse)
        print("task", json.dumps(record["task"]), flush=True)
        record["runs"] = [distill_once(work, seed, args.epochs) for seed in args.seeds]
        runs = record["runs"]
        record["mean"] = {
            "student_share_of_teacher": float(np.mean([r["student_share_of_teacher"] for r in runs])),
            "gain_over_baseline_pp": float(np.mean([r["gain_over_baseline_pp"] for r in runs])),
            "speedup_batch1": float(np.median([r["speedup_batch1"] for r in runs])),
        }
        if not args.skip_ddp:
            record["ddp"] = ddp_wall_times(work, args.ddp_epochs, timeout=1200)
        print("mean", json.dumps(record["mean"]), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2, default=str) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
