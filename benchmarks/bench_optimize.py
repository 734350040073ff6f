"""Benchmark of `modelforge optimize`'s targets (issue 22); prints a Markdown table, writes JSON, never asserts.

A residual CNN with projection shortcuts (ResNet-style: 1x1 conv + BatchNorm on every shortcut that changes
shape) is trained here on scikit-learn's digits, upsampled (16x16 by default, `--input-size`) and distorted
(benchmarks/distill_task.py: train / val / test from disjoint source digits; modelforge sees train and val,
every accuracy below is on test).

1. The FP32 model's p99 at batch 1 and 2 threads (onnxruntime); the SLO is 0.35x of it.
2. The hand-run grid, with the existing commands in subprocesses: `modelforge prune` at {0.3, 0.5, 0.7}
   (structured, fine-tuned for --finetune epochs), then each pruned model as fp32 and int8 on every installed
   runtime (`modelforge quantize --target cpu|openvino [--precision fp32]`); its wall clock.
3. `modelforge optimize MODEL --train-data --eval-data --latency-p99-ms SLO --batch 1 --threads 2
   --max-accuracy-drop 1` (fine-tuning epochs capped at the grid's when the command takes --epochs); its wall.
4. The winner and every grid model measured interleaved in one process (modelforge.measure.latency), with the
   FP32 model and its plain INT8 as anchors, and their test accuracy; then each one's p99 again, interleaved
   with the FP32 model alone, as the anchor that set the SLO was (15 models in one loop evict each other's
   caches and lengthen every tail). The verdicts: the winner meets the SLO (paired p99), loses <= 1 pt, is not
   less accurate than the best grid entry that meets the SLO (a paired McNemar test on the test samples: 0.3 pt
   is 4 of 1,491 samples, inside the noise), the search took <= 0.5x the grid's wall.
5. A loose SLO that INT8 alone meets and FP32 does not (the geometric mean of the plain INT8 model's p99 and the
   FP32 model's, so each is a wide margin from it): optimize must ship an unpruned, untrained model: INT8, or
   bf16 where the CPU has it and it meets the SLO with less accuracy change.

Every command runs with a fresh MODELFORGE_CACHE_DIR (nothing reused between the grid and the search).

    python benchmarks/bench_optimize.py --out bench-results/optimize.json
    python benchmarks/bench_optimize.py --quick      # a few epochs, short measurements: a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

RATIOS = (0.3, 0.5, 0.7)
SLO_SHARE = 0.35
LOOSE_MIN_GAP = 1.25  # the loose SLO is only tried when FP32's p99 is at least this many times INT8's
MAX_DROP_PP = 1.0


def residual_cnn(width: int):
    """stem -> 3 stages of two basic blocks (32, 64, 128 channels at width 32); a stage that changes the shape
    starts with a projection shortcut."""
    import torch
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = nn.Identity()
            if stride != 1 or cin != cout:  # the projection shortcut
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))

    class ResidualCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
            blocks, cin = [], width
            for cout, stride in ((width, 1), (2 * width, 2), (4 * width, 2)):
                blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
                cin = cout
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(cin, 10)

        def forward(self, pixels):
            x = self.blocks(self.stem(pixels))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    torch.manual_seed(0)
    return ResidualCNN()


def prepare(work: Path, width: int, epochs: int, size: int) -> dict:
    """Data files, the trained model as .pt2 and as FP32 ONNX, its test accuracy."""
    import distill_task as task
    import torch

    from modelforge.convert.to_onnx import convert_to_onnx
    from modelforge.model.artifact import ModelArtifact
    from modelforge.model.torch.export import save_program
    from modelforge.training import TrainConfig, train

    if (work / "task.json").is_file():  # --keep on a folder of an earlier run: its data and trained model
        return json.loads((work / "task.json").read_text())
    (xt, yt), (xv, yv), (xs, ys) = task.distorted_digits(size=size)
    for name, (x, y) in {"train": (xt, yt), "val": (xv, yv), "test": (xs, ys)}.items():
        np.savez(work / f"{name}.npz", pixels=x, labels=y)
    model = residual_cnn(width)
    started = time.perf_counter()
    train(model, ((torch.from_numpy(xt),), torch.from_numpy(yt)), ((torch.from_numpy(xv),), torch.from_numpy(yv)),
          TrainConfig(epochs=epochs, lr=3e-3), checkpoint_dir=work / "training", seed=0)  # fmt: skip
    save_program(model.eval(), (torch.from_numpy(xt[:4]),), work / "model.pt2")
    (work / "fp32").mkdir()
    dense, _ = convert_to_onnx(ModelArtifact(work / "model.pt2", "torch-export"), work / "fp32", 17)
    record = {
        "model": f"residual CNN with projection shortcuts, width {width}, 1x{size}x{size} input, 10 classes",
        "params": sum(p.numel() for p in model.parameters()),
        "train_samples": len(yt),
        "val_samples": len(yv),
        "test_samples": len(ys),
        "epochs": epochs,
        "training_seconds": round(time.perf_counter() - started, 1),
        "onnx": str(dense.path),
    }
    (work / "task.json").write_text(json.dumps(record))
    return record


def command_env(cache: Path | None = None) -> dict[str, str]:
    """The environment of every command: the modelforge this process imported first on the path (the
    commands run in the work folder, so `python -m` cannot pick up another checkout from the current folder)."""
    import modelforge as package

    source = str(Path(package.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")])))
    if cache is not None:
        env["MODELFORGE_CACHE_DIR"] = str(cache)
    return env


def modelforge(args: list[str], cache: Path, log: Path) -> tuple[int, float]:
    """`python -m modelforge ARGS` with its own cache folder; (exit code, wall seconds). Output goes to `log`."""
    env = command_env(cache)
    started = time.perf_counter()
    with log.open("a") as out:
        out.write(f"$ modelforge {' '.join(args)}\n")
        out.flush()
        rc = subprocess.run(
            [sys.executable, "-m", "modelforge", *args], env=env, cwd=log.parent, stdout=out, stderr=out
        ).returncode
    return rc, time.perf_counter() - started


def shipped(folder: Path) -> tuple[Path, str, str] | None:
    """(served file, runtime, precision) of an output folder, as its report.json says it was measured."""
    report_path = folder / "report.json"
    if not report_path.is_file():
        return None
    info = ((json.loads(report_path.read_text()).get("evaluation") or {}).get("runtimes") or {}).get("result") or {}
    runtime = info.get("runtime") or ("openvino" if (folder / "model.xml").is_file() else "onnxruntime")
    path = folder / ("model.xml" if runtime == "openvino" else "model.onnx")
    return (path, runtime, info.get("precision") or "fp32") if path.is_file() else None


def installed_runtimes() -> list[str]:
    from modelforge.runtimes.serving import runtime_installed

    return [r for r in ("onnxruntime", "openvino") if runtime_installed(r)]


def run_grid(work: Path, finetune: int, threads: int, runtimes: list[str], log: Path) -> dict:
    """prune x {fp32, int8} x runtime, each command in its own process, as a user would run them by hand."""
    data = ["--eval-data", str(work / "val.npz")]
    common = ["--threads", str(threads), "--no-cache", "--quiet", "--force"]
    cells: dict[str, dict] = {}
    started = time.perf_counter()
    for ratio in RATIOS:
        pruned = work / f"grid-p{ratio:.2f}"
        rc, took = modelforge(
            ["prune", str(work / "model.pt2"), "--train-data", str(work / "train.npz"), *data, "--sparsity",
             str(ratio), "--epochs", str(finetune), "--no-default-gates", "-o", str(pruned), *common],
            work / "cache-grid", log,
        )  # fmt: skip
        for runtime in runtimes:
            for precision in ("fp32", "int8"):
                name = f"p{ratio:.2f}-{precision}-{runtime}"
                if runtime == "onnxruntime" and precision == "fp32":
                    cells[name] = {"rc": rc, "seconds": took, "folder": str(pruned)}
                    continue
                out = work / f"grid-{name}"
                target = ["--target", "cpu"] if runtime == "onnxruntime" else ["--target", "openvino"]
                if precision == "fp32":
                    target += ["--precision", "fp32"]
                qrc, qtook = modelforge(
                    ["quantize", str(pruned / "model.onnx"), "--calibration", str(work / "train.npz"), *data,
                     *target, "--max-accuracy-drop", str(MAX_DROP_PP), "-o", str(out), *common],
                    work / "cache-grid", log,
                )  # fmt: skip
                cells[name] = {"rc": qrc, "seconds": qtook, "folder": str(out), "prune_seconds": took}
    return {"wall_seconds": time.perf_counter() - started, "cells": cells}


def optimize_flags() -> str:
    return subprocess.run(
        [sys.executable, "-m", "modelforge", "optimize", "--help"],
        capture_output=True,
        text=True,
        env=command_env(),
        cwd=tempfile.gettempdir(),
    ).stdout


def run_optimize(work: Path, name: str, slo: float, finetune: int, threads: int, log: Path) -> dict:
    out = work / name
    args = ["optimize", str(work / "model.pt2"), "--train-data", str(work / "train.npz"), "--eval-data",
            str(work / "val.npz"), "--latency-p99-ms", f"{slo:.6g}", "--batch", "1", "--threads", str(threads),
            "--max-accuracy-drop", str(MAX_DROP_PP), "-o", str(out), "--force", "--quiet"]  # fmt: skip
    if "--epochs" in optimize_flags():  # the same most fine-tuning epochs per trial as each grid entry had
        args += ["--epochs", str(finetune)]
    shutil.rmtree(work / f"cache-{name}", ignore_errors=True)  # every trial measured, none from an earlier run
    shutil.rmtree(out, ignore_errors=True)  # a run that ships nothing (exit 1) must not leave an earlier run's search
    rc, took = modelforge(args, work / f"cache-{name}", log)
    record: dict = {"rc": rc, "seconds": took, "slo_ms": slo, "folder": str(out)}
    search_file = next((p for p in (out / "search.json", out / "report.json") if p.is_file()), None)
    document = json.loads(search_file.read_text()) if search_file is not None else {}
    search = document.get("search") or (document if "trials" in document else None)
    if search is not None:
        winner = next((t for t in search["trials"] if t.get("id") == search.get("winner")), None)
        record |= {"winner": winner, "stage_seconds": search.get("stage_seconds"), "trials": len(search["trials"])}
    return record


def open_model(path: Path, runtime: str, precision: str, threads: int):
    from modelforge.runtimes.base import open_backend

    return open_backend(path, runtime=runtime, precision=precision, threads=threads)


def correct_on(backend, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per test sample: did the model get it right (the paired accuracy comparison needs the samples)."""
    name = backend.input_names[0]
    predictions = np.concatenate([backend.run({name: x[i : i + 1]})[0].argmax(1) for i in range(len(x))])
    return predictions == y


