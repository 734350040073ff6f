"""Calibration memory and time: peak RSS per method vs sample count, on the ResNet-18-shaped model.

Each measurement runs in a fresh child process (so peak RSS is that calibration's own): prepare the graph,
then calibrate with minmax, entropy and percentile on N and 4N samples (default 256 and 1024) of 3x224x224
inputs, batch 8. Reported: peak RSS during calibration (the peak is reset once the model is prepared, via
/proc/self/clear_refs), the RSS before calibration started (model and runtime loaded), the process's
lifetime peak, seconds and seconds per sample. Flat memory means the peak does not grow from N to 4N.

For reference, onnxruntime's own entropy calibrator (`create_calibrator`, which keeps every intermediate
output of every sample) is measured at small sample counts (default 16 and 64).

Also: top-1 accuracy drop of the bundled digits CNN quantized with each method (the full pipeline).

    python benchmarks/calibration_memory.py --out bench-results/calibration_memory.json [--samples 256]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("minmax", "entropy", "percentile")

CHILD = r"""
import json, resource, sys, tempfile, time
from pathlib import Path

def status_mb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return None

def rss_mb():
    return status_mb("VmRSS")

def reset_peak():
    # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS, so the peak measured
    # afterwards is the calibration's own, not that of loading and preparing the model.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False

model, data, method, tool = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
workdir = Path(tempfile.mkdtemp(prefix="calib-bench-"))
if tool == "modelforge":
    from modelforge.data import bind, open_dataset
    from modelforge.model.onnx_model import load_onnx, onnx_artifact
    from modelforge.quantization.calibration import calibrate, tensors_to_calibrate
    from modelforge.quantization.prepare import prepare_for_quantization
    from modelforge.quantization.qdq import quantizable_op_types
    from modelforge.recipe.schema import DataSource

    artifact = onnx_artifact(model)
    dataset = bind(open_dataset(DataSource(path=data)), artifact.io, "calibration data")
    prepared, _, _ = prepare_for_quantization(model, workdir, "quantize")
    tensors = tensors_to_calibrate(load_onnx(prepared, load_external_data=False), quantizable_op_types())
    before = rss_mb()
    peak_reset = reset_peak()
    started = time.perf_counter()
    result = calibrate(prepared, tensors, dataset, method=method, batch_size=8)
    seconds = time.perf_counter() - started
    samples, tensors_done = result.samples, len(result.ranges)
else:
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, create_calibrator
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = workdir / "prepared.onnx"
    quant_pre_process(str(model), str(prepared))
    array = np.load(data, mmap_mode="r")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.start = 0
        def get_next(self):
            if self.start >= len(array):
                return None
            batch = np.ascontiguousarray(array[self.start : self.start + 8])
            self.start += 8
            return {"input": batch}

    methods = {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile,
               "minmax": CalibrationMethod.MinMax}
    before = rss_mb()
    peak_reset = reset_peak()
    started = time.perf_counter()
    calibrator = create_calibrator(prepared, None, augmented_model_path=str(workdir / "aug.onnx"),
                                   calibrate_method=methods[method])
    calibrator.collect_data(Reader())
    ranges = calibrator.compute_data()
    seconds = time.perf_counter() - started
    samples, tensors_done = len(array), len(ranges.data)
peak = status_mb("VmHWM") if peak_reset else None
print(json.dumps({"peak_rss_mb": round(peak, 1) if peak else None,
                  "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "rss_before_calibration_mb": round(before, 1),
                  "seconds": round(seconds, 2), "samples": samples, "tensors": tensors_done}))
"""


def write_samples(path: Path, count: int, seed: int = 0) -> Path:
    """count x 3 x 224 x 224 float32 written chunk by chunk (.npy), never held whole in memory."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(count, 3, 224, 224))
    rng = np.random.default_rng(seed)
    for start in range(0, count, 64):
        stop = min(start + 64, count)
        out[start:stop] = rng.standard_normal((stop - start, 3, 224, 224), dtype=np.float32)
    out.flush()
    del out
    return path


def measure(model: Path, data: Path, method: str, tool: str) -> dict:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(model), str(data), method, tool],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return {"error": tail[0], "wall_seconds": round(time.perf_counter() - started, 1)}
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    record["seconds_per_sample"] = round(record["seconds"] / max(record["samples"], 1), 4)
    return record


def digits_accuracy(method: str, workdir: Path) -> dict:
    from modelforge.recipe.load import recipe_from_dict
    from modelforge.run.runner import run_recipe

    digits = ROOT / "calibration" / "digits"
    recipe = recipe_from_dict(
        {
            "model": str(digits / "model.onnx"),
            "data": {"calibration": str(digits / "calibration.npz"), "eval_data": str(digits / "eval.npz")},
            "passes": [{"name": "quantize", "config": {"method": method}}],
            "evaluate": {"skip_latency": True},
            "output": {"dir": str(workdir / f"digits-{method}"), "force": True},
            "cache": False,
        }
    )
    summary = run_recipe(recipe).report["summary"]
    return {
        "accuracy_baseline": summary["accuracy_baseline"],
        "accuracy_result": summary["accuracy_result"],
        "accuracy_drop_pp": summary["accuracy_drop_pp"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "calibration_memory.json")
    parser.add_argument("--samples", type=int, default=256, help="N: measured at N and 4N samples")
    parser.add_argument("--ort-samples", type=int, nargs="*", default=[16, 64], help="onnxruntime reference runs")
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from resnet import export_resnet18

    from modelforge.machine import cpu_info

    results: dict = {
        "model": "ResNet-18-shaped CNN (benchmarks/resnet.py), input 3x224x224, calibration batch 8",
        "cpu": cpu_info(),
        "modelforge": {},
        "onnxruntime_reference": {},
        "digits_accuracy_by_method": {},
    }
    with tempfile.TemporaryDirectory(prefix="calib-bench-") as tmp:
        tmp = Path(tmp)
        model = export_resnet18(tmp / "resnet18.onnx")
        counts = [args.samples, 4 * args.samples]
        data = {n: write_samples(tmp / f"samples-{n}.npy", n) for n in sorted({*counts, *args.ort_samples})}
        for method in args.methods:
            for n in counts:
                record = measure(model, data[n], method, "modelforge")
                results["modelforge"].setdefault(method, {})[str(n)] = record
                print(f"modelforge  {method:10s} {n:5d} samples: {record}", flush=True)
            small, large = (results["modelforge"][method].get(str(n), {}) for n in counts)
            if "peak_rss_mb" in small and "peak_rss_mb" in large:
                results["modelforge"][method]["peak_rss_growth_mb"] = round(
                    large["peak_rss_mb"] - small["peak_rss_mb"], 1
                )
                results["modelforge"][method]["time_ratio_4n_over_n"] = round(large["seconds"] / small["seconds"], 2)
        for n in args.ort_samples:
            record = measure(model, data[n], "entropy", "onnxruntime")
            results["onnxruntime_reference"].setdefault("entropy", {})[str(n)] = record
            print(f"onnxruntime entropy    {n:5d} samples: {record}", flush=True)
        for method in args.methods:
            results["digits_accuracy_by_method"][method] = digits_accuracy(method, tmp)
            print(f"digits {method}: {results['digits_accuracy_by_method'][method]}", flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
