"""Text and image data for Hugging Face folders, prepared by the folder's own tokenizer or image processor.

The tokenizer is a real WordPiece trained here on generated sentences (tests/hf_models.py); the expected arrays
come from calling that tokenizer directly, so the reader is checked against transformers itself. Streaming is
proved by counting tokenizer calls on a 200k-line file, never by timing.
"""

from __future__ import annotations

import importlib.util
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import DIGITS_CALIBRATION, DIGITS_MODEL, one_error_line, run_cli
from hf_models import (
    CLASSES,
    IMAGE_CLASSES,
    TOKEN_TAGS,
    generated_images,
    generated_sentences,
    token_rows,
    word_piece_tokenizer,
    write_csv,
    write_image_folder,
    write_jsonl,
    write_txt,
)

from modelforge.data import bind, open_dataset
from modelforge.data.sources import IGNORE_LABEL
from modelforge.data.text import TextDataset
from modelforge.errors import InputError
from modelforge.model.artifact import IOSpec, TensorSpec
from modelforge.model.huggingface.info import HFInfo
from modelforge.model.huggingface.preprocess import load_tokenizer
from modelforge.recipe.schema import DataConfig, DataSource

BERT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
SENTENCES = generated_sentences(40, seed=3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A tokenizer folder as a fine-tuned BERT ships it (the model's weights play no part in data)."""
    folder = tmp_path_factory.mktemp("bert")
    word_piece_tokenizer([s.text for s in generated_sentences(300, seed=0)], folder, model_max_length=64)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    return folder


@pytest.fixture(scope="module")
def tokenizer(folder):
    return load_tokenizer(folder)


def hf_info(folder: Path, task: str = "text-classification", labels=CLASSES, inputs=BERT_INPUTS) -> HFInfo:
    id2label = dict(enumerate(labels)) if task != "feature-extraction" else {}
    return HFInfo(folder, task, "bert", id2label, inputs, 64 if "input_ids" in inputs else None)


def open_text(path: Path, info: HFInfo, **config) -> TextDataset:
    dataset = open_dataset(DataSource(path=path), None, info, DataConfig(**config))
    assert isinstance(dataset, TextDataset)
    return dataset


def read_all(dataset, key: str) -> np.ndarray:
    return dataset.read(key, 0, dataset.num_samples)


def expected(tokenizer, texts, pairs=None, max_length=64, **kwargs) -> dict[str, np.ndarray]:
    enc = tokenizer(texts, pairs, padding="max_length", truncation=True, max_length=max_length, **kwargs)
    return {k: np.asarray(v, dtype=np.int64) for k, v in enc.items()}


# ---- formats ------------------------------------------------------------------------------------------------------


def test_txt_one_example_a_line_blank_lines_skipped(folder, tokenizer, tmp_path):
    texts = [s.text for s in SENTENCES[:6]]
    path = tmp_path / "calib.txt"
    path.write_text("\n".join([texts[0], "", "   ", *texts[1:]]) + "\n\n", encoding="utf-8")
    dataset = open_text(path, hf_info(folder))
    assert dataset.num_samples == 6
    assert set(dataset.arrays) == set(BERT_INPUTS)
    assert all(a.shape == (6, 64) and a.dtype == np.int64 for a in dataset.arrays.values())
    want = expected(tokenizer, texts)
    for key in BERT_INPUTS:
        got = read_all(dataset, key)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, want[key])
    assert dataset.labels() is None


def test_jsonl_labels_map_through_label2id(folder, tokenizer, tmp_path):
    rows = [{"sentence": s.text, "topic": s.label, "id": i} for i, s in enumerate(SENTENCES[:8])]
    rows[3]["topic"] = CLASSES.index(rows[3]["topic"])  # a class id is taken as it is
    path = write_jsonl(tmp_path / "eval.jsonl", rows)
    dataset = open_text(path, hf_info(folder), text_column="sentence", label_column="topic", max_length=24)
    np.testing.assert_array_equal(dataset.labels(), [CLASSES.index(s.label) for s in SENTENCES[:8]])
    assert dataset.arrays["input_ids"].shape == (8, 24)
    want = expected(tokenizer, [r["sentence"] for r in rows], max_length=24)
    np.testing.assert_array_equal(dataset.read("input_ids", 2, 5), want["input_ids"][2:5])


def test_csv_quoted_fields_across_lines_and_labels(folder, tokenizer, tmp_path):
    texts = [s.text for s in SENTENCES[:5]]
    texts[1] = 'a "quoted" word, a comma\nand a second line'
    rows = [{"text": t, "label": s.label} for t, s in zip(texts, SENTENCES, strict=False)]
    path = write_csv(tmp_path / "eval.csv", rows)
    dataset = open_text(path, hf_info(folder))
    assert dataset.num_samples == 5
    np.testing.assert_array_equal(read_all(dataset, "input_ids"), expected(tokenizer, texts)["input_ids"])
    np.testing.assert_array_equal(dataset.labels(), [CLASSES.index(s.label) for s in SENTENCES[:5]])


def test_a_model_without_token_types_gets_none(folder, tmp_path):
    path = write_txt(tmp_path / "calib.txt", [s.text for s in SENTENCES[:3]])
    dataset = open_text(path, hf_info(folder, inputs=("input_ids", "attention_mask")))
    assert set(dataset.arrays) == {"input_ids", "attention_mask"}


def test_classification_pairs_are_encoded_jointly(folder, tokenizer, tmp_path):
    pairs = [(a.text, b.text) for a, b in zip(SENTENCES[:6], SENTENCES[6:12], strict=True)]
    rows = [{"premise": a, "hypothesis": b, "label": "sports"} for a, b in pairs]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    dataset = open_text(path, hf_info(folder), text_column="premise", text_pair_column="hypothesis")
    assert dataset.num_samples == 6 and dataset.pair_count == 0
    want = expected(tokenizer, [a for a, _ in pairs], [b for _, b in pairs])
    for key in BERT_INPUTS:
        np.testing.assert_array_equal(read_all(dataset, key), want[key])
    assert read_all(dataset, "token_type_ids").max() == 1  # the second text is segment 1


def test_a_txt_file_ignores_the_columns(folder, tokenizer, tmp_path):
    """The columns are one setting for all files of a run: .txt calibration beside an eval .csv of pairs."""
    texts = [s.text for s in SENTENCES[:4]]
    path = write_txt(tmp_path / "calib.txt", texts)
    info = hf_info(folder, "feature-extraction")
    dataset = open_text(path, info, text_column="a", text_pair_column="b", label_column="score")
    assert dataset.pair_count == 0 and dataset.num_samples == 4
    np.testing.assert_array_equal(read_all(dataset, "input_ids"), expected(tokenizer, texts)["input_ids"])


def test_feature_extraction_pairs_hold_2n_samples_and_scores(folder, tokenizer, tmp_path):
    pairs = zip(SENTENCES[:5], SENTENCES[5:10], strict=True)
    rows = [{"a": x.text, "b": y.text, "score": i / 10} for i, (x, y) in enumerate(pairs)]
    path = write_csv(tmp_path / "sts.csv", rows)
    dataset = open_text(path, hf_info(folder, "feature-extraction"), text_column="a", text_pair_column="b")
    assert dataset.pair_count == 5 and dataset.num_samples == 10
    texts = [r["a"] for r in rows] + [r["b"] for r in rows]
    want = expected(tokenizer, texts)["input_ids"]
    np.testing.assert_array_equal(read_all(dataset, "input_ids"), want)
    np.testing.assert_array_equal(dataset.read("input_ids", 3, 8), want[3:8])  # a chunk across the A/B boundary
    np.testing.assert_allclose(dataset.pair_scores(), [0.0, 0.1, 0.2, 0.3, 0.4])
    assert dataset.labels() is None


def test_token_classification_tags_on_first_sub_token(folder, tokenizer, tmp_path):
    sentences = SENTENCES[:10]
    rows = token_rows(sentences)  # text as a string (split on whitespace), one tag a word
    rows[0] = {"text": ["unexpectedly", "pizzazz", "marathon"], "label": ["O", "FOOD", "SPORTS"]}  # a word list
    path = write_jsonl(tmp_path / "ner.jsonl", rows)
    info = hf_info(folder, "token-classification", labels=TOKEN_TAGS)
    dataset = open_text(path, info, max_length=48)
    labels = dataset.labels()
    assert labels.shape == (10, 48) and labels.dtype == np.int64
    ids = read_all(dataset, "input_ids")
    split_words = 0
    for row, record in enumerate(rows):
        words = record["text"] if isinstance(record["text"], list) else record["text"].split()
        tagged = np.flatnonzero(labels[row] != IGNORE_LABEL)
        assert len(tagged) == len(words)  # one position a word, the rest ignored
        tokens = tokenizer.convert_ids_to_tokens(ids[row, tagged].tolist())
        for word, token, tag, position in zip(words, tokens, record["label"], tagged, strict=True):
            pieces = tokenizer.tokenize(word)
            assert token == pieces[0]  # the word's first sub-token carries its tag
            assert labels[row, position] == TOKEN_TAGS.index(tag)
            split_words += len(pieces) > 1
    assert split_words > 0  # some words did split: the later sub-tokens were ignored, not tagged


def test_image_folder_through_the_image_processor(tmp_path):
    from transformers import ViTImageProcessor

    folder = tmp_path / "vit"
    folder.mkdir()
    processor = ViTImageProcessor(size={"height": 16, "width": 16}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor.save_pretrained(folder)
    images = generated_images(8, seed=1, size=24)
    data = write_image_folder(tmp_path / "images", images)
    labels = ("yellow", "red", "blue", "green")  # not sorted: folders map through label2id, not by name order
    info = hf_info(folder, "image-classification", labels=labels, inputs=("pixel_values",))
    dataset = open_dataset(DataSource(path=data), None, info)
    assert dataset.arrays["pixel_values"].shape == (8, 3, 16, 16)
    files = sorted(data.rglob("*.png"))
    from PIL import Image

    want = processor([Image.open(f).convert("RGB") for f in files], return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(read_all(dataset, "pixel_values"), want, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(dataset.labels(), [labels.index(f.parent.name) for f in files])
    assert set(IMAGE_CLASSES) == set(labels)


def test_token_labels_are_checked_against_the_model_output_ignoring_minus_100(folder, tmp_path):
    from modelforge.model.artifact import ModelArtifact
    from modelforge.run.inputs import _check_labels

    path = write_jsonl(tmp_path / "ner.jsonl", token_rows(SENTENCES[:6]))
    bound = bind(open_text(path, hf_info(folder, "token-classification", labels=TOKEN_TAGS)), text_io())
    assert (bound.labels() == IGNORE_LABEL).any()

    def model(classes: int) -> ModelArtifact:
        logits = TensorSpec("logits", "float32", ("batch", "sequence", classes))
        return ModelArtifact(Path("model.onnx"), "onnx", IOSpec(text_io().inputs, (logits,)))

    _check_labels(bound, model(len(TOKEN_TAGS)))  # -100 is no class: accepted
    with pytest.raises(InputError, match=r"label 4 is out of range for output 'logits' \(expected 0\.\.2\)"):
        _check_labels(bound, model(3))


def text_io(names=BERT_INPUTS) -> IOSpec:
    return IOSpec(tuple(TensorSpec(name, "int64", ("batch", "sequence")) for name in names), ())


# ---- streaming ----------------------------------------------------------------------------------------------------


class CountingTokenizer:
    """The real tokenizer, with a count of its calls and of the texts each call tokenized."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.calls: list[int] = []

    def __call__(self, texts, *args, **kwargs):
        self.calls.append(len(texts))
        return self.tokenizer(texts, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


def test_a_big_file_streams_a_chunk_at_a_time(folder, tokenizer, tmp_path):
    lines = [s.text for s in SENTENCES]
    path = tmp_path / "big.txt"
    with path.open("w", encoding="utf-8") as f:
        for i in range(200_000):
            f.write(lines[i % len(lines)] + "\n")
    counting = CountingTokenizer(tokenizer)
    tracemalloc.start()
    dataset = TextDataset(path, hf_info(folder), DataConfig(), tokenizer=counting)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert dataset.num_samples == 200_000
    assert peak < 16 << 20  # the index: two int64 offsets a line (3.2 MB), never the texts or their tokens
    assert counting.calls == [1]  # opening tokenized one example (to check the inputs), not the file

    bound = bind(dataset, text_io()).window(100_000, 100_016)
    batches = list(bound.batches(8))
    assert counting.calls == [1, 8, 8]  # each batch tokenized once, for its three inputs
    want = expected(tokenizer, [lines[i % len(lines)] for i in range(100_000, 100_016)])
    for key in BERT_INPUTS:
        np.testing.assert_array_equal(np.concatenate([b[key] for b in batches]), want[key])


# ---- bad input ----------------------------------------------------------------------------------------------------


def bad(path: Path, info: HFInfo, **config) -> str:
    with pytest.raises(InputError) as caught:
        open_text(path, info, **config)
    message = caught.value.one_line()
    assert "\n" not in message
    assert str(path) in message or str(info.folder) in message
    return message


def test_empty_text_file(folder, tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n  \n", encoding="utf-8")
    assert "holds no text" in bad(path, hf_info(folder))


def test_text_that_is_not_utf8(folder, tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("first line\ncaf\xe9 au lait\n".encode("latin-1"))
    assert "line 2 is not UTF-8" in bad(path, hf_info(folder))


def test_jsonl_without_the_column_names_its_columns(folder, tmp_path):
    path = write_jsonl(tmp_path / "eval.jsonl", [{"sentence": "hi", "label": "food"}])
    message = bad(path, hf_info(folder))
    assert "line 1 has no 'text' field" in message and "sentence, label" in message


def test_jsonl_bad_json_names_the_line(folder, tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_text('{"text": "fine"}\n\n{"text": "broken"\n', encoding="utf-8")
    assert "line 3 is not valid JSON" in bad(path, hf_info(folder))


def test_csv_without_the_column(folder, tmp_path):
    path = write_csv(tmp_path / "eval.csv", [{"sentence": "hi", "label": "food"}])
    message = bad(path, hf_info(folder), text_pair_column="other")
    assert "no column 'text' (columns: sentence, label)" in message


def test_a_label_not_in_label2id(folder, tmp_path):
    path = write_csv(tmp_path / "eval.csv", [{"text": "a", "label": "food"}, {"text": "b", "label": "politics"}])
    message = bad(path, hf_info(folder))
    assert "line 3: label 'politics' is not one of the model's labels (sports, weather, finance, food)" in message


def test_token_tags_must_match_the_words(folder, tmp_path):
    path = write_jsonl(tmp_path / "ner.jsonl", [{"text": "two words", "label": ["O"]}])
    message = bad(path, hf_info(folder, "token-classification", labels=TOKEN_TAGS))
    assert "line 1: 'label' must be a list of 2 tags" in message


def test_max_length_past_the_tokenizer(folder, tmp_path):
    path = write_txt(tmp_path / "calib.txt", ["hello"])
    assert "max_length 100 exceeds the tokenizer's model_max_length 64" in bad(path, hf_info(folder), max_length=100)


def test_a_folder_without_a_tokenizer(tmp_path):
    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    path = write_txt(tmp_path / "calib.txt", ["hello"])
    assert "no tokenizer found (expected one of tokenizer.json, vocab.txt" in bad(path, hf_info(folder))


def test_a_broken_tokenizer_names_the_file(folder, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer_config.json", "special_tokens_map.json"):
        (broken / name).write_bytes((folder / name).read_bytes())
    (broken / "tokenizer.json").write_text("{not json")
    path = write_txt(tmp_path / "calib.txt", ["hello"])
    assert "tokenizer.json: the tokenizer cannot be loaded" in bad(path, hf_info(broken))


def test_image_folder_with_an_unknown_class(tmp_path):
    from transformers import ViTImageProcessor

    folder = tmp_path / "vit"
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(folder)
    data = write_image_folder(tmp_path / "images", generated_images(4, seed=1, size=24))
    info = hf_info(folder, "image-classification", labels=("red", "green", "blue"), inputs=("pixel_values",))
    with pytest.raises(InputError, match=r"yellow: class folder: label 'yellow' is not one of the model's labels"):
        open_dataset(DataSource(path=data), None, info)


# ---- the command line ---------------------------------------------------------------------------------------------


def test_text_data_for_a_model_that_is_not_a_hugging_face_folder(tmp_path):
    path = write_txt(tmp_path / "calib.txt", ["hello"])
    result = run_cli("quantize", DIGITS_MODEL, "--calibration", path, "-o", tmp_path / "out")
    assert result.returncode == 2, result.explain()
    assert "text data needs a Hugging Face model folder" in one_error_line(result)
    assert not (tmp_path / "out").exists()


def test_text_flags_fill_the_recipe(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    flags = [
        "--text-column",
        "sentence",
        "--text-pair-column",
        "other",
        "--label-column",
        "topic",
        "--max-length",
        "48",
    ]
    result = run_cli("quantize", DIGITS_MODEL, "-c", DIGITS_CALIBRATION, *flags, "--save-recipe", recipe, "--dry-run")
    assert result.returncode == 0, result.explain()
    data = yaml.safe_load(recipe.read_text())["data"]
    assert data["text_column"] == "sentence" and data["text_pair_column"] == "other"
    assert data["label_column"] == "topic" and data["max_length"] == 48


# ---- the command line on a real Hugging Face folder (needs the loader of branch hf-core) ---------------------------

HF_LOADER = importlib.util.find_spec("modelforge.model.huggingface.load") is not None
needs_loader = pytest.mark.skipif(not HF_LOADER, reason="the Hugging Face folder loader (branch hf-core) is absent")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    from hf_models import bert_text_classifier

    return bert_text_classifier(tmp_path_factory.mktemp("hf") / "classifier", count=120, epochs=1)


BAD_TEXT = {
    "empty.txt": (b"\n\n", "holds no text"),
    "latin1.txt": ("caf\xe9\n".encode("latin-1"), "line 1 is not UTF-8"),
    "column.jsonl": (b'{"sentence": "hi"}\n', "line 1 has no 'text' field (it has: sentence)"),
    "broken.jsonl": (b'{"text": "hi"}\n{"text": \n', "line 2 is not valid JSON"),
    "column.csv": (b"sentence,label\nhi,food\n", "no column 'text' (columns: sentence, label)"),
    "label.csv": (b"text,label\nhi,food\nho,politics\n", "line 3: label 'politics' is not one of the model's labels"),
}


@needs_loader
@pytest.mark.parametrize("name", sorted(BAD_TEXT))
def test_bad_text_exits_2_with_one_line_before_any_work(classifier, tmp_path, name):
    content, message = BAD_TEXT[name]
    bad_file = tmp_path / name
    bad_file.write_bytes(content)
    good = write_txt(tmp_path / "calib.txt", [s.text for s in SENTENCES[:8]])
    out = tmp_path / "out"
    result = run_cli("quantize", classifier, "--calibration", good, "--eval-data", bad_file, "-o", out)
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    assert str(bad_file) in line and message in line, line
    assert not out.exists()