def model_bytes(path: Path) -> int:
    """The served files: model.onnx (+ its external data), or OpenVINO's model.xml + model.bin."""
    siblings = [path.with_suffix(".bin")] if path.suffix == ".xml" else [path.with_name(path.name + ".data")]
    return sum(p.stat().st_size for p in (path, *siblings) if p.is_file())


def measure(
    models: dict[str, tuple[Path, str, str]], work: Path, threads: int, seconds: float, accuracy: bool = True
) -> dict:
    """Every model in one process, timed interleaved at batch 1; test accuracy of each (and which samples it got
    right, packed as hex bits)."""
    from modelforge.measure.latency import BLOCK, DROPPED_PER_BLOCK, interleaved_runs
    from modelforge.measure.paired import block_medians, ratio_interval
    from modelforge.measure.profile import P99_MIN_RUNS

    test = np.load(work / "test.npz")
    x, y = test["pixels"], test["labels"]
    backends = {
        name: open_model(path, runtime, precision, threads) for name, (path, runtime, precision) in models.items()
    }
    feed = x[:1]
    runs = [lambda b=b: b.run({b.input_names[0]: feed}) for b in backends.values()]
    timings = interleaved_runs(runs, warmup=20, min_runs=P99_MIN_RUNS, max_seconds=seconds, min_seconds=seconds / 3)
    out = {}
    # Each model's blocks ran beside the FP32 model's in the same rounds: paired block medians give its
    # speed-up over FP32 with a 95% interval (modelforge.measure.paired).
    kept = BLOCK - DROPPED_PER_BLOCK
    fp32_blocks = block_medians(timings.seconds[0], kept)
    for (name, backend), stats, times in zip(backends.items(), timings.stats(1), timings.seconds, strict=True):
        out[name] = {
            "runtime": backend.info.runtime,
            "precision": models[name][2],
            "p50_ms": stats.p50_ms,
            "p99_ms": stats.p99_ms,
            "p99_upper_ms": stats.p99_upper_ms,  # its 95% upper bound: what an SLO is judged on, as modelforge does
            "runs": stats.runs,
            "size_bytes": model_bytes(models[name][0]),
            "p50_speedup_vs_fp32": ratio_interval(fp32_blocks, block_medians(times, kept)).record(),
        }
        if accuracy:
            correct = correct_on(backend, x, y)
            out[name] |= {"test_accuracy": float(correct.mean()), "test_correct": np.packbits(correct).tobytes().hex()}
    out["_stopped"] = timings.stopped
    return out


