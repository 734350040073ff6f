"""Issues 8 and 19's classes of real-world graphs, quantized with modelforge's defaults; prints and writes JSON.

For each class (builders in tests/realworld_models.py: an opset-12 CNN with Constant weights, a Paddle-style
text detector (issue 19), a jax2tf-style byte classifier, a MobileNetV3-small-style net, a conv + BiLSTM CTC
recogniser given as .pt2, issue 19's byte classifier with Einsum dense layers and E[x^2] - E[x]^2 LayerNorms,
and the real model of that class, Magika from its wheel, on features of real files):

1. `modelforge quantize MODEL -c calib -e eval` with defaults, as a user runs it: exit code, the report's
   speed-up, accuracy (sequence accuracy for the CRNN), what the speed-aware search kept in float.
2. An independent check of the report's speed-up: the baseline and the shipped model each in their own
   process, alternating blocks (benchmarks/per_process.py), spinning off.
3. The same two measurements again with a CPU-heavy process running beside them (the report under
   contention must agree with the per-process figure within 10%).
4. The anchor a user could build by hand, measured per process against the same baseline: the plain
   onnxruntime recipe (opset upgrade + quant_pre_process + quantize_static QDQ U8/S8 per-channel) for the
   CNNs, static convolutions + dynamic LSTM for the CRNN; for the byte classifiers also quant_pre_process +
   quantize_dynamic (per-channel, its default op types). Each anchor's top-1 agreement with the float model;
   for the detector (a one-channel probability map, where top-1 means nothing) the IoU of the maps binarised
   at 0.3, DBNet's threshold, against the float model's.
5. A Markdown table of all of it (`--markdown`), beside issue 8's per-process figures for its four classes.

    python benchmarks/bench_realworld.py --out bench-results/realworld.json [--markdown realworld.md]
        [--only crnn] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

import realworld_models as rw  # noqa: E402
from per_process import batch_from, per_process_speedup  # noqa: E402

BUILDERS = {
    "opset12_cnn": rw.opset12_constant_cnn,
    "paddle_detector": rw.paddle_style_detector,
    "jax_style": rw.jax_style_classifier,
    "mobilenetv3_small": rw.mobilenetv3_small_style,
    "crnn": rw.crnn_pt2,
    "einsum_classifier": rw.einsum_byte_classifier,
    "magika": rw.magika_byte_classifier,
}
DYNAMIC_ANCHOR = {"jax_style", "einsum_classifier", "magika"}  # plain quantize_dynamic quoted too
# Issue 8's closing figures, per process (idle, contended), for the classes it measured: the bar to stay at.
ISSUE_8_PER_PROCESS = {
    "opset12_cnn": (1.76, 1.75),
    "jax_style": (0.99, 1.05),  # float shipped
    "mobilenetv3_small": (1.04, 1.10),  # float shipped
    "crnn": (1.98, 1.68),
}
MAP_THRESHOLD = 0.3  # DBNet binarises its probability map at 0.3


def quantize(built: rw.Built, out: Path, threads: int) -> tuple[int, dict | None, float]:
    command = [
        "modelforge", "quantize", str(built.model), "-c", str(built.calibration), "-e", str(built.eval),
        "-o", str(out), "--force", "--quiet", "--threads", str(threads), "--no-cache",
    ]  # fmt: skip
    started = time.perf_counter()
    code = subprocess.run(command, capture_output=True, text=True).returncode
    seconds = time.perf_counter() - started
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else None
    return code, report, seconds


def baseline_onnx(built: rw.Built, folder: Path) -> Path:
    """The ONNX form the report compares with (a .pt2 is exported the way the pipeline does)."""
    if built.model.suffix == ".onnx":
        return built.model
    from modelforge.convert.to_onnx import convert_to_onnx
    from modelforge.data.examples import example_inputs
    from modelforge.model.loader import load_model
    from modelforge.recipe.schema import DEFAULT_OPSET, DataSource

    source = load_model(built.model)
    folder.mkdir(exist_ok=True)
    example = example_inputs(DataSource(path=built.calibration))
    artifact, _ = convert_to_onnx(source, folder, DEFAULT_OPSET, example)
    return artifact.path


def ort_anchor(built: rw.Built, baseline: Path, folder: Path, dynamic_lstm: bool) -> Path:
    """What a user builds by hand with onnxruntime: opset 13, pre-processing, QDQ U8/S8 per-channel (+ LSTM
    dynamic int8 for the CRNN, with the static part on everything but the LSTM)."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    folder.mkdir(exist_ok=True)
    model = onnx.load(str(baseline))
    if model.opset_import[0].version < 13:
        model = version_converter.convert_version(model, 13)
    upgraded, prepared = folder / "upgraded.onnx", folder / "prepared.onnx"
    onnx.save(model, str(upgraded))
    pre_process(upgraded, prepared)
    with np.load(built.calibration, allow_pickle=False) as npz:
        samples = {k: npz[k] for k in npz.files if k != "labels"}
    names = [i.name for i in onnx.load(str(prepared)).graph.input]
    if len(names) == 1 and names[0] not in samples:
        samples = {names[0]: next(iter(samples.values()))}
    count = len(next(iter(samples.values())))
    fixed = onnx.load(str(prepared)).graph.input[0].type.tensor_type.shape.dim[0].dim_value or 8

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(range(0, count - count % fixed, fixed))

        def get_next(self):
            start = next(self._it, None)
            return None if start is None else {k: v[start : start + fixed] for k, v in samples.items()}

    static = folder / "anchor-static.onnx"
    ops = None
    if dynamic_lstm:
        from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

        ops = sorted((set(QDQRegistry) | set(QLinearOpsRegistry)) - {"LSTM"})
    quantize_static(
        str(prepared), str(static), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=ops,
    )  # fmt: skip
    if not dynamic_lstm:
        return static
    anchor = folder / "anchor.onnx"
    quantize_dynamic(str(static), str(anchor), op_types_to_quantize=["LSTM"], per_channel=True)
    return anchor


