"""A TRAINED MobileNetV3-small for bench_openvino.py: torchvision's architecture (tests/realworld_models.py), 10
classes, trained from scratch on the distorted digits of distill_task.py as 3-channel ImageNet-normalised images.

Why trained: a random-weights classifier's top-1 margin is a fraction of a logit, so any INT8 flips its top-1
and the accuracy gates measure noise, not quantization. Training takes minutes on 2 cores, so the exported ONNX
is cached under a content key (training config + the source of the code that makes it): reruns reuse it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import time
from pathlib import Path

import numpy as np

# Everything that decides the trained weights; any change (or a change of the code below) is a new cache key.
CONFIG = {
    "size": 96,
    "train_copies": 3,
    "epochs": 8,
    "batch": 64,
    "lr": 5e-3,
    "weight_decay": 0.01,
    "seed": 0,
    "threads": 1,  # one thread: reproducible, and faster than two beside other work
}
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)[:, None, None]
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)[:, None, None]


def to_rgb(gray: np.ndarray) -> np.ndarray:
    """[N, 1, S, S] digits in 0..1.5 -> [N, 3, S, S] ImageNet-normalised (the channel repeated)."""
    pixels = np.clip(gray, 0.0, 1.0)
    return ((np.repeat(pixels, 3, axis=1) - MEAN) / STD).astype(np.float32)


def cache_key(config: dict = CONFIG) -> str:
    import distill_task
    import realworld_models

    sources = [
        inspect.getsource(distill_task._distort),
        inspect.getsource(distill_task.distorted_digits),
        inspect.getsource(realworld_models._mobilenet_v3_small),
        repr(realworld_models.MOBILENET_V3_SMALL),
        inspect.getsource(to_rgb),
        inspect.getsource(train),
    ]
    blob = json.dumps(config, sort_keys=True) + "\n".join(sources)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(to_rgb(x[i : i + 256]))) for i in range(0, len(x), 256)])
    return float((logits.argmax(1).numpy() == y).mean())


def train(config: dict = CONFIG):
    """Seeded AdamW + one-cycle LR, then BatchNorm statistics recomputed over the train set (torchvision's BN
    momentum 0.01 lags far behind a few hundred steps). Returns (model, data, record)."""
    import distill_task
    import realworld_models
    import torch

    torch.manual_seed(config["seed"])
    torch.set_num_threads(config["threads"])
    data = distill_task.distorted_digits(seed=config["seed"], train_copies=config["train_copies"], size=config["size"])
    (x_train, y_train), (x_val, y_val), _ = data
    model = realworld_models._mobilenet_v3_small(num_classes=10)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.1
    steps_per_epoch = len(x_train) // config["batch"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config["lr"], total_steps=config["epochs"] * steps_per_epoch
    )
    generator = np.random.default_rng(config["seed"])
    started = time.perf_counter()
    for epoch in range(config["epochs"]):
        model.train()
        order = generator.permutation(len(x_train))
        for step in range(steps_per_epoch):
            index = order[step * config["batch"] : (step + 1) * config["batch"]]
            loss = torch.nn.functional.cross_entropy(
                model(torch.from_numpy(to_rgb(x_train[index]))), torch.from_numpy(y_train[index])
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        print(f"  epoch {epoch + 1}: loss {loss.item():.3f}, {time.perf_counter() - started:.0f} s", flush=True)
    model.train()  # BatchNorm statistics: the cumulative average over the whole train set
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        for i in range(0, len(x_train), 256):
            model.features(torch.from_numpy(to_rgb(x_train[i : i + 256])))
    model.eval()
    record = {
        "train_seconds": round(time.perf_counter() - started, 1),
        "val_accuracy": round(_accuracy(model, x_val, y_val), 4),
    }
    return model, data, record


def build(folder: Path, cache: Path, calibration_samples: int, eval_samples: int) -> dict:
    """The trained model's ONNX (from `cache` when its key is there, else trained and cached), a calibration
    .npz (train images) and an eval .npz (held-out test images with `labels`) in `folder`."""
    import distill_task
    import realworld_models as rw

    key = cache_key()
    size = CONFIG["size"]
    model_path = cache / f"mobilenetv3-digits-{key}.onnx"
    record_path = model_path.with_suffix(".json")
    if model_path.exists() and record_path.exists():
        record = json.loads(record_path.read_text())
        (x_train, _), _, (x_test, y_test) = distill_task.distorted_digits(
            seed=CONFIG["seed"], train_copies=CONFIG["train_copies"], size=size
        )
    else:
        import torch

        print(f"training MobileNetV3-small on distorted digits ({size}x{size}), cached as {model_path.name}")
        model, data, record = train()
        (x_train, _), _, (x_test, y_test) = data
        record["test_accuracy"] = round(_accuracy(model, x_test, y_test), 4)
        with torch.no_grad():
            proto = rw._torch_to_onnx(model, (torch.zeros(1, 3, size, size),), 17, ["image"], ["logits"], None)
        proto.graph.name = "mobilenetv3_small_digits"
        cache.mkdir(parents=True, exist_ok=True)
        partial = model_path.with_suffix(".onnx.partial")
        rw._save(proto, partial)
        partial.replace(model_path)
        record_path.write_text(json.dumps(record | {"config": CONFIG}, indent=2) + "\n")
    rng = np.random.default_rng(1)  # spread over the digits (each source image comes as consecutive copies)
    calibrate = rng.permutation(len(x_train))[:calibration_samples]
    pick = rng.permutation(len(x_test))[:eval_samples]
    np.savez(folder / "calibration.npz", image=to_rgb(x_train[calibrate]))
    np.savez(folder / "eval.npz", image=to_rgb(x_test[pick]), labels=y_test[pick])
    return {"model": model_path, "calibration": folder / "calibration.npz", "eval": folder / "eval.npz",
            "record": record}  # fmt: skip