def paired_p99(models: dict[str, tuple[Path, str, str]], work: Path, threads: int, seconds: float) -> dict:
    """Each model's p99 timed interleaved with the FP32 model alone, as the anchor that set the SLO was: with 15
    models in one loop every switch evicts caches, which lengthens the tail of all of them (a serving process runs
    one model)."""
    fp32 = models["fp32"]
    out = {}
    for name, model in models.items():
        if name != "fp32":
            pair = measure({"fp32": fp32, name: model}, work, threads, seconds, accuracy=False)
            out[name] = {"p99_ms": pair[name]["p99_ms"], "p99_upper_ms": pair[name]["p99_upper_ms"],
                         "p50_ms": pair[name]["p50_ms"], "fp32_p99_ms": pair["fp32"]["p99_ms"],
                         "runs": pair[name]["runs"]}  # fmt: skip
    return out


def worse_beyond_noise(winner: dict, other: dict) -> dict:
    """Paired comparison on the same test samples (McNemar, normal approximation): `other_only` samples only the
    other model got right, `winner_only` the reverse; the winner is worse beyond noise when other_only exceeds
    winner_only by more than 1.96 standard deviations (sqrt of the discordant count)."""
    a = np.unpackbits(np.frombuffer(bytes.fromhex(winner["test_correct"]), np.uint8)).astype(bool)
    b = np.unpackbits(np.frombuffer(bytes.fromhex(other["test_correct"]), np.uint8)).astype(bool)
    other_only, winner_only = int((b & ~a).sum()), int((a & ~b).sum())
    worse = other_only - winner_only > 1.96 * (other_only + winner_only) ** 0.5
    return {"other_only": other_only, "winner_only": winner_only, "worse_beyond_noise": bool(worse)}