PRE_PROCESS_NOTES: list[str] = []


def pre_process(source: Path, prepared: Path) -> None:
    """quant_pre_process as a user runs it; when its symbolic shape inference raises (it does on Einsum graphs
    from tf2onnx), the retry a user would make: skip_symbolic_shape=True (noted in the results)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(source), str(prepared))
    except Exception as exc:
        PRE_PROCESS_NOTES.append(f"{source.name}: quant_pre_process raised {type(exc).__name__}; skip_symbolic_shape")
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)


def ort_dynamic_anchor(baseline: Path, folder: Path) -> Path:
    """Plain onnxruntime dynamic INT8: quant_pre_process + quantize_dynamic, per-channel, default op types."""
    from onnxruntime.quantization import quantize_dynamic

    folder.mkdir(exist_ok=True)
    prepared, anchor = folder / "prepared-dynamic.onnx", folder / "anchor-dynamic.onnx"
    pre_process(baseline, prepared)
    quantize_dynamic(str(prepared), str(anchor), per_channel=True)
    return anchor


def agreement_of(model: Path, baseline: Path, built: rw.Built) -> float | None:
    """Top-1 agreement of `model` with the float `baseline` on the eval data (classifiers only)."""
    if built.targets is not None:
        return None
    ours, theirs = outputs_of(model, built), outputs_of(baseline, built)
    if is_probability_map(theirs):
        return None
    return float((ours.argmax(-1) == theirs.argmax(-1)).mean())


def is_probability_map(outputs: np.ndarray) -> bool:
    return outputs.ndim == 4 and outputs.shape[1] == 1


def map_iou_of(model: Path, baseline: Path, built: rw.Built) -> float | None:
    """Mean IoU of `model`'s binarised probability maps with the float `baseline`'s (detectors only)."""
    theirs = outputs_of(baseline, built)
    if not is_probability_map(theirs):
        return None
    ours = outputs_of(model, built) > MAP_THRESHOLD
    theirs = theirs > MAP_THRESHOLD
    inter = (ours & theirs).sum(axis=(1, 2, 3))
    union = (ours | theirs).sum(axis=(1, 2, 3))
    return float(np.mean(np.where(union == 0, 1.0, inter / np.maximum(union, 1))))


def outputs_of(model: Path, built: rw.Built) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    with np.load(built.eval, allow_pickle=False) as npz:
        feeds = {k: npz[k] for k in npz.files if k != "labels"}
    if len(feeds) == 1:
        feeds = {session.get_inputs()[0].name: next(iter(feeds.values()))}
    return np.concatenate([session.run(None, batch)[0] for batch in eval_batches(session, feeds)])


def eval_batches(session, feeds: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
    """Every eval sample in batches of 64; a fixed-batch model gets whole batches of its size only."""
    fixed = session.get_inputs()[0].shape[0]
    step = fixed if isinstance(fixed, int) else 64
    count = len(next(iter(feeds.values())))
    last = count - count % step if isinstance(fixed, int) else count
    for start in range(0, last, step):
        yield {k: v[start : start + step] for k, v in feeds.items()}


def accuracy_of(model: Path, built: rw.Built) -> float | None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    with np.load(built.eval, allow_pickle=False) as npz:
        feeds = {k: npz[k] for k in npz.files if k != "labels"}
        labels = npz["labels"] if "labels" in npz.files else None
    name = session.get_inputs()[0].name
    if len(feeds) == 1:
        feeds = {name: next(iter(feeds.values()))}
    outputs = np.concatenate([session.run(None, batch)[0] for batch in eval_batches(session, feeds)])
    if built.targets is not None:
        return rw.sequence_accuracy(outputs, rw.load_targets(built.targets)[: len(outputs)])
    if labels is None:
        return None
    return float((outputs.argmax(-1) == labels[: len(outputs)]).mean())


def hog() -> subprocess.Popen:
    """A second CPU-heavy process beside the measurement."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def bench_one(name: str, folder: Path, threads: int, seconds: float) -> dict:
    built = BUILDERS[name](folder / "model")
    baseline = baseline_onnx(built, folder / "baseline")
    feeds = batch_from(built.eval, 1)
    entry: dict = {"model": name, "threads": threads, "batch_size": 1}
    for condition in ("idle", "contended"):
        beside = hog() if condition == "contended" else None
        try:
            code, report, took = quantize(built, folder / f"out-{condition}", threads)
            record = {"exit_code": code, "seconds": round(took, 1)}
            if report is not None:
                summary = report["summary"]
                stage = report["stages"][-1]["metrics"]
                result = folder / f"out-{condition}" / "model.onnx"
                record |= {
                    "report_speedup": summary["speedup"],
                    "report_p50_ms": [summary["latency_p50_ms_baseline"], summary["latency_p50_ms_result"]],
                    "accuracy_baseline": accuracy_of(baseline, built),
                    "accuracy_result": accuracy_of(result, built),
                    "agreement": agreement_of(result, baseline, built),
                    "report_agreement": summary.get("top1_agreement"),
                    "map_iou": map_iou_of(result, baseline, built),
                    "norm_nodes_float": stage.get("norm_nodes_float"),
                    "candidates": stage.get("candidates"),
                    "output_cosine": summary.get("output_cosine"),
                    "size_ratio": summary.get("size_ratio"),
                    "family": stage.get("family"),
                    "scheme": stage.get("scheme", {}).get("description"),
                    "speed_search": stage.get("speed_search"),
                    "isolated_nodes": stage.get("isolated_nodes"),
                    "graph_fixes": {
                        k: stage[k]
                        for k in ("opset_upgraded", "row_biases_flattened", "einsum_to_matmul")
                        if k in stage
                    },
                }
                independent = per_process_speedup(baseline, result, feeds, threads, seconds)
                record["per_process"] = independent
                # No report speed-up when the float model shipped (nothing to check against).
                shipped_speedup = summary["speedup"]
                record["report_vs_per_process"] = shipped_speedup and shipped_speedup / independent["speedup"]
            entry[condition] = record
        finally:
            if beside is not None:
                beside.kill()
    if (folder / "out-idle" / "model.onnx").exists():
        try:
            anchor = ort_anchor(built, baseline, folder / "anchor", dynamic_lstm=name == "crnn")
            entry["anchor"] = {
                "what": "plain onnxruntime: opset 13 + quant_pre_process + quantize_static QDQ U8/S8 per-channel"
                + (" on all but LSTM, then quantize_dynamic LSTM" if name == "crnn" else ""),
                "accuracy": accuracy_of(anchor, built),
                "agreement": agreement_of(anchor, baseline, built),
                "map_iou": map_iou_of(anchor, baseline, built),
                "per_process_vs_baseline": per_process_speedup(baseline, anchor, feeds, threads, seconds),
                "modelforge_vs_anchor": per_process_speedup(
                    anchor, folder / "out-idle" / "model.onnx", feeds, threads, seconds
                ),
            }
        except Exception as exc:  # an anchor onnxruntime cannot build is a finding, not a crash
            entry["anchor"] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    if PRE_PROCESS_NOTES:
        entry["anchor_notes"] = list(PRE_PROCESS_NOTES)
        PRE_PROCESS_NOTES.clear()
    if name in DYNAMIC_ANCHOR and (folder / "out-idle" / "model.onnx").exists():
        try:
            anchor = ort_dynamic_anchor(baseline, folder / "anchor")
            entry["anchor_dynamic"] = {
                "what": "plain onnxruntime: quant_pre_process + quantize_dynamic per-channel (its default op types)",
                "accuracy": accuracy_of(anchor, built),
                "agreement": agreement_of(anchor, baseline, built),
                "per_process_vs_baseline": per_process_speedup(baseline, anchor, feeds, threads, seconds),
            }
        except Exception as exc:
            entry["anchor_dynamic"] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
        if PRE_PROCESS_NOTES:
            entry["anchor_dynamic"]["notes"] = list(PRE_PROCESS_NOTES)
            PRE_PROCESS_NOTES.clear()
    return entry


