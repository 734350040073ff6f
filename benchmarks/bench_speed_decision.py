"""Is the speed-aware ship decision the same idle and beside a busy neighbour? (issue 19, section 3)

A model whose true INT8 gain on CPU is ~1.5x idle (tests/realworld_models.py `paddle_style_detector`: opset
12, Constant weights, depthwise convolutions, HardSigmoid, Resize, Concat) is quantized with modelforge's
defaults `--runs` times in each condition, the conditions taking turns (idle, busy, idle, busy, ...) so a
change in the shared machine's load hits both alike:

- idle: nothing of ours beside it (the machine's load average is recorded: "idle" is only as idle as the
  machine was);
- busy: one CPU-bound neighbour process (`while True: pass`) for the whole quantize run.

Per run: exit code, what shipped (INT8 or float), the decision (clear or unclear), the speed-up and its
interval, the groups kept in float, wall time. Then, per process (benchmarks/per_process.py, each model in its
own process, alternating blocks): every distinct shipped model against the float model and against the plain
onnxruntime recipe (opset 13 + quant_pre_process + quantize_static QDQ U8/S8 per-channel, everything), and
that recipe against float. Asserts nothing (timings); prints and writes JSON.

    python benchmarks/bench_speed_decision.py --out bench-results/speed_decision.json [--runs 10] [--threads 2]
        [--code DIR]   # quantize with another checkout's modelforge (e.g. the previous rule), same table
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

import realworld_models as rw  # noqa: E402
from bench_realworld import hog, ort_anchor  # noqa: E402
from per_process import batch_from, per_process_speedup  # noqa: E402

CONDITIONS = ("idle", "busy")


def quantize_once(built: rw.Built, out: Path, threads: int, code: Path | None) -> dict:
    command = [
        sys.executable, "-m", "modelforge", "quantize", str(built.model), "-c", str(built.calibration),
        "-e", str(built.eval), "-o", str(out), "--force", "--quiet", "--threads", str(threads), "--no-cache",
    ]  # fmt: skip
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(code or ROOT), env.get("PYTHONPATH")) if p)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    # `python -m` puts the working folder first on sys.path: run where the chosen modelforge is.
    code_ = subprocess.run(command, capture_output=True, text=True, env=env, cwd=code or ROOT).returncode
    record: dict = {"exit_code": code_, "seconds": round(time.perf_counter() - started, 1)}
    record["load_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    report_path = out / "report.json"
    if not report_path.exists():
        return record
    report = json.loads(report_path.read_text())
    stage = report["stages"][-1]["metrics"]
    search = stage.get("speed_search") or {}
    model = out / "model.onnx"
    record |= {
        "shipped": "int8" if stage.get("quantized_nodes") else "float",
        "decision": search.get("decision", "clear"),  # the rule before intervals had no "unclear"
        "speedup_vs_float": search.get("speedup_vs_float"),
        "ship_interval": (search.get("ship_interval") or {}).get("interval"),
        "float_groups": search.get("float_groups"),
        "reason": search.get("reason"),
        "report_speedup": report["summary"].get("speedup"),
        "output_cosine": report["summary"].get("output_cosine"),
        "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest()[:16],
    }
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results/speed_decision.json"))
    parser.add_argument("--runs", type=int, default=10, help="quantize runs per condition")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=320, help="detector input side (pixels)")
    parser.add_argument("--seconds", type=float, default=6.0, help="per per-process measurement")
    parser.add_argument("--code", type=Path, help="a checkout whose modelforge quantizes (default: this one)")
    args = parser.parse_args(argv)
    from modelforge.machine import machine_record

    results: dict = {
        "machine": machine_record(()),
        "threads": args.threads,
        "code": str(args.code or ROOT),
        "model": f"paddle_style_detector {args.size}x{args.size}",
        "runs": {c: [] for c in CONDITIONS},
    }
    with tempfile.TemporaryDirectory(prefix="bench-speed-decision-") as tmp:
        folder = Path(tmp)
        built = rw.paddle_style_detector(folder / "model", size=args.size, samples=16)
        for index in range(args.runs):
            for condition in CONDITIONS:
                beside = hog() if condition == "busy" else None
                try:
                    out = folder / f"out-{condition}-{index}"
                    record = quantize_once(built, out, args.threads, args.code)
                finally:
                    if beside is not None:
                        beside.kill()
                        beside.wait()
                results["runs"][condition].append(record)
                print(condition, index, json.dumps({k: v for k, v in record.items() if k != "reason"}), flush=True)

        # Per process, on a machine without our neighbour: every distinct shipped model, the plain recipe.
        feeds = batch_from(built.eval, 1)
        anchor = ort_anchor(built, built.model, folder / "anchor", dynamic_lstm=False)
        per_process: dict = {
            "plain_onnxruntime_vs_float": per_process_speedup(built.model, anchor, feeds, args.threads, args.seconds)
        }
        shipped: dict[str, Path] = {}
        for condition in CONDITIONS:
            for index, record in enumerate(results["runs"][condition]):
                if record.get("shipped") == "int8":
                    shipped.setdefault(record["model_sha256"], folder / f"out-{condition}-{index}" / "model.onnx")
        for sha, model in shipped.items():
            per_process[sha] = {
                "vs_float": per_process_speedup(built.model, model, feeds, args.threads, args.seconds)["speedup"],
                "vs_plain_onnxruntime": per_process_speedup(anchor, model, feeds, args.threads, args.seconds)[
                    "speedup"
                ],
            }
        results["per_process"] = per_process
        results["summary"] = summarize(results)
    print(json.dumps(results["summary"], indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


def summarize(results: dict) -> dict:
    """One row per condition: INT8 shipped out of N, unclear decisions, speed-ups, load, vs the plain recipe."""
    per_process = results["per_process"]
    rows = {}
    for condition, runs in results["runs"].items():
        int8 = [r for r in runs if r.get("shipped") == "int8"]
        versus = [per_process[r["model_sha256"]]["vs_plain_onnxruntime"] for r in int8]
        rows[condition] = {
            "int8_shipped": f"{len(int8)}/{len(runs)}",
            "unclear": sum(r.get("decision") == "unclear" for r in runs),
            "speedup_vs_float_in_run": sorted(r.get("speedup_vs_float") for r in runs if r.get("speedup_vs_float")),
            "float_groups": sorted({", ".join(r.get("float_groups") or []) or "-" for r in runs}),
            "per_process_vs_plain_onnxruntime": [round(min(versus), 3), round(max(versus), 3)] if versus else None,
            "median_seconds": sorted(r["seconds"] for r in runs)[len(runs) // 2] if runs else None,
            "load_1min": [min(r["load_1min"][0] for r in runs), max(r["load_1min"][0] for r in runs)],
        }
    rows["plain_onnxruntime_vs_float_per_process"] = round(per_process["plain_onnxruntime_vs_float"]["speedup"], 3)
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
