"""Small real Hugging Face folders built and trained here, for the Hugging Face tests and the benchmark.

Nothing is downloaded: the tokenizer is a WordPiece trained with `tokenizers` on generated sentences, the
models are BERT- and ViT-style networks from a `transformers` config, trained for a few seconds with a fixed
seed and saved with `save_pretrained(safe_serialization=True)`, as a user's fine-tuned folder would be.

The text task: templated sentences whose class is set by one class-bearing word (sports / weather / finance /
food); for token classification that word is tagged with its class (upper case), every other word "O". The
image task: a coloured square on a noisy background, the class is the square's colour.

Data writers (`write_txt`, `write_jsonl`, `write_csv`, `write_image_folder`, `write_npz`) write the same
examples in the forms the CLI reads.
"""

from __future__ import annotations

import csv
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("USE_TF", "0")
os.environ.setdefault("USE_TORCH", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CLASSES = ("sports", "weather", "finance", "food")
CLASS_WORDS = {
    "sports": ("football", "tennis", "marathon", "hockey", "cycling", "basketball"),
    "weather": ("rain", "snow", "storm", "sunshine", "fog", "thunder"),
    "finance": ("stocks", "bonds", "inflation", "dividends", "mortgage", "budget"),
    "food": ("pasta", "soup", "bread", "cheese", "pizza", "salad"),
}
TOKEN_TAGS = ("O", *(c.upper() for c in CLASSES))
# Training pads to this many tokens: every generated sentence fits (at most 11 words and their sub-tokens).
TRAIN_LENGTH = 24
_TEMPLATES = (
    "yesterday the {w} was the main topic in town",
    "everyone talked about {w} during the long evening",
    "my neighbour said the {w} looked quite unusual today",
    "the news mentioned {w} again this morning",
    "we spent the whole weekend thinking about {w}",
    "nobody expected so much {w} in the small village",
    "the report on {w} was read by many people",
    "after lunch the {w} story was shared with friends",
)
_FILLERS = ("really", "very", "quite", "still", "also", "often", "again", "later")
IMAGE_CLASSES = ("red", "green", "blue", "yellow")
_IMAGE_COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}


@dataclass(frozen=True)
class Sentence:
    text: str
    label: str  # one of CLASSES
    words: tuple[str, ...]  # text.split()
    tags: tuple[str, ...]  # one of TOKEN_TAGS per word


def generated_sentences(count: int, seed: int = 0) -> list[Sentence]:
    """`count` templated sentences, classes balanced in turn, each with one class-bearing word."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        label = CLASSES[i % len(CLASSES)]
        word = rng.choice(CLASS_WORDS[label])
        words = rng.choice(_TEMPLATES).format(w=word).split()
        if rng.random() < 0.5:  # a filler word somewhere: more variety in position and length
            words.insert(rng.randrange(1, len(words)), rng.choice(_FILLERS))
        tags = tuple(label.upper() if w == word else "O" for w in words)
        out.append(Sentence(" ".join(words), label, tuple(words), tags))
    rng.shuffle(out)
    return out


def sentence_pairs(count: int, seed: int = 0) -> list[tuple[str, str, float]]:
    """(text A, text B, score) pairs: score 1.0 when both sentences share a class, else 0.0."""
    a = generated_sentences(count, seed)
    b = generated_sentences(count, seed + 1000)
    return [(x.text, y.text, 1.0 if x.label == y.label else 0.0) for x, y in zip(a, b, strict=True)]


# ---- tokenizer ---------------------------------------------------------------------------------------------------


def word_piece_tokenizer(texts: list[str], folder: Path, vocab_size: int = 300, model_max_length: int = 64):
    """A real WordPiece tokenizer trained on `texts`, saved in `folder` as a BertTokenizerFast (tokenizer.json,
    tokenizer_config.json, vocab.txt, special_tokens_map.json). Returns the loaded transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # A small vocabulary with a floor on frequency: rarer words split into sub-tokens, as real ones do.
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tok.decoder = decoders.WordPiece()
    fast = BertTokenizerFast(tokenizer_object=tok, model_max_length=model_max_length, do_lower_case=True)
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)
    return BertTokenizerFast.from_pretrained(folder, local_files_only=True)


# ---- text models -------------------------------------------------------------------------------------------------


def _bert_config(tokenizer, hidden: int, layers: int, heads: int, **extra):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 2,
        max_position_embeddings=max(tokenizer.model_max_length, 64),
        pad_token_id=tokenizer.pad_token_id,
        hidden_dropout_prob=0.0,  # a tiny model trained for seconds: dropout only slows it down
        attention_probs_dropout_prob=0.0,
        **extra,
    )


