"""Benchmark of `modelforge prune`'s targets; prints and writes JSON, never asserts.

1. Accuracy (a residual CNN trained here on scikit-learn's digits; modelforge sees train + val, the figures are
   measured on a test split it never saw, with onnxruntime on the ONNX files it wrote):
   - structured, 50% of channels, fine-tuned: accuracy drop (target <= 1 pt);
   - magnitude, 80% of weights, gradual, fine-tuned: accuracy drop (<= 1 pt), gzipped ONNX size (<= 0.35x),
     and the latency ratio, to show that dense CPU kernels do not get faster;
   - prune + INT8 (recipes/prune-then-int8.yaml): both stages in one report, combined ratios.
2. Latency (a ResNet-18-shaped model, random weights, realistic BatchNorm statistics): structured 50% of
   channels, onnxruntime p50 at batch 1 and 32 vs the dense model, interleaved (target <= 0.55x).

    python benchmarks/bench_prune.py --out bench-results/prune.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))


def gz(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), compresslevel=6, mtime=0))


def ort_accuracy(model: Path, x: np.ndarray, y: np.ndarray) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    predictions = np.concatenate(
        [session.run(None, {name: x[i : i + 256]})[0].argmax(1) for i in range(0, len(x), 256)]
    )
    return float((predictions == y).mean())


def run(recipe: dict) -> dict:
    from modelforge.recipe.load import recipe_from_dict
    from modelforge.run.runner import run_recipe

    started = time.perf_counter()
    result = run_recipe(recipe_from_dict(recipe, "bench"))
    result.report["_seconds"] = time.perf_counter() - started
    return result.report


def stage(report: dict, name: str) -> dict:
    return next(s for s in report["stages"] if s["name"] == name)["metrics"]


def bench_accuracy(work: Path, width: int, epochs: int, finetune: int, latency: dict) -> dict:
    import prune_models as pm
    import torch

    from modelforge.convert.to_onnx import convert_to_onnx
    from modelforge.model.artifact import ModelArtifact

    paths = pm.write_data(work)
    (xt, yt), _, (xs, ys) = pm.digits_split()
    torch.manual_seed(0)  # the dense model's initial weights too: the same model in every run and checkout
    model = pm.fit(pm.ResidualNet(width), xt, yt, epochs=epochs)
    program = pm.export(model, work / "model.pt2", xt)
    (work / "dense").mkdir()
    dense, _ = convert_to_onnx(ModelArtifact(program, "torch-export"), work / "dense", 17)
    dense_acc = ort_accuracy(dense.path, xs, ys)
    base = {
        "model": str(program),
        "data": {"train": str(paths["train"]), "eval_data": str(paths["val"])},
        "evaluate": {"latency": latency},
        "cache": False,
        "seed": 0,
    }
    train = {"epochs": finetune, "lr": 2e-3, "early_stopping": 3}
    cases = {
        "structured_50": [{"name": "prune", "config": {"method": "structured", "sparsity": 0.5, "train": train}}],
        "magnitude_80": [
            {
                "name": "prune",
                "config": {
                    "method": "magnitude",
                    "sparsity": 0.8,
                    "schedule": "gradual",
                    "steps": 3,
                    "step_epochs": 2,
                    "train": train,
                },
            }
        ],
        "structured_50_int8": [
            {"name": "prune", "config": {"method": "structured", "sparsity": 0.5, "train": train}},
            {"name": "quantize", "config": {"calibration_samples": 256, "speed_aware": False}},
        ],
    }
    results = {"model": f"ResidualNet(width={width}) on digits 8x8", "dense_test_accuracy": dense_acc}
    for name, passes in cases.items():
        recipe = dict(base, passes=passes, output={"dir": str(work / name)})
        if name.endswith("int8"):
            recipe["data"] = dict(base["data"], calibration=str(paths["train"]))
        report = run(recipe)
        out = work / name / "model.onnx"
        prune = stage(report, "prune")
        test_acc = ort_accuracy(out, xs, ys)
        results[name] = {
            "test_accuracy": test_acc,
            "test_accuracy_drop_pp": 100 * (dense_acc - test_acc),
            "val_accuracy_before_prune": prune["accuracy_before_prune"],
            "val_accuracy_after_prune": prune["accuracy_after_prune"],
            "val_accuracy_after_finetune": prune["accuracy_after_finetune"],
            "params_ratio": prune["params_ratio"],
            "macs_ratio": prune["macs_ratio"],
            "onnx_bytes_ratio": out.stat().st_size / dense.path.stat().st_size,
            "onnx_gzip_ratio": gz(out) / gz(dense.path),
            "latency_ratio_batch1": 1 / report["summary"]["speedup"] if report["summary"]["speedup"] else None,
            "stages": [s["name"] for s in report["stages"]],
            "epochs_trained": len(prune["training_curve"]),
            "seconds": report["_seconds"],
        }
        if "sparsity_measured" in prune:
            results[name]["sparsity_measured"] = prune["sparsity_measured"]
        if "channel_fraction_removed" in prune:
            results[name]["channel_fraction_removed"] = prune["channel_fraction_removed"]
        print(name, json.dumps(results[name]), flush=True)
    return results


def bench_latency(work: Path, size: int, threads: int | None, max_seconds: float) -> dict:
    import torch
    from resnet import build_resnet18

    model = build_resnet18(num_classes=10)
    batch = torch.export.Dim("batch", min=1, max=1024)
    x = torch.randn(4, 3, size, size)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(work / "resnet18.pt2"))
    rng = np.random.default_rng(0)
    np.savez(
        work / "images.npz",
        x=rng.standard_normal((64, 3, size, size)).astype(np.float32),
        labels=rng.integers(0, 10, 64),
    )
    latency = {"batch_size": 1, "batch_sizes": [1, 32], "min_runs": 20, "max_seconds": max_seconds}
    if threads:
        latency["threads"] = threads
    report = run(
        {
            "model": str(work / "resnet18.pt2"),
            "data": {"train": str(work / "images.npz"), "eval_data": str(work / "images.npz")},
            "passes": [{"name": "prune", "config": {"method": "structured", "sparsity": 0.5, "train": {"epochs": 0}}}],
            "evaluate": {"latency": latency},
            "output": {"dir": str(work / "resnet18-structured")},
            "cache": False,
        }
    )
    prune = stage(report, "prune")
    sweep = report["evaluation"]["latency"]["sweep"]
    by_batch = {
        e["batch_size"]: {
            "dense_p50_ms": e["stats"]["baseline"]["p50_ms"],
            "pruned_p50_ms": e["stats"]["result"]["p50_ms"],
            "latency_ratio": e["stats"]["result"]["p50_ms"] / e["stats"]["baseline"]["p50_ms"],
        }
        for e in sweep
    }
    result = {
        "model": f"ResNet-18-shaped, 3x{size}x{size}, 10 classes, random weights",
        "threads": report["evaluation"]["latency"]["threads"],
        "runtime": "onnxruntime CPUExecutionProvider, FP32",
        "macs_ratio": prune["macs_ratio"],
        "params_ratio": prune["params_ratio"],
        "channel_fraction_removed": prune["channel_fraction_removed"],
        "by_batch": by_batch,
        "seconds": report["_seconds"],
    }
    print("latency", json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results/prune.json"))
    parser.add_argument("--width", type=int, default=32, help="Accuracy model width.")
    parser.add_argument("--epochs", type=int, default=20, help="Training epochs of the dense accuracy model.")
    parser.add_argument("--finetune", type=int, default=8, help="Fine-tuning epochs after pruning.")
    parser.add_argument("--size", type=int, default=112, help="ResNet-18 input height and width.")
    parser.add_argument("--threads", type=int, default=None, help="Latency threads (default: all cores).")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="Latency time budget per batch size.")
    parser.add_argument("--skip", choices=["accuracy", "latency"], action="append", default=[])
    args = parser.parse_args()

    from modelforge.machine import machine_record

    record = {"benchmark": "prune", "machine": machine_record(("torch", "torch_pruning"))}
    with tempfile.TemporaryDirectory(prefix="bench-prune-") as tmp:
        work = Path(tmp)
        if "accuracy" not in args.skip:
            (work / "accuracy").mkdir()
            fast = {"min_runs": 50, "max_seconds": 5}
            if args.threads:
                fast["threads"] = args.threads
            record["accuracy"] = bench_accuracy(work / "accuracy", args.width, args.epochs, args.finetune, fast)
        if "latency" not in args.skip:
            (work / "latency").mkdir()
            record["latency"] = bench_latency(work / "latency", args.size, args.threads, args.max_seconds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
