"""Train the teacher used by recipes/distill-then-int8.yaml and the README's distillation tour.

Writes examples/distill/: teacher.pt2 (a ResNet-style CNN, width 32, trained on the distorted 16x16 digits of
benchmarks/distill_task.py), student.pt2 (the same family at width 14, fresh weights: about 19% of the
parameters), and train.npz, val.npz, test.npz (`pixels` [N,1,16,16] float32 + `labels`); test.npz is never given
to modelforge: it is for checking results on data the tool never saw.

    python scripts/make_distill_example.py [--epochs 12]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "examples" / "distill")
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_distill

    from modelforge.progress import LineProgress

    args.out.mkdir(parents=True, exist_ok=True)
    print(f"training the teacher ({args.epochs} epochs) into {args.out}/", flush=True)
    task = bench_distill.prepare(args.out, args.epochs, progress=LineProgress())
    print(f"{args.out / 'teacher.pt2'}: test accuracy {task['teacher_test_accuracy']:.4f}")


if __name__ == "__main__":
    main()