def _figure(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def shipped_of(record: dict) -> str:
    search = record.get("speed_search") or {}
    if search.get("shipped") == "float" or not record.get("report_speedup"):
        return "float: " + (search.get("reason") or "see the report")
    candidate = next((c["scheme"].split(":")[0] for c in record.get("candidates") or [] if c.get("shipped")), None)
    kept = ", ".join(search.get("float_groups") or []) if candidate in (None, "static QDQ") else ""
    return (candidate or "INT8") + (f" ({kept} kept float)" if kept else "")


def markdown_table(models: list[dict]) -> str:
    """One row per class and condition, then the anchors; issue 8's per-process figure beside its classes."""
    rows = [
        "| class | condition | exit | shipped | report speed-up | per process | issue 8 per process | agreement | "
        "map IoU | cosine | accuracy |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in models:
        name = entry["model"]
        for index, condition in enumerate(("idle", "contended")):
            record = entry.get(condition) or {}
            per_process = (record.get("per_process") or {}).get("speedup")
            before = ISSUE_8_PER_PROCESS.get(name)
            accuracy = (
                f"{_figure(record.get('accuracy_baseline'), 4)} → {_figure(record.get('accuracy_result'), 4)}"
                if record.get("accuracy_baseline") is not None
                else "-"
            )
            rows.append(
                f"| {name} | {condition} | {record.get('exit_code')} | {shipped_of(record)} | "
                f"{_figure(record.get('report_speedup'))} | {_figure(per_process)} | "
                f"{_figure(before[index]) if before else '-'} | {_figure(record.get('agreement'), 4)} | "
                f"{_figure(record.get('map_iou'), 4)} | {_figure(record.get('output_cosine'), 5)} | {accuracy} |"
            )
        for key in ("anchor", "anchor_dynamic"):
            anchor = entry.get(key)
            if anchor is None:
                continue
            if "error" in anchor:
                rows.append(f"| {name} | {key}: plain onnxruntime | | raises {anchor['error'][:70]} | | | | | | | |")
                continue
            speedup = (anchor.get("per_process_vs_baseline") or {}).get("speedup")
            rows.append(
                f"| {name} | {key}: plain onnxruntime | | | | {_figure(speedup)} | | "
                f"{_figure(anchor.get('agreement'), 4)} | {_figure(anchor.get('map_iou'), 4)} | | "
                f"{_figure(anchor.get('accuracy'), 4)} |"
            )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results/realworld.json"))
    parser.add_argument("--only", choices=sorted(BUILDERS), action="append")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0, help="per independent measurement")
    parser.add_argument("--markdown", type=Path, help="also write the results as a Markdown table here")
    args = parser.parse_args(argv)
    from modelforge.machine import machine_record

    results = {"machine": machine_record(("torch",)), "models": []}
    with tempfile.TemporaryDirectory(prefix="bench-realworld-") as tmp:
        for name in args.only or list(BUILDERS):
            entry = bench_one(name, Path(tmp) / name, args.threads, args.seconds)
            results["models"].append(entry)
            print(json.dumps(entry, indent=1, default=str), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")
    if args.markdown:
        args.markdown.write_text(markdown_table(results["models"]))
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
