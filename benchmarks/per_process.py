"""Independent latency check: each model in its own process, the two processes taking turns.

The report's speed-up is measured in one process (two sessions, interleaved, thread pools not spinning).
This module measures the same pair another way, to check it: one worker process per model, each holding
only its own session; the parent lets them run a block of inferences in turn (A×k, B×k, ...), so both see the
same machine conditions, and no session's threads can share a process with the other. Used by
benchmarks/bench_realworld.py; runnable alone:

    python benchmarks/per_process.py baseline.onnx result.onnx --data eval.npz --batch 1 --threads 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

import numpy as np

BLOCK = 8
DROPPED = 2


def _worker(model: str, feeds: dict[str, np.ndarray], threads: int, spinning: bool, conn) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    if len(names) == 1 and not names & feeds.keys():  # a single-input model reads its one array under any key
        feeds = {next(iter(names)): next(iter(feeds.values()))}
    feeds = {k: v for k, v in feeds.items() if k in names}
    for _ in range(5):
        session.run(None, feeds)
    conn.send("ready")
    while True:
        count = conn.recv()
        if count is None:
            break
        times = []
        for _ in range(count):
            start = time.perf_counter()
            session.run(None, feeds)
            times.append(time.perf_counter() - start)
        conn.send(times)


def per_process_speedup(
    baseline: Path,
    result: Path,
    feeds: dict[str, np.ndarray],
    threads: int,
    seconds: float = 10.0,
    spinning: bool = False,
) -> dict:
    """p50 of each model, each in its own process, alternating blocks; speed-up = baseline / result."""
    context = mp.get_context("spawn")
    workers = []
    for model in (baseline, result):
        parent, child = context.Pipe()
        process = context.Process(target=_worker, args=(str(model), feeds, threads, spinning, child), daemon=True)
        process.start()
        workers.append((process, parent))
    for _, conn in workers:
        conn.recv()
    kept: list[list[float]] = [[], []]
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(kept[0]) < 30:
        for index, (_, conn) in enumerate(workers):
            conn.send(BLOCK)
            kept[index].extend(conn.recv()[DROPPED:])
    for process, conn in workers:
        conn.send(None)
        process.join(timeout=10)
    p50 = [statistics.median(times) * 1e3 for times in kept]
    return {
        "method": f"one process per model, alternating blocks of {BLOCK} runs (first {DROPPED} dropped), "
        f"spinning {'on' if spinning else 'off'}",
        "runs": len(kept[0]),
        "p50_ms_baseline": p50[0],
        "p50_ms_result": p50[1],
        "speedup": p50[0] / p50[1],
    }


def batch_from(data: Path, batch: int) -> dict[str, np.ndarray]:
    with np.load(data, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "labels"}
    out = {}
    for key, value in arrays.items():
        reps = -(-batch // len(value))
        out[key] = np.concatenate([value] * reps)[:batch]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("result", type=Path)
    parser.add_argument("--data", type=Path, required=True, help=".npz keyed by input name")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    figures = per_process_speedup(
        args.baseline, args.result, batch_from(args.data, args.batch), args.threads, args.seconds
    )
    json.dump(figures, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