def anchor_p99(work: Path, threads: int, seconds: float, int8: Path | None) -> dict:
    """The FP32 model's p99 (and the plain INT8 model's, interleaved with it)."""
    models = {"fp32": (work / "fp32" / "model.onnx", "onnxruntime", "fp32")}
    if int8 is not None:
        models["int8"] = (int8, "onnxruntime", "int8")
    return measure(models, work, threads, seconds)


def verdicts(record: dict) -> dict:
    measured = record["measured"]
    paired = record.get("paired_p99") or {}
    fp32 = measured["fp32"]
    slo = record["slo_ms"]

    def p99(name: str) -> float:  # judged as the SLO was set: paired with FP32 alone (paired_p99), on the bound
        row = paired.get(name) or measured[name]
        return row.get("p99_upper_ms") or row["p99_ms"]

    grid = {k: v for k, v in measured.items() if k.startswith("grid:")}
    meeting = {k: v for k, v in grid.items() if p99(k) <= slo}
    best = max(meeting.values(), key=lambda v: v["test_accuracy"], default=None)
    out = {
        "fp32_p99_ms": record["anchors"]["fp32"]["p99_ms"],  # what the SLO was set from
        "fp32_p99_ms_final": fp32["p99_ms"],  # the same model in the final interleaved measurement
        "slo_ms": slo,
        "grid_meeting_slo": sorted(meeting),
        "best_grid_meeting_slo": None if best is None else next(k for k, v in meeting.items() if v is best),
        "grid_wall_s": record["grid"]["wall_seconds"],
    }
    search = record.get("optimize") or {}
    ran = search.get("rc") in (0, 1)  # 2: a usage error (or no such command), no search ran
    if ran and search.get("winner") is None:  # the search ran and shipped nothing (exit 1)
        out |= {"winner": None, "winner_meets_slo": False}
    if "search" in measured:
        winner = measured["search"]
        drop = 100 * (fp32["test_accuracy"] - winner["test_accuracy"])
        out |= {
            "winner": (search.get("winner") or {}).get("id"),
            "winner_p99_ms_paired": p99("search"),
            "winner_meets_slo": p99("search") <= slo,
            "winner_accuracy_drop_pp": drop,
            "winner_drop_within_1pt": drop <= MAX_DROP_PP,
        }
        if grid and best is not None:  # else None: no grid entry meets the SLO
            comparison = worse_beyond_noise(winner, best)
            out["winner_vs_best_grid"] = comparison
            out["winner_at_least_best_grid"] = not comparison["worse_beyond_noise"]
        elif grid:
            out["winner_at_least_best_grid"] = None
    if ran and record["grid"]["cells"]:
        out["search_wall_s"] = search["seconds"]
        out["search_wall_share_of_grid"] = search["seconds"] / record["grid"]["wall_seconds"]
        out["search_within_half_grid"] = out["search_wall_share_of_grid"] <= 0.5
    loose = record.get("loose") or {}
    if loose.get("rc") in (0, 1):
        w = loose.get("winner") or {}
        out["loose_winner"] = w.get("id")
        # Unpruned, untrained, reduced precision: INT8, or bf16 where the CPU has it and it lost less accuracy
        # (optimize breaks accuracy ties towards the smaller change).
        out["loose_ships_unpruned_untrained"] = (
            bool(w)
            and not w.get("prune_ratio")
            and w.get("fine_tune") in (None, "none")
            and w.get("precision") != "fp32"
        )
    return out


