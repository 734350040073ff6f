"""Train the Keras digits CNN used by recipes/keras-prune-then-tflite.yaml and the README's TensorFlow section.

Writes examples/keras/model.h5 (tf_keras, Keras 2: TF-MOT can prune it), model.keras (the same weights in
Keras 3), train.npz, calib.npz and eval.npz (`image` [N,8,8,1] float32 NHWC + `labels`).

    python scripts/make_keras_example.py [--width 32] [--epochs 12]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "examples" / "keras")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    import tf_models

    args.out.mkdir(parents=True, exist_ok=True)
    tf_models.write_data(args.out)
    print(f"training the Keras digits CNN ({args.epochs} epochs; TensorFlow takes a while to import)", flush=True)
    model = tf_models.train_tf_keras(epochs=args.epochs, width=args.width, log=lambda line: print(line, flush=True))
    model.save(args.out / "model.h5")
    tf_models.as_keras3(model).save(args.out / "model.keras")
    (_, _), _, (x, y) = tf_models.digits_nhwc()
    accuracy = tf_models.accuracy(model, x, y)
    print(f"wrote {args.out}/ (model.h5, model.keras, train/calib/eval.npz); held-out accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
