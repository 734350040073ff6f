"""Benchmark of the TensorFlow / Keras targets; prints and writes JSON, never asserts.

A Keras CNN (tf_keras) is trained here on scikit-learn's digits (NHWC 8x8x1: 1200 train, 300 calibration,
297 held out). modelforge sees the train/calibration splits; every accuracy is measured on the held-out split.
1. ONNX conversion (tf2onnx): max abs difference and cosine vs Keras on the held-out samples (target <= 1e-4).
2. TFLite full INT8 (int8 IO, 200 representative samples), run on LiteRT: accuracy drop vs the float model
   (target <= 0.5 pt), size vs the float32 .tflite (target >= 3.5x smaller); float16 and dynamic-range variants;
   LiteRT p50 latency at batch 1 of each variant, interleaved in one process.
3. TF-MOT magnitude pruning to 50% with fine-tuning: accuracy drop (target <= 1 pt), measured sparsity, gzip.

    python benchmarks/bench_tf.py --out bench-results/tf.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _run(raw: dict) -> dict:
    from modelforge.recipe.load import recipe_from_dict
    from modelforge.run.runner import run_recipe

    return run_recipe(recipe_from_dict(raw)).report


def bench_conversion(model_path: Path, work: Path, x: np.ndarray) -> dict:
    from modelforge.convert.tensorflow import check_conversion
    from modelforge.convert.to_onnx import convert_to_onnx
    from modelforge.model.loader import load_model
    from modelforge.model.tensorflow.loading import load_tf_model

    artifact = load_model(model_path)
    onnx_form, info = convert_to_onnx(artifact, work, 17, {"image": x[:32]})
    held_out = check_conversion(load_tf_model(artifact), onnx_form.path, {"image": x})
    return {"exporter": info["exporter"], "samples": len(x), **held_out, "target_max_abs": 1e-4}


def bench_tflite(model_path: Path, data: dict, work: Path, threads: int) -> dict:
    from modelforge.export.tflite import convert_tflite
    from modelforge.model.loader import load_model
    from modelforge.model.tensorflow.loading import load_tf_model
    from modelforge.runtimes.tflite import TfliteBackend

    report = _run(
        {
            "model": str(model_path),
            "data": {"calibration": str(data["calib"]), "eval_data": str(data["eval"])},
            "passes": [{"name": "tflite", "config": {"precision": "int8", "io_type": "int8"}}],
            "evaluate": {"latency": {"threads": threads, "min_runs": 200, "max_seconds": 5}},
            "output": {"dir": str(work / "int8")},
            "cache": False,
        }
    )
    stage = next(s for s in report["stages"] if s["name"] == "tflite")["metrics"]
    tf_model = load_tf_model(load_model(model_path))
    ev = np.load(data["eval"])
    variants = {}
    backends = {}
    for precision in ("fp32", "fp16", "dynamic"):
        flatbuffer = convert_tflite(tf_model, model_path, precision)
        backends[precision] = TfliteBackend.open(flatbuffer, threads=threads)
        variants[precision] = {"size_bytes": len(flatbuffer)}
    backends["int8"] = TfliteBackend.open(work / "int8" / "model.tflite", threads=threads)
    variants["int8"] = {"size_bytes": (work / "int8" / "model.tflite").stat().st_size, "io_type": "int8"}
    for name, backend in backends.items():
        logits = np.concatenate(
            [backend.run({"image": ev["image"][i : i + 64]})[0] for i in range(0, len(ev["labels"]), 64)]
        )
        variants[name]["accuracy"] = float((logits.argmax(1) == ev["labels"]).mean())
        variants[name]["runtime"] = backend.info.to_dict()
    # Latency: batch 1, round-robin over the variants in one process (LiteRT, `threads` threads), p50 of each.
    one = {"image": ev["image"][:1]}
    times: dict[str, list[float]] = {name: [] for name in backends}
    for backend in backends.values():
        for _ in range(20):
            backend.run(one)
    for _ in range(500):
        for name, backend in backends.items():
            started = time.perf_counter()
            backend.run(one)
            times[name].append((time.perf_counter() - started) * 1e3)
    for name in backends:
        variants[name]["latency_p50_ms_batch1"] = float(np.median(times[name]))
    float_size = variants["fp32"]["size_bytes"]
    for entry in variants.values():
        entry["size_ratio_vs_float_tflite"] = float_size / entry["size_bytes"]
    summary = report["summary"]
    return {
        "pipeline_summary": summary,
        "pipeline_stage": stage,
        "accuracy_keras_onnx_fp32": summary["accuracy_baseline"],
        "accuracy_int8_litert": variants["int8"]["accuracy"],
        "accuracy_drop_pp_int8_vs_fp32": summary["accuracy_drop_pp"],
        "accuracy_drop_pp_int8_vs_float_tflite": 100 * (variants["fp32"]["accuracy"] - variants["int8"]["accuracy"]),
        "size_ratio_int8_vs_float_tflite": variants["int8"]["size_ratio_vs_float_tflite"],
        "targets": {"accuracy_drop_pp_max": 0.5, "size_ratio_min": 3.5},
        "variants": variants,
        "latency_method": "batch 1, 500 round-robin rounds over the variants in one process after 20 warm-up runs",
    }


def bench_pruning(model_path: Path, data: dict, work: Path, epochs: int) -> dict:
    config = {"method": "magnitude", "sparsity": 0.5, "train": {"epochs": epochs, "optimizer": "adam", "lr": 1e-3}}
    report = _run(
        {
            "model": str(model_path),
            "data": {"train": str(data["train"]), "eval_data": str(data["eval"])},
            "passes": [{"name": "prune", "config": config}],
            "evaluate": {"skip_latency": True},
            "output": {"dir": str(work / "pruned")},
            "cache": False,
        }
    )
    metrics = next(s for s in report["stages"] if s["name"] == "prune")["metrics"]
    keep = ("sparsity_measured", "skipped_layers", "gzip_ratio", "schedule", "accuracy_before_prune")
    return {
        "summary": report["summary"],
        "accuracy_drop_pp": report["summary"]["accuracy_drop_pp"],
        "target_accuracy_drop_pp_max": 1.0,
        "finetune_epochs": epochs,
        **{k: metrics[k] for k in keep},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-results/tf.json"))
    parser.add_argument("--width", type=int, default=32, help="Channels of the first conv (the second has 2x).")
    parser.add_argument("--epochs", type=int, default=12, help="Training epochs of the Keras model.")
    parser.add_argument("--finetune", type=int, default=4, help="Fine-tuning epochs while pruning.")
    parser.add_argument("--threads", type=int, default=1, help="LiteRT / onnxruntime threads for latency.")
    args = parser.parse_args()

    import tf_models

    from modelforge.machine import machine_record

    record: dict = {
        "benchmark": "tf",
        "machine": machine_record(
            ("tensorflow", "tf_keras", "tf2onnx", "ai-edge-litert", "tensorflow-model-optimization")
        ),
    }
    with tempfile.TemporaryDirectory(prefix="bench-tf-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        model = tf_models.train_tf_keras(epochs=args.epochs, width=args.width)
        model_path = work / "digits.h5"
        model.save(model_path)
        data = tf_models.write_data(work)
        (_, _), _, (x_test, y_test) = tf_models.digits_nhwc()
        record["model"] = {
            "architecture": f"Conv{args.width}-Pool-Conv{2 * args.width}-Dense64-Dense10 (tf_keras), logits",
            "params": model.count_params(),
            "train_seconds": time.perf_counter() - started,
            "accuracy_held_out_keras": tf_models.accuracy(model, x_test, y_test),
        }
        (work / "convert").mkdir()
        record["conversion"] = bench_conversion(model_path, work / "convert", x_test)
        record["tflite"] = bench_tflite(model_path, data, work, args.threads)
        record["pruning"] = bench_pruning(model_path, data, work, args.finetune)
    print(json.dumps({k: v for k, v in record.items() if k != "machine"}, indent=2, default=str)[:6000])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