def speedup_text(paired: dict) -> str:
    low, high = paired["interval"]
    if paired["speedup"] is None:
        return "n/a"
    return f"{paired['speedup']:.2f}x" + (f" [{low:.2f}, {high:.2f}]" if low is not None else "")


def markdown(record: dict) -> str:
    v = record["verdicts"]
    measured = record["measured"]
    lines = [
        f"### bench_optimize: {record['task']['model']}",
        "",
        f"FP32 p99 {v['fp32_p99_ms']:.3f} ms at batch 1, {record['threads']} threads; SLO {record['slo_share']}x = "
        f"{v['slo_ms']:.3f} ms. Grid wall {v['grid_wall_s']:.0f} s"
        + (
            f", search wall {v['search_wall_s']:.0f} s ({v['search_wall_share_of_grid']:.2f}x)."
            if "search_wall_s" in v
            else "."
        ),
        "",
        "p99 (all): every model in one interleaved loop; p99 (paired): interleaved with FP32 alone, as the SLO's "
        "anchor was measured; `meets SLO` reads its 95% upper bound (bound), as modelforge's SLO verdicts do.",
        "",
        "| model | runtime | precision | p50 ms | p99 ms (all) | p99 ms (paired) | bound | meets SLO "
        "| p50 speed-up (95%) | test accuracy | size |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    paired = record.get("paired_p99") or {}
    for name, row in measured.items():
        if name.startswith("_"):
            continue
        shown = paired.get(name) or row
        judged = shown.get("p99_upper_ms") or shown["p99_ms"]
        lines.append(
            f"| {name} | {row['runtime']} | {row['precision']} | {row['p50_ms']:.3f} | {row['p99_ms']:.3f} | "
            f"{shown['p99_ms']:.3f} | {judged:.3f} | {'yes' if judged <= v['slo_ms'] else 'no'} | "
            f"{speedup_text(row['p50_speedup_vs_fp32'])} | "
            f"{100 * row['test_accuracy']:.2f}% | "
            f"{row['size_bytes'] / 1024:.0f} KiB |"
        )
    lines += ["", "| target | result |", "|---|---|"]
    checks = [
        ("winner meets the SLO", "winner_meets_slo"),
        ("winner loses <= 1 pt (test)", "winner_drop_within_1pt"),
        ("winner not less accurate than the best grid entry meeting the SLO (paired)", "winner_at_least_best_grid"),
        ("search wall <= 0.5x grid wall", "search_within_half_grid"),
        ("loose SLO ships an unpruned, untrained INT8/bf16 model", "loose_ships_unpruned_untrained"),
    ]
    for label, key in checks:
        shown = "not run" if key not in v else "n/a (no grid entry meets the SLO)" if v[key] is None else v[key]
        lines.append(f"| {label} | {shown} |")
    cpu = record["machine"]["cpu"]
    lines += ["", f"CPU {cpu['model']}, {cpu['cores']} cores, {', '.join(cpu['instruction_sets'])}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results/optimize.json"))
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--input-size", type=int, default=16, help="Side of the square digit images.")
    parser.add_argument("--epochs", type=int, default=12, help="Training epochs of the FP32 model.")
    parser.add_argument("--finetune", type=int, default=4, help="Fine-tuning epochs of each grid entry.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--slo-share", type=float, default=SLO_SHARE, help="The SLO as a share of the FP32 p99.")
    parser.add_argument("--seconds", type=float, default=60.0, help="Time budget of the interleaved measurement.")
    parser.add_argument("--skip", choices=["grid", "optimize", "loose"], action="append", default=[])
    parser.add_argument(
        "--reuse-grid",
        action="store_true",
        help="With --keep: reuse the grid of an earlier run in that folder (its models and wall clock) instead of "
        "running it again; everything else is run and measured again.",
    )
    parser.add_argument("--quick", action="store_true", help="A smoke run: few epochs, short measurements.")
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="Work in this folder and keep it (logs, models); a folder of an "
        "earlier run keeps its data and trained model (the commands run again).",
    )
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.finetune, args.seconds, args.width = 2, 1, 4.0, 16

    from modelforge.machine import machine_record

    record: dict = {
        "benchmark": "optimize",
        "machine": machine_record(("torch", "torch_pruning", "openvino", "ray")),
        "threads": args.threads,
        "batch_size": 1,
        "quick": args.quick,
        "method": "latency: one process, every model timed interleaved in blocks at batch 1 (first runs of each "
        "block dropped); accuracy: the test split, which no command saw",
    }
    runtimes = installed_runtimes()
    record["runtimes"] = runtimes
    with tempfile.TemporaryDirectory(prefix="bench-optimize-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        log = work / "commands.log"
        record["task"] = prepare(work, args.width, args.epochs, args.input_size)
        print("task", json.dumps(record["task"]), flush=True)
        # Plain INT8 of the FP32 model: the anchor of the loose SLO.
        rc, _ = modelforge(
            ["quantize", str(work / "fp32" / "model.onnx"), "--calibration", str(work / "train.npz"), "--eval-data",
             str(work / "val.npz"), "--threads", str(args.threads), "--no-cache", "--quiet", "--force", "-o",
             str(work / "int8")],
            work / "cache-int8", log,
        )  # fmt: skip
        int8 = shipped(work / "int8")
        anchors = anchor_p99(work, args.threads, args.seconds / 2, int8[0] if int8 else None)
        record["anchors"] = anchors
        record["slo_share"] = args.slo_share
        record["slo_ms"] = args.slo_share * anchors["fp32"]["p99_ms"]
        print("anchors", json.dumps(anchors), flush=True)
        models = {"fp32": (work / "fp32" / "model.onnx", "onnxruntime", "fp32")}
        if int8:
            models["int8"] = int8
        if "grid" not in args.skip:
            kept_grid = work / "grid.json"
            if args.reuse_grid and kept_grid.is_file():  # an earlier run's grid: its folders, its wall clock
                record["grid"] = json.loads(kept_grid.read_text()) | {"reused": str(kept_grid)}
            else:
                record["grid"] = run_grid(work, args.finetune, args.threads, runtimes, log)
                kept_grid.write_text(json.dumps(record["grid"]))
            for name, cell in record["grid"]["cells"].items():
                served = shipped(Path(cell["folder"]))
                if served is not None:
                    models[f"grid:{name}"] = served
            print("grid", json.dumps(record["grid"]), flush=True)
        else:
            record["grid"] = {"wall_seconds": float("nan"), "cells": {}}
        if "optimize" not in args.skip:
            record["optimize"] = run_optimize(work, "search", record["slo_ms"], args.finetune, args.threads, log)
            served = shipped(work / "search")
            if served is not None and record["optimize"]["rc"] == 0:
                models["search"] = served
            print("optimize", json.dumps(record["optimize"], default=str), flush=True)
        if "loose" not in args.skip and int8 and "int8" in anchors:
            int8_p99, fp32_p99 = anchors["int8"]["p99_ms"], anchors["fp32"]["p99_ms"]
            if fp32_p99 >= LOOSE_MIN_GAP * int8_p99:
                loose = (int8_p99 * fp32_p99) ** 0.5
                record["loose"] = run_optimize(work, "loose", loose, args.finetune, args.threads, log)
            else:
                record["loose"] = {
                    "skipped": f"plain INT8's p99 {int8_p99:.3f} ms is not {LOOSE_MIN_GAP}x below FP32's "
                    f"{fp32_p99:.3f} ms"
                }
            print("loose", json.dumps(record["loose"], default=str), flush=True)
        record["measured"] = measure(models, work, args.threads, args.seconds)
        record["paired_p99"] = paired_p99(models, work, args.threads, args.seconds / 6)
        record["verdicts"] = verdicts(record)
        if args.keep is None:  # the commands' output, kept in the JSON when the folder goes
            record["commands_log_tail"] = log.read_text()[-4000:]
    table = markdown(record)
    print("\n" + table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
