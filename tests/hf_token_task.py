"""A generated token-id classification task and a tiny BERT trained on it in seconds, for the Hugging Face
distillation and pruning engines (their test and benchmarks/bench_hf_distill.py).

Each sample is [CLS] filler... [SEP] padding, with one class-bearing token (two per class) at a random place among
the filler tokens: the encoder must attend across the sequence to find it. No tokenizer is needed: the engines
take token-id arrays keyed by the model's input names, as the text data sets give them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = 4
PAD, CLS, SEP = 0, 1, 2
CLASS_TOKENS = np.arange(4, 4 + 2 * CLASSES).reshape(CLASSES, 2)  # two words per class
FILLER_START = 4 + 2 * CLASSES
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def token_data(count: int, seed: int, length: int = 16, vocab: int = 96) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(arrays keyed by input name, int64 labels), seeded."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, count).astype(np.int64)
    ids = np.full((count, length), PAD, dtype=np.int64)
    mask = np.zeros((count, length), dtype=np.int64)
    for i, label in enumerate(labels):
        words = int(rng.integers(length // 3, length - 1))
        filler = rng.integers(FILLER_START, vocab, words)
        filler[rng.integers(0, words)] = CLASS_TOKENS[label, rng.integers(0, 2)]
        ids[i, 0], ids[i, 1 : words + 1], ids[i, words + 1] = CLS, filler, SEP
        mask[i, : words + 2] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}, labels


def write_npz(path: Path, arrays: dict[str, np.ndarray], labels: np.ndarray) -> Path:
    np.savez(path, **arrays, labels=labels)
    return path


def bound(path: Path):
    """The .npz as the engines get data: a BoundDataset keyed by model input name."""
    from modelforge.data.binding import BoundDataset
    from modelforge.data.sources import NpzDataset

    dataset = NpzDataset(path)
    return BoundDataset(dataset, {n: n for n in INPUT_NAMES}, {n: np.dtype("int64") for n in INPUT_NAMES})


def tiny_bert(layers: int = 4, hidden: int = 32, heads: int = 4, ffn: int = 64, vocab: int = 96, positions: int = 32):
    import os

    os.environ.setdefault("USE_TF", "0")
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        max_position_embeddings=positions,
        num_labels=CLASSES,
        id2label={i: f"class{i}" for i in range(CLASSES)},
        label2id={f"class{i}": i for i in range(CLASSES)},
    )
    return BertForSequenceClassification(config)


def fit(model, arrays: dict[str, np.ndarray], labels: np.ndarray, *, epochs: int, lr: float, folder: Path, seed=0):
    """Train the model in place with modelforge's training loop (the engines' own); returns it in eval mode."""
    import torch

    from modelforge.pruning.hf_encoder import logits_module
    from modelforge.training import TrainConfig, train

    wrapper = logits_module(model, INPUT_NAMES)
    inputs = tuple(torch.from_numpy(arrays[n]) for n in INPUT_NAMES)
    config = TrainConfig(epochs=epochs, batch_size=32, lr=lr, keep_best=False, device="cpu")
    train(wrapper, (inputs, torch.from_numpy(labels)), None, config, checkpoint_dir=folder, seed=seed)
    return model.eval()


def accuracy(model, arrays: dict[str, np.ndarray], labels: np.ndarray) -> float:
    import torch

    with torch.no_grad():
        logits = model(**{n: torch.from_numpy(arrays[n]) for n in INPUT_NAMES}).logits
    return float((logits.argmax(1).numpy() == labels).mean())
