"""Benchmark of the foundation's targets; prints and writes JSON, never asserts a time.

1. ResNet-18-shaped CNN (random weights, realistic BatchNorm statistics), 1x3x224x224, 2 threads:
   FP32 vs modelforge INT8, next to two plain-onnxruntime anchors measured in the same process:
   the best hand-tuned `quantize_static` configuration (pre-processed graph, QDQ, uint8 activations,
   int8 per-channel weights) and `quantize_static` with its defaults. Speed-up = FP32 p50 / model p50,
   all models timed in rotating blocks so a noisy shared machine hits them alike.
2. The bundled quickstart (residual CNN, 64x64 digits): accuracy drop, agreement, speed-up and size ratio of
   the INT8 model it ships, as its report measures them.

    python benchmarks/bench_quantize.py --out bench-results/quantize.json
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

BLOCK, DROPPED = 8, 2


def rotate_latency(sessions: dict, feeds: dict, rounds: int) -> dict[str, list[float]]:
    """Every model runs BLOCK times in turn, `rounds` times over; the first runs of each block are dropped."""
    times = {name: [] for name in sessions}
    for session in sessions.values():  # warm-up
        for _ in range(5):
            session.run(None, feeds)
    for _ in range(rounds):
        for name, session in sessions.items():
            for i in range(BLOCK):
                start = time.perf_counter()
                session.run(None, feeds)
                if i >= DROPPED:
                    times[name].append(time.perf_counter() - start)
    return times


def ort_anchor(prepared: Path, output: Path, calibration: np.ndarray, input_name: str, tuned: bool) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(calibration[i : i + 1] for i in range(len(calibration)))

        def get_next(self):
            batch = next(self._it, None)
            return None if batch is None else {input_name: batch}

    if tuned:
        quantize_static(
            str(prepared),
            str(output),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    else:
        quantize_static(str(prepared), str(output), Reader())


def bench_resnet(threads: int, calibration_samples: int, rounds: int) -> dict:
    from resnet import export_resnet18

    from modelforge.recipe.load import recipe_from_dict
    from modelforge.run.runner import run_recipe
    from modelforge.runtimes.onnxruntime import create_session

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        fp32 = export_resnet18(tmp / "resnet18.onnx")
        rng = np.random.default_rng(0)
        calibration = rng.standard_normal((calibration_samples, 3, 224, 224), dtype=np.float32)
        np.savez(tmp / "calibration.npz", input=calibration)

        started = time.perf_counter()
        recipe = recipe_from_dict(
            {
                "model": str(fp32),
                "data": {"calibration": str(tmp / "calibration.npz")},
                "passes": [{"name": "quantize"}],
                "evaluate": {"latency": {"threads": threads, "min_runs": 60}},
                "output": {"dir": str(tmp / "out")},
            }
        )
        result = run_recipe(recipe)
        modelforge_seconds = time.perf_counter() - started
        int8 = tmp / "out" / "model.onnx"

        from onnxruntime.quantization.shape_inference import quant_pre_process

        prepared = tmp / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared))
        anchors = {"ort_tuned_qdq": tmp / "ort_tuned.onnx", "ort_defaults": tmp / "ort_defaults.onnx"}
        ort_anchor(prepared, anchors["ort_tuned_qdq"], calibration, "input", tuned=True)
        ort_anchor(prepared, anchors["ort_defaults"], calibration, "input", tuned=False)

        models = {"fp32": fp32, "modelforge_int8": int8, **anchors}
        sessions = {name: create_session(path, threads) for name, path in models.items()}
        feeds = {"input": calibration[:1]}
        times = rotate_latency(sessions, feeds, rounds)
        p50 = {name: float(np.median(t) * 1e3) for name, t in times.items()}
        sizes = {name: path.stat().st_size for name, path in models.items()}
        return {
            "model": "ResNet-18 shape, 1x3x224x224, random weights",
            "threads": threads,
            "calibration_samples": calibration_samples,
            "runs_per_model": len(times["fp32"]),
            "p50_ms": p50,
            "p90_ms": {name: float(np.percentile(t, 90) * 1e3) for name, t in times.items()},
            "speedup_vs_fp32": {name: p50["fp32"] / v for name, v in p50.items() if name != "fp32"},
            "size_bytes": sizes,
            "size_ratio_vs_fp32": {name: sizes["fp32"] / v for name, v in sizes.items() if name != "fp32"},
            "modelforge_pipeline": {
                "seconds": modelforge_seconds,
                "report_speedup": result.report["summary"]["speedup"],
                "report_size_ratio": result.report["summary"]["size_ratio"],
                "output_cosine_vs_fp32": result.report["summary"]["output_cosine"],
            },
            "targets": {"speedup": 3.3, "size_ratio": 3.9},
        }


def bench_quickstart() -> dict:
    from modelforge.recipe.load import load_recipe
    from modelforge.run.runner import run_recipe

    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        recipe.output.dir = Path(tmp) / "out"
        summary = run_recipe(recipe).report["summary"]
    return {
        "accuracy_baseline": summary["accuracy_baseline"],
        "accuracy_result": summary["accuracy_result"],
        "accuracy_drop_pp": summary["accuracy_drop_pp"],
        "top1_agreement": summary["top1_agreement"],
        "speedup": summary["speedup"],
        "size_ratio": summary["size_ratio"],
        "targets": {"accuracy_drop_pp": 0.5, "top1_agreement": 0.99, "speedup": 1.5, "size_ratio": 3},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-results/quantize.json"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibration-samples", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()

    from modelforge.machine import machine_record

    results = {
        "machine": machine_record(("torch",)),
        "resnet18": bench_resnet(args.threads, args.calibration_samples, args.rounds),
        "quickstart": bench_quickstart(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