def _train(model, batches, epochs: int, lr: float, loss_of) -> None:
    """Adam for `epochs` passes over `batches` (a list of dicts of tensors), then eval mode. One thread: these
    models are so small that more threads only wait on each other (10x slower on a busy two-core machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        for _ in range(epochs):
            for batch in batches:
                opt.zero_grad()
                loss_of(model, batch).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()


def _batches(encoded: dict, labels, size: int = 16) -> list[dict]:
    import torch

    n = len(labels)
    out = []
    for start in range(0, n, size):
        batch = {k: torch.as_tensor(v[start : start + size]) for k, v in encoded.items()}
        batch["labels"] = torch.as_tensor(labels[start : start + size])
        out.append(batch)
    return out


def _encode(tokenizer, texts: list[str], max_length: int | None = None) -> dict[str, np.ndarray]:
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=max_length or tokenizer.model_max_length)
    return {k: np.asarray(v, dtype=np.int64) for k, v in enc.items()}


def bert_text_classifier(
    folder: Path,
    *,
    count: int = 400,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    epochs: int = 8,
    seed: int = 0,
    model_max_length: int = 64,
) -> Path:
    """A BertForSequenceClassification over CLASSES, trained on generated sentences, saved with its tokenizer."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    data = generated_sentences(count, seed)
    tokenizer = word_piece_tokenizer([s.text for s in data], folder, model_max_length=model_max_length)
    config = _bert_config(
        tokenizer,
        hidden,
        layers,
        heads,
        id2label=dict(enumerate(CLASSES)),
        label2id={c: i for i, c in enumerate(CLASSES)},
    )
    config.architectures = ["BertForSequenceClassification"]
    model = BertForSequenceClassification(config)
    labels = np.array([CLASSES.index(s.label) for s in data], dtype=np.int64)
    batches = _batches(_encode(tokenizer, [s.text for s in data], TRAIN_LENGTH), labels)
    _train(model, batches, epochs, 1e-3, lambda m, b: m(**b).loss)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def token_labels(tokenizer, sentences: list[Sentence], max_length: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Tokenized words and int64 [N, max_length] tag ids: the first sub-token of a word carries its tag, the
    rest and the special tokens -100 (ignored)."""
    enc = tokenizer(
        [list(s.words) for s in sentences],
        is_split_into_words=True,
        padding="max_length",
        truncation=True,
        max_length=max_length,
    )
    labels = np.full((len(sentences), max_length), -100, dtype=np.int64)
    for i, s in enumerate(sentences):
        previous = None
        for j, word in enumerate(enc.word_ids(i)):
            if word is not None and word != previous:
                labels[i, j] = TOKEN_TAGS.index(s.tags[word])
            previous = word
    arrays = {k: np.asarray(v, dtype=np.int64) for k, v in enc.items()}
    return arrays, labels


def bert_token_classifier(
    folder: Path,
    *,
    count: int = 400,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    epochs: int = 8,
    seed: int = 0,
    model_max_length: int = 64,
) -> Path:
    """A BertForTokenClassification tagging the class-bearing word (TOKEN_TAGS), saved with its tokenizer."""
    import torch
    from transformers import BertForTokenClassification

    torch.manual_seed(seed)
    data = generated_sentences(count, seed)
    tokenizer = word_piece_tokenizer([s.text for s in data], folder, model_max_length=model_max_length)
    config = _bert_config(
        tokenizer,
        hidden,
        layers,
        heads,
        id2label=dict(enumerate(TOKEN_TAGS)),
        label2id={t: i for i, t in enumerate(TOKEN_TAGS)},
    )
    config.architectures = ["BertForTokenClassification"]
    model = BertForTokenClassification(config)
    arrays, labels = token_labels(tokenizer, data, TRAIN_LENGTH)
    _train(model, _batches(arrays, labels), epochs, 1e-3, lambda m, b: m(**b).loss)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def write_sentence_transformers_files(folder: Path, dim: int, pooling: str = "mean", normalize: bool = True) -> None:
    """modules.json, 1_Pooling/config.json, sentence_bert_config.json (and 2_Normalize/) as sentence-transformers
    writes them."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (folder / "2_Normalize").mkdir(exist_ok=True)
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    pool = {
        "word_embedding_dimension": dim,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    }
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pool, indent=2))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))


