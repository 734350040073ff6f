"""`modelforge distill` and `modelforge prune` on a Hugging Face folder, from text files, as a user runs them: the
student (the teacher with fewer layers) and the pruned model come out as Hugging Face folders (their own
config.json, safetensors, the tokenizer files unchanged) that transformers reloads offline, with the accuracy of
both sides in the report (engines: tests/test_huggingface_compress.py)."""

from __future__ import annotations

import json
from pathlib import Path

import hf_models
import pytest
from conftest import load_report, run_cli

pytest.importorskip("transformers")
pytest.importorskip("torch_pruning")

FAST = ("--threads", "1", "--epochs", "4", "--batch-size", "16", "--lr", "1e-3")


@pytest.fixture(scope="module")
def folder_and_data(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("hf-cli")
    folder = hf_models.bert_text_classifier(root / "classifier", layers=2)
    rows = hf_models.classification_rows
    train = hf_models.write_jsonl(root / "train.jsonl", rows(hf_models.generated_sentences(160, seed=21)))
    evaluation = hf_models.write_jsonl(root / "eval.jsonl", rows(hf_models.generated_sentences(80, seed=22)))
    return folder, train, evaluation


def reload_logits(folder: Path, teacher_folder: Path) -> tuple:
    from modelforge.model.huggingface.offline import import_transformers

    transformers = import_transformers()
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert tokenizer.get_vocab() == transformers.AutoTokenizer.from_pretrained(teacher_folder).get_vocab()
    return model, tokenizer


def test_distill_a_hugging_face_folder_into_fewer_layers(tmp_path, folder_and_data):
    folder, train, evaluation = folder_and_data
    out = tmp_path / "student"
    result = run_cli("distill", "--teacher", folder, "--student-layers", "1", "--train-data", train, "-e", evaluation,
                     "-o", out, *FAST)  # fmt: skip
    assert result.returncode == 0, result.explain()
    config = json.loads((out / "config.json").read_text())
    assert (
        config["num_hidden_layers"] == 1
        and config["id2label"] == json.loads((folder / "config.json").read_text())["id2label"]
    )
    assert (out / "model.safetensors").is_file() and (out / "model.onnx").is_file()
    assert (out / "vocab.txt").read_bytes() == (folder / "vocab.txt").read_bytes()
    model, _ = reload_logits(out, folder)
    assert len(model.bert.encoder.layer) == 1
    summary = load_report(out)["summary"]
    assert summary["accuracy_baseline"] is not None and summary["accuracy_result"] is not None


def test_prune_a_hugging_face_folder_by_heads_and_ffn_neurons(tmp_path, folder_and_data):
    folder, train, evaluation = folder_and_data
    out = tmp_path / "pruned"
    result = run_cli("prune", folder, "--sparsity", "0.5", "--train-data", train, "-e", evaluation, "-o", out,
                     "--epochs", "1", "--batch-size", "16", "--threads", "1")  # fmt: skip
    assert result.returncode == 0, result.explain()
    config = json.loads((out / "config.json").read_text())
    assert config["intermediate_size"] < json.loads((folder / "config.json").read_text())["intermediate_size"]
    assert config.get("pruned_heads")
    model, _ = reload_logits(out, folder)
    assert model.bert.encoder.layer[0].intermediate.dense.out_features == config["intermediate_size"]
    assert load_report(out)["summary"]["accuracy_result"] is not None


def test_student_layers_on_a_file_model_is_refused(tmp_path):
    out = tmp_path / "out"
    digits = Path(__file__).resolve().parent.parent / "calibration" / "digits"
    result = run_cli("distill", "--teacher", digits / "model.onnx", "--student-layers", "2",
                     "--train-data", digits / "calibration.npz", "-o", out)  # fmt: skip
    assert result.returncode == 2, result.explain()
    assert not out.exists()
