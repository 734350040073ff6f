"""Hugging Face folders in, Hugging Face folders out: real tiny BERT/ViT folders trained here (tests/hf_models.py).

The quantized output must be a Hugging Face folder that optimum's ORTModel and plain tokenizers + onnxruntime
load; both exporters (optimum, torch.onnx) must give an ONNX form that agrees with the PyTorch model; every bad
folder is one exit-2 line and writes nothing; a conversion that disagrees with the PyTorch model is exit 3.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import hf_models
import numpy as np
import pytest
from conftest import load_report, one_error_line, run_cli

pytest.importorskip("transformers", reason="the [hf] extra is not installed")
pytest.importorskip("torch", reason="the [torch] extra is not installed")

FAST = ("--threads", "1", "--no-speed-aware", "--no-default-gates")
COMPANIONS = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


@pytest.fixture(scope="module")
def text_folder(tmp_path_factory) -> Path:
    return hf_models.bert_text_classifier(tmp_path_factory.mktemp("hf") / "text-classifier")


@pytest.fixture(scope="module")
def embed_folder(tmp_path_factory) -> Path:
    return hf_models.sentence_embedder(tmp_path_factory.mktemp("hf") / "embedder")


@pytest.fixture(scope="module")
def text_data(tmp_path_factory, text_folder) -> tuple[Path, Path, list]:
    """calibration.npz, eval.npz (tokenized here with the folder's tokenizer) and the eval sentences."""
    folder = tmp_path_factory.mktemp("hf-data")
    calibration = hf_models.generated_sentences(64, seed=11)
    evaluation = hf_models.generated_sentences(64, seed=12)
    return (
        hf_models.write_npz(folder / "calibration.npz", text_folder, calibration),
        hf_models.write_npz(folder / "eval.npz", text_folder, evaluation),
        evaluation,
    )


def _copy(folder: Path, into: Path, without: tuple[str, ...] = ()) -> Path:
    shutil.copytree(folder, into, ignore=shutil.ignore_patterns(*without))
    return into


# ---- end to end ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, text_folder, text_data) -> Path:
    calibration, evaluation, _ = text_data
    out = tmp_path_factory.mktemp("hf-out") / "int8"
    result = run_cli("quantize", text_folder, "-c", calibration, "-e", evaluation, "-o", out, *FAST)
    assert result.returncode == 0, result.explain()
    return out


def test_quantized_folder_is_a_hugging_face_folder_with_the_inputs_files_unchanged(quantized, text_folder):
    for name in COMPANIONS:
        assert (quantized / name).read_bytes() == (text_folder / name).read_bytes(), name
    assert (quantized / "model.onnx").is_file()
    assert not (quantized / "model.safetensors").exists()  # nothing was pruned: the ONNX form is the model
    report = load_report(quantized)
    convert = next(s for s in report["stages"] if s["name"] == "convert")
    assert convert["input_format"] == "huggingface"
    check = convert["metrics"]["check"]
    assert check["max_abs_diff"] <= check["max_abs_tolerance"] and check["cosine"] >= 0.9999
    assert check["samples_from"] == "data"
    assert convert["metrics"]["exporter"].startswith("optimum")  # auto: optimum supports BERT
    assert report["summary"]["accuracy_result"] >= 0.9


def test_quantized_folder_runs_with_tokenizers_and_onnxruntime_alone(quantized, text_data):
    import onnxruntime as ort
    from tokenizers import Tokenizer

    sentences = text_data[2]
    tokenizer = Tokenizer.from_file(str(quantized / "tokenizer.json"))
    tokenizer.enable_padding()
    encoded = tokenizer.encode_batch([s.text for s in sentences])
    session = ort.InferenceSession(str(quantized / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {
        "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
    }
    logits = session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})[0]
    config = json.loads((quantized / "config.json").read_text())
    predicted = [config["id2label"][str(i)] for i in logits.argmax(axis=1)]
    accuracy = np.mean([p == s.label for p, s in zip(predicted, sentences, strict=True)])
    assert accuracy >= 0.9


def test_quantized_folder_loads_in_optimums_ortmodel(quantized, text_data):
    pytest.importorskip("optimum.onnxruntime", reason="optimum-onnx is not installed")
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer

    model = ORTModelForSequenceClassification.from_pretrained(quantized, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(quantized, local_files_only=True)
    sentences = text_data[2][:16]
    logits = model(**tokenizer([s.text for s in sentences], padding=True, return_tensors="pt")).logits
    predicted = [model.config.id2label[int(i)] for i in logits.argmax(dim=1)]
    assert np.mean([p == s.label for p, s in zip(predicted, sentences, strict=True)]) >= 0.9


def test_openvino_target_writes_the_ir_in_a_hugging_face_folder(tmp_path, text_folder, text_data):
    pytest.importorskip("openvino", reason="the [openvino] extra is not installed")
    calibration, evaluation, _ = text_data
    out = tmp_path / "ov"
    result = run_cli(
        "quantize", text_folder, "-c", calibration, "-e", evaluation, "-o", out, "--target", "openvino", *FAST
    )
    assert result.returncode == 0, result.explain()
    assert (out / "model.xml").is_file() and (out / "model.bin").is_file()
    for name in COMPANIONS:
        assert (out / name).read_bytes() == (text_folder / name).read_bytes(), name


# ---- conversion ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("exporter", ["optimum", "torch"])
def test_feature_extraction_exports_the_pooled_normalized_sentence_embedding(tmp_path, embed_folder, exporter):
    import onnxruntime as ort
    import torch

    from modelforge.convert.to_onnx import convert_to_onnx
    from modelforge.model.huggingface.load import load_hf_model
    from modelforge.model.huggingface.preprocess import load_tokenizer
    from modelforge.model.loader import load_model

    artifact = load_model(embed_folder)
    assert artifact.format == "huggingface" and artifact.huggingface.task == "feature-extraction"
    onnx_form, record = convert_to_onnx(artifact, tmp_path, 17, exporter=exporter)
    assert onnx_form.huggingface == artifact.huggingface
    assert record["exporter"].startswith("optimum" if exporter == "optimum" else "torch.onnx")
    assert "mean pooling, normalized" in record["pooling"]
    session = ort.InferenceSession(str(onnx_form.path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["sentence_embedding"]
    texts = [s.text for s in hf_models.generated_sentences(6, seed=5)]
    encoded = load_tokenizer(embed_folder)(texts, padding=True, return_tensors="np")
    names = [i.name for i in session.get_inputs()]
    embedding = session.run(None, {n: encoded[n].astype(np.int64) for n in names})[0]
    assert embedding.shape == (6, 32)
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)
    # What sentence-transformers computes: mean over the real tokens, then L2 normalisation.
    model = load_hf_model(artifact.huggingface)
    with torch.no_grad():
        states = model(**{k: torch.from_numpy(v) for k, v in encoded.items()}).last_hidden_state.numpy()
    mask = encoded["attention_mask"][..., None]
    expected = (states * mask).sum(1) / mask.sum(1)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(embedding, expected, atol=1e-4)


def test_token_classifier_converts_with_the_torch_exporter_and_dynamic_sequence(tmp_path):
    import onnxruntime as ort

    from modelforge.convert.to_onnx import convert_to_onnx
    from modelforge.model.loader import load_model

    folder = hf_models.bert_token_classifier(tmp_path / "tagger", count=80, epochs=1)
    artifact = load_model(folder)
    assert artifact.huggingface.task == "token-classification"
    assert artifact.huggingface.id2label == dict(enumerate(hf_models.TOKEN_TAGS))
    onnx_form, record = convert_to_onnx(artifact, tmp_path / "work", 17, exporter="torch")
    assert record["check"]["samples_from"].startswith("tokenizer-built probe")
    session = ort.InferenceSession(str(onnx_form.path), providers=["CPUExecutionProvider"])
    for length in (5, 23):  # other sequence lengths than the export traced with
        ones = np.ones((3, length), dtype=np.int64)
        feeds = {"input_ids": ones * 7, "attention_mask": ones, "token_type_ids": ones * 0}
        logits = session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})[0]
        assert logits.shape == (3, length, len(hf_models.TOKEN_TAGS))


def test_a_conversion_that_disagrees_with_the_pytorch_model_is_exit_3(tmp_path, text_folder):
    import torch

    from modelforge.convert.huggingface import check_hf_conversion, export_module, probe_feeds
    from modelforge.convert.to_onnx import convert_to_onnx
    from modelforge.errors import EXIT_PASS_FAILED, PassError
    from modelforge.model.huggingface.load import load_hf_model
    from modelforge.model.loader import load_model

    artifact = load_model(text_folder)
    onnx_form, _ = convert_to_onnx(artifact, tmp_path, 17, exporter="torch")
    other = load_hf_model(artifact.huggingface)
    with torch.no_grad():
        other.classifier.weight.add_(0.5)  # a deliberately different model than the one exported
    module, _ = export_module(other, artifact.huggingface)
    feeds, _ = probe_feeds(artifact.huggingface, other, None)
    with pytest.raises(PassError, match="disagrees with the PyTorch model") as caught:
        check_hf_conversion(module, onnx_form.path, feeds)
    assert caught.value.exit_code == EXIT_PASS_FAILED


# ---- bad folders --------------------------------------------------------------------------------------------------


def _refused(tmp_path: Path, folder: Path, calibration: Path, *flags: str) -> str:
    out = tmp_path / "out"
    result = run_cli("quantize", folder, "-c", calibration, "-o", out, *FAST, *flags)
    assert result.returncode == 2, result.explain()
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    return one_error_line(result)


def test_a_folder_without_weights_is_one_line(tmp_path, text_folder, text_data):
    folder = _copy(text_folder, tmp_path / "m", without=("*.safetensors",))
    assert "no model.safetensors" in _refused(tmp_path, folder, text_data[0])


def test_a_bin_only_folder_is_refused_never_unpickled(tmp_path, text_folder, text_data):
    folder = _copy(text_folder, tmp_path / "m", without=("*.safetensors",))
    (folder / "pytorch_model.bin").write_bytes(b"not even a pickle: it must never be opened")
    line = _refused(tmp_path, folder, text_data[0])
    assert "pytorch_model.bin" in line and "never unpickled" in line and "safe_serialization" in line


def test_remote_code_is_refused_unless_trusted_on_the_command_line(tmp_path, text_folder, text_data):
    folder = _copy(text_folder, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    line = _refused(tmp_path, folder, text_data[0])
    assert "auto_map" in line and "--trust-remote-code" in line


def test_an_unknown_model_type_is_refused_as_remote_code(tmp_path, text_folder, text_data):
    folder = _copy(text_folder, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "never-heard-of-it"
    (folder / "config.json").write_text(json.dumps(config))
    assert "--trust-remote-code" in _refused(tmp_path, folder, text_data[0])


def test_a_missing_tokenizer_is_one_line(tmp_path, text_folder, text_data):
    folder = _copy(text_folder, tmp_path / "m", without=("tokenizer.json", "vocab.txt"))
    assert "no tokenizer" in _refused(tmp_path, folder, text_data[0])


def test_a_linked_file_in_the_folder_is_refused(tmp_path, text_folder, text_data):
    folder = _copy(text_folder, tmp_path / "m", without=("vocab.txt",))
    (folder / "vocab.txt").symlink_to(text_folder / "vocab.txt")
    assert "symbolic link" in _refused(tmp_path, folder, text_data[0])


def test_a_task_the_weights_do_not_hold_lists_the_supported_tasks(tmp_path, text_folder, text_data):
    line = _refused(tmp_path, text_folder, text_data[0], "--task", "token-classification")
    assert "supported tasks: text-classification, token-classification" in line


def test_trust_remote_code_in_a_recipe_file_needs_the_command_line(tmp_path, text_folder, text_data):
    from conftest import write_recipe

    recipe = write_recipe(
        tmp_path / "r.yaml",
        {
            "version": 1,
            "model": {"path": str(text_folder), "trust_remote_code": True},
            "data": {"calibration": str(text_data[0])},
            "passes": [{"name": "quantize"}],
            "output": {"dir": str(tmp_path / "out")},
        },
    )
    result = run_cli("run", recipe)
    assert result.returncode == 2, result.explain()
    assert "model.trust_remote_code" in one_error_line(result)


# ---- recognising the task -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("architectures", "task"),
    [
        (["BertForSequenceClassification"], "text-classification"),
        (["RobertaForTokenClassification"], "token-classification"),
        (["ViTForImageClassification"], "image-classification"),
        (["BertModel"], "feature-extraction"),
        (["BertForMaskedLM"], None),
        (None, None),
    ],
)
def test_task_from_architectures(tmp_path, architectures, task):
    from modelforge.model.huggingface.task import task_from_config

    config = {"model_type": "bert"} | ({"architectures": architectures} if architectures else {})
    assert task_from_config(tmp_path, config) == task


def test_a_modules_json_makes_a_feature_extraction_folder(tmp_path):
    from modelforge.model.huggingface.task import resolve_task

    (tmp_path / "modules.json").write_text("[]")
    assert resolve_task(tmp_path, {"architectures": ["BertModel"]}, None) == "feature-extraction"


def test_an_architecture_without_a_supported_task_lists_them(tmp_path):
    from modelforge.errors import InputError
    from modelforge.model.huggingface.task import resolve_task

    with pytest.raises(InputError, match="BertForMaskedLM.*supported tasks: text-classification"):
        resolve_task(tmp_path, {"architectures": ["BertForMaskedLM"]}, None)


def test_detect_format_names_a_folder_with_config_json(tmp_path):
    from modelforge.model.loader import detect_format

    (tmp_path / "config.json").write_text("{}")
    assert detect_format(tmp_path) == "huggingface"


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/passwd", "model-00002-of-00002.safetensors"])
def test_a_shard_index_naming_a_path_or_a_missing_file_is_refused(tmp_path, shard):
    from modelforge.errors import InputError
    from modelforge.model.huggingface.folder import check_weights

    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"{}")
    index = {"weight_map": {"a.weight": "model-00001-of-00002.safetensors", "b.weight": shard}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(InputError, match="model.safetensors.index.json: shard"):
        check_weights(tmp_path)


def test_the_writer_copies_the_allow_listed_files_and_keeps_a_pruned_models_own_config(tmp_path):
    from conftest import DIGITS_MODEL

    from modelforge.model.artifact import ModelArtifact
    from modelforge.model.huggingface.info import HFInfo
    from modelforge.runtimes.writers import write_artifact

    original = tmp_path / "original"
    (original / "1_Pooling").mkdir(parents=True)
    for name, text in {"config.json": '{"layers": 4}', "tokenizer.json": "{}", "vocab.txt": "a\n"}.items():
        (original / name).write_text(text)
    (original / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    (original / "notes.py").write_text("never copied: not on the list")
    pruned = tmp_path / "pruned"
    pruned.mkdir()
    (pruned / "config.json").write_text('{"layers": 2}')
    (pruned / "model.safetensors").write_bytes(b"weights")
    info = HFInfo(original, "feature-extraction", "bert", {}, ("input_ids", "attention_mask"), 64)
    out = tmp_path / "out"
    out.mkdir()
    write_artifact(ModelArtifact(DIGITS_MODEL, "onnx", huggingface=info), out)  # the runner's order
    write_artifact(ModelArtifact(pruned, "huggingface", huggingface=info), out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "1_Pooling/config.json",
        "config.json",
        "model.onnx",
        "model.safetensors",
        "tokenizer.json",
        "vocab.txt",
    ]
    assert (out / "config.json").read_text() == '{"layers": 2}'
    assert (out / "vocab.txt").read_bytes() == (original / "vocab.txt").read_bytes()


def test_task_on_a_model_that_is_not_a_folder_is_refused():
    from conftest import DIGITS_MODEL

    from modelforge.errors import InputError
    from modelforge.model.loader import load_model

    with pytest.raises(InputError, match="applies to Hugging Face folders only"):
        load_model(DIGITS_MODEL, task="text-classification")


def test_the_data_writers_write_what_the_readers_expect(tmp_path):
    import csv

    sentences = hf_models.generated_sentences(8, seed=1)
    assert {s.label for s in sentences} == set(hf_models.CLASSES)
    assert all(len(s.words) == len(s.tags) and sum(t != "O" for t in s.tags) == 1 for s in sentences)
    txt = hf_models.write_txt(tmp_path / "c.txt", [s.text for s in sentences])
    assert txt.read_text().splitlines() == [s.text for s in sentences]
    jsonl = hf_models.write_jsonl(tmp_path / "t.jsonl", hf_models.token_rows(sentences))
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert rows[0] == {"text": sentences[0].text, "label": list(sentences[0].tags)}
    pairs = hf_models.write_csv(tmp_path / "p.csv", hf_models.pair_rows(hf_models.sentence_pairs(6)))
    with pairs.open() as f:
        read = list(csv.DictReader(f))
    assert list(read[0]) == ["text", "text_pair", "score"] and len(read) == 6
    images = hf_models.write_image_folder(tmp_path / "images", hf_models.generated_images(8, seed=2))
    assert sorted(p.name for p in images.iterdir()) == sorted(hf_models.IMAGE_CLASSES)
    assert len(list(images.rglob("*.png"))) == 8