def sentence_embedder(
    folder: Path,
    *,
    count: int = 400,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    epochs: int = 8,
    seed: int = 0,
    model_max_length: int = 64,
    pooling: str = "mean",
    normalize: bool = True,
) -> Path:
    """A BertModel whose mean-pooled, normalised embedding clusters by class (trained through a throw-away
    linear head), saved as a sentence-transformers folder (modules.json, 1_Pooling mean, 2_Normalize)."""
    import torch
    from transformers import BertModel

    torch.manual_seed(seed)
    data = generated_sentences(count, seed)
    tokenizer = word_piece_tokenizer([s.text for s in data], folder, model_max_length=model_max_length)
    config = _bert_config(tokenizer, hidden, layers, heads)
    config.architectures = ["BertModel"]
    model = BertModel(config, add_pooling_layer=False)
    head = torch.nn.Linear(hidden, len(CLASSES))

    def loss_of(m, b):
        mask = b["attention_mask"].unsqueeze(-1).float()
        states = m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
        pooled = (states * mask).sum(1) / mask.sum(1)
        return torch.nn.functional.cross_entropy(head(torch.nn.functional.normalize(pooled) * 8), b["labels"])

    labels = np.array([CLASSES.index(s.label) for s in data], dtype=np.int64)
    wrapper = torch.nn.ModuleDict({"bert": model, "head": head})
    batches = _batches(_encode(tokenizer, [s.text for s in data], TRAIN_LENGTH), labels)
    _train(wrapper, batches, epochs, 1e-3, lambda m, b: loss_of(m["bert"], b))
    model.save_pretrained(folder, safe_serialization=True)
    write_sentence_transformers_files(folder, hidden, pooling, normalize)
    return folder


# ---- image model -------------------------------------------------------------------------------------------------


def generated_images(count: int, seed: int = 0, size: int = 32) -> list[tuple[object, str]]:
    """(PIL image, class) pairs: a square of the class's colour at a random place on a noisy grey background."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        label = IMAGE_CLASSES[i % len(IMAGE_CLASSES)]
        pixels = rng.integers(80, 176, size=(size, size, 3)).astype(np.uint8)
        side = int(rng.integers(size // 3, size // 2 + 1))
        top, left = (int(v) for v in rng.integers(0, size - side + 1, size=2))
        colour = np.clip(np.array(_IMAGE_COLOURS[label]) + rng.integers(-20, 21, size=3), 0, 255)
        pixels[top : top + side, left : left + side] = colour.astype(np.uint8)
        out.append((Image.fromarray(pixels, "RGB"), label))
    return out


def vit_image_classifier(
    folder: Path,
    *,
    count: int = 240,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    epochs: int = 8,
    seed: int = 0,
    image_size: int = 32,
) -> Path:
    """A ViTForImageClassification over IMAGE_CLASSES with its ViTImageProcessor (preprocessor_config.json)."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(seed)
    processor = ViTImageProcessor(
        do_resize=True, size={"height": image_size, "width": image_size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    config = ViTConfig(
        image_size=image_size,
        patch_size=8,
        num_channels=3,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 2,
        id2label=dict(enumerate(IMAGE_CLASSES)),
        label2id={c: i for i, c in enumerate(IMAGE_CLASSES)},
    )
    config.architectures = ["ViTForImageClassification"]
    model = ViTForImageClassification(config)
    images = generated_images(count, seed, image_size)
    pixels = processor([img for img, _ in images], return_tensors="np")["pixel_values"].astype(np.float32)
    labels = np.array([IMAGE_CLASSES.index(c) for _, c in images], dtype=np.int64)
    _train(model, _batches({"pixel_values": pixels}, labels), epochs, 1e-3, lambda m, b: m(**b).loss)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    return folder


# ---- data files --------------------------------------------------------------------------------------------------


def write_txt(path: Path, texts: list[str]) -> Path:
    """One example a line (calibration text)."""
    path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def classification_rows(sentences: list[Sentence]) -> list[dict]:
    """{"text", "label"} rows (label: the class name, mapped through label2id by the reader)."""
    return [{"text": s.text, "label": s.label} for s in sentences]


def token_rows(sentences: list[Sentence]) -> list[dict]:
    """{"text", "label"} rows for token classification: label is the list of per-word tags (text.split())."""
    return [{"text": s.text, "label": list(s.tags)} for s in sentences]


def pair_rows(pairs: list[tuple[str, str, float]]) -> list[dict]:
    """{"text", "text_pair", "score"} rows for sentence embeddings."""
    return [{"text": a, "text_pair": b, "score": s} for a, b, s in pairs]


def write_image_folder(folder: Path, images: list[tuple[object, str]]) -> Path:
    """One sub-folder per class name (the image-folder convention), PNG files."""
    for i, (img, label) in enumerate(images):
        (folder / label).mkdir(parents=True, exist_ok=True)
        img.save(folder / label / f"{i:04d}.png")
    return folder


def write_npz(
    path: Path, model_folder: Path, sentences: list[Sentence], max_length: int = 32, task: str = "text"
) -> Path:
    """Sentences tokenized with the folder's own tokenizer into an .npz keyed by input name, plus `labels`
    (class ids for "text", per-token tag ids with -100 for "token")."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_folder, local_files_only=True)
    if task == "token":
        arrays, labels = token_labels(tokenizer, sentences, max_length)
    else:
        arrays = _encode(tokenizer, [s.text for s in sentences], max_length)
        labels = np.array([CLASSES.index(s.label) for s in sentences], dtype=np.int64)
    np.savez(path, **arrays, labels=labels)
    return path
