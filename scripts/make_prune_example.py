"""Train the residual digits CNN used by recipes/prune-then-int8.yaml and the README's pruning tour.

Writes examples/prune/model.pt2 (torch.export program, dynamic batch), train.npz, val.npz and test.npz
(`pixels` [N,1,8,8] float32 + `labels`); test.npz is never given to modelforge: it is for checking results
on data the tool never saw.

    python scripts/make_prune_example.py [--width 32] [--epochs 20]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "examples" / "prune")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    import prune_models as pm

    args.out.mkdir(parents=True, exist_ok=True)
    pm.write_data(args.out)
    print(
        f"wrote {args.out}/train.npz, val.npz, test.npz; training the residual CNN ({args.epochs} epochs)", flush=True
    )
    (xt, yt), _, (xs, ys) = pm.digits_split()
    model = pm.fit(pm.ResidualNet(args.width), xt, yt, epochs=args.epochs, log=lambda line: print(line, flush=True))
    print("exporting with torch.export", flush=True)
    pm.export(model, args.out / "model.pt2", xt)
    print(f"{args.out / 'model.pt2'}: test accuracy {pm.accuracy(model, xs, ys):.4f}")


if __name__ == "__main__":
    main()
