"""Write the test models of the real-world graph classes of issues 8 and 19 (tests/realworld_models.py) to OUTDIR.

    python scripts/make_realworld_models.py OUTDIR [--only NAME ...]

For each model: the model file (.onnx, or .pt2 for the CRNN), NAME.calibration.npz, NAME.eval.npz (with
`labels` for the classifiers), and for the CRNN crnn.targets.npz. Prints one line per model (file, float
accuracy, build time) and writes OUTDIR/models.json with the same facts, for benchmarks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import realworld_models as rw  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--only", nargs="+", choices=sorted(rw.BUILDERS), help="build only these")
    args = parser.parse_args()
    args.outdir.mkdir(parents=True, exist_ok=True)
    records = {}
    for name, builder in rw.BUILDERS.items():
        if args.only and name not in args.only:
            continue
        print(f"{name}: building (training, export, data)...", flush=True)
        wall, cpu = time.perf_counter(), time.process_time()
        built = builder(args.outdir)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        accuracy = "-" if built.float_accuracy is None else f"{built.float_accuracy:.4f}"
        print(
            f"{name:18s} {built.model.name:24s} float accuracy {accuracy:>6s}  {wall:5.1f} s ({cpu:.1f} CPU s)",
            flush=True,
        )
        records[name] = {
            "model": built.model.name,
            "calibration": built.calibration.name,
            "eval": built.eval.name,
            "targets": built.targets.name if built.targets else None,
            "float_accuracy": built.float_accuracy,
            "build_seconds": round(wall, 2),
            "build_cpu_seconds": round(cpu, 2),
            "info": built.info,
        }
    (args.outdir / "models.json").write_text(json.dumps(records, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
