"""Benchmark of `modelforge export`'s measured parts; prints and writes JSON, never asserts.

1. Triton batch sweep on a ResNet-18-shaped model (random weights, 3x224x224): p50 latency, throughput and
   peak memory (fresh process, RSS growth) per batch size on onnxruntime's CPU provider, and the
   max_batch_size / preferred sizes / queue delay export chooses with and without a memory budget.
2. Drift scoring throughput: building a baseline and scoring new images (PSI + KS per channel) in samples/s.

    python benchmarks/bench_export.py --out bench-results/export.json [--threads N] [--budget-mib 180]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def bench_sweep(work: Path, threads: int, budget_mib: float, batch_sizes: list[int]) -> dict:
    from resnet import export_resnet18

    from modelforge.export.batching import choose_batching, measure_batches, tile_samples

    model = export_resnet18(work / "resnet18.onnx")
    samples = {"input": np.random.default_rng(0).standard_normal((8, 3, 224, 224)).astype(np.float32)}
    name = _input_name(model)
    samples = {name: samples["input"]}
    rows = measure_batches(model, lambda b: tile_samples(samples, b), batch_sizes, threads=threads, max_seconds=8.0)
    unlimited = choose_batching([dict(r) for r in rows], None)
    budgeted = choose_batching(rows, int(budget_mib * 2**20))
    print(f"\nTriton batch sweep, ResNet-18 shape, onnxruntime CPU, {threads} thread(s)")
    print(f"{'batch':>5} {'p50 ms':>9} {'img/s':>8} {'peak MiB':>9} {'fits ' + str(budget_mib) + ' MiB':>12}")
    for row in rows:
        memory = (row["peak_memory_bytes"] or 0) / 2**20
        print(
            f"{row['batch_size']:>5} {row['p50_ms']:>9.2f} {row['throughput_per_s']:>8.1f} {memory:>9.1f} "
            f"{str(row['within_budget']):>12}"
        )
    print(f"no budget: {unlimited}")
    print(f"budget {budget_mib} MiB: {budgeted}")
    return {"rows": rows, "chosen_without_budget": unlimited, "chosen_with_budget": budgeted, "budget_mib": budget_mib}


def _input_name(model: Path) -> str:
    import onnx

    return onnx.load(model, load_external_data=False).graph.input[0].name


def bench_drift(work: Path, samples: int) -> dict:
    from modelforge.data import bind, open_dataset
    from modelforge.model.artifact import IOSpec, TensorSpec
    from modelforge.monitoring.baseline import build_baseline
    from modelforge.monitoring.drift import score_features
    from modelforge.recipe.schema import DataSource

    rng = np.random.default_rng(0)
    reference = rng.random((samples, 3, 224, 224), dtype=np.float32)
    shifted = np.clip(reference * 0.8 + 0.15, 0, 1)
    io = IOSpec(inputs=(TensorSpec("input", "float32", (None, 3, 224, 224)),), outputs=())
    paths = {}
    for name, values in (("reference", reference), ("shifted", shifted)):
        paths[name] = work / f"{name}.npz"
        np.savez(paths[name], input=values)

    def bound(path):
        return bind(open_dataset(DataSource(path=path), io.inputs[0].shape), io)

    started = time.perf_counter()
    baseline = build_baseline(None, bound(paths["reference"]), None)
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    scores = score_features(baseline, bound(paths["shifted"]))
    score_s = time.perf_counter() - started
    result = {
        "samples": samples,
        "input": "3x224x224 float32",
        "baseline_seconds": build_s,
        "baseline_samples_per_s": samples / build_s,
        "baseline_json_bytes": len(json.dumps(baseline)),
        "score_seconds": score_s,
        "score_samples_per_s": samples / score_s,
        "worst_psi": scores[0]["psi"],
    }
    print(f"\nDrift: {json.dumps(result, indent=1)}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results/export.json"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--budget-mib", type=float, default=180.0)
    parser.add_argument("--batch-sizes", default="1,2,4,8,16,32")
    parser.add_argument("--drift-samples", type=int, default=512)
    args = parser.parse_args()
    from modelforge.machine import machine_record
    from modelforge.runtimes.onnxruntime import default_threads

    threads = args.threads or default_threads()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        record = {
            "machine": machine_record(("torch",)),
            "runtime": {"runtime": "onnxruntime", "device": "CPU", "precision": "fp32", "threads": threads},
            "sweep": bench_sweep(work, threads, args.budget_mib, [int(b) for b in args.batch_sizes.split(",")]),
            "drift": bench_drift(work, args.drift_samples),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
