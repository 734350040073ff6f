"""Hugging Face encoders distilled the DistilBERT way and pruned by heads and FFN neurons: a tiny BERT trained here
on a generated token task (tests/hf_token_task.py) is distilled into half its layers (the student keeps >= 97% of
the teacher's held-out accuracy; hints map each student layer to the teacher layer it was copied from), pruned,
and both results reload with `from_pretrained(local_files_only=True)` to the same logits. Architectures the
engines cannot rewrite are refused with exit 2 and the reason."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("torch_pruning")

import hf_token_task as task  # noqa: E402

from modelforge.distillation.config import DistillConfig  # noqa: E402
from modelforge.distillation.huggingface import (  # noqa: E402
    hint_pairs,
    kept_layers,
    layer_dropped_student,
    run_hf_distillation,
)
from modelforge.errors import EXIT_BAD_INPUT, InputError  # noqa: E402
from modelforge.progress import Progress  # noqa: E402
from modelforge.pruning.config import PruneConfig  # noqa: E402
from modelforge.pruning.hf_encoder import logits_module  # noqa: E402
from modelforge.pruning.huggingface import run_hf_pruning  # noqa: E402
from modelforge.training import TrainConfig  # noqa: E402

TEACHER_LAYERS = 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The trained teacher and the data files: train, eval (selects the best epoch), test (never seen)."""
    folder = tmp_path_factory.mktemp("hf-compress")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same reductions on any machine
    try:
        train, eval_, test = (task.token_data(n, seed) for n, seed in ((1200, 0), (300, 1), (600, 2)))
        torch.manual_seed(0)
        teacher = task.tiny_bert(layers=TEACHER_LAYERS)
        task.fit(teacher, *train, epochs=10, lr=3e-3, folder=folder / "teacher-ckpt")
    finally:
        torch.set_num_threads(threads)
    files = {
        "train": task.write_npz(folder / "train.npz", *train),
        "eval": task.write_npz(folder / "eval.npz", *eval_),
    }
    assert task.accuracy(teacher, *test) > 0.9  # the task is learnt: what the student keeps means something
    return {"teacher": teacher, "files": files, "test": test, "eval": eval_, "folder": folder}


def _same_logits(folder, model, arrays) -> float:
    again = type(model).from_pretrained(str(folder), local_files_only=True).eval()
    inputs = tuple(torch.from_numpy(arrays[n][:64]) for n in task.INPUT_NAMES)
    with torch.no_grad():
        mine, theirs = (logits_module(m.eval(), task.INPUT_NAMES)(*inputs) for m in (again, model))
        return float((mine - theirs).abs().max())


def test_kept_layers_spread_evenly_or_as_listed():
    assert kept_layers(12, 6) == [0, 2, 4, 7, 9, 11]  # DistilBERT's choice
    assert kept_layers(4, 2) == [0, 3]
    assert kept_layers(4, 1) == [0]
    assert kept_layers(4, [1, 2]) == [1, 2]
    for count, spec, words in ((4, 4, "must keep fewer"), (4, [0, 4], "layers 0..3"), (4, [2, 1], "ascending"),
                               (2, [0, 1], "keeps every layer")):  # fmt: skip
        with pytest.raises(InputError, match=words):
            kept_layers(count, spec)


def test_student_config_is_one_student_among_the_others():
    assert DistillConfig(student_layers=6).student_layers == 6
    assert DistillConfig(student_layers=[0, 3]).student_layers == [0, 3]
    for bad in ({"student_layers": 6, "student_from_teacher": 0.5}, {"student_layers": 0}, {"student_layers": []},
                {"student_layers": [1, 1]}):  # fmt: skip
        with pytest.raises(ValueError):
            DistillConfig(**bad)


def test_transformers_fine_tune_at_a_small_learning_rate_unless_one_is_set():
    from modelforge.pruning.hf_encoder import TRANSFORMER_LR, transformer_train

    assert transformer_train(DistillConfig(student_layers=2)).lr == TRANSFORMER_LR  # the CNN default (3e-3) replaced
    assert transformer_train(DistillConfig(student_layers=2, train={"epochs": 2})).lr == TRANSFORMER_LR
    assert transformer_train(DistillConfig(student_layers=2, train={"lr": 1e-3})).lr == 1e-3
    assert transformer_train(PruneConfig()).lr == TRANSFORMER_LR
    assert transformer_train(PruneConfig(train={"lr": 2e-4, "epochs": 1})).lr == 2e-4


def test_student_copies_the_kept_layers_and_hints_map_to_them():
    torch.manual_seed(0)
    teacher = task.tiny_bert(layers=TEACHER_LAYERS).eval()
    student = layer_dropped_student(teacher, [0, 3]).eval()
    assert student.config.num_hidden_layers == 2 and teacher.config.num_hidden_layers == TEACHER_LAYERS
    for i, t in enumerate([0, 3]):
        mine, theirs = student.bert.encoder.layer[i].state_dict(), teacher.bert.encoder.layer[t].state_dict()
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)
    assert torch.equal(student.bert.pooler.dense.weight, teacher.bert.pooler.dense.weight)
    assert student.bert.encoder.layer[0] is not teacher.bert.encoder.layer[0]  # a copy: training leaves the teacher

    pairs = hint_pairs("bert.encoder.layer", [0, 3])
    teacher_w, student_w = logits_module(teacher, task.INPUT_NAMES), logits_module(student, task.INPUT_NAMES)
    t_named, s_named = dict(teacher_w.named_modules()), dict(student_w.named_modules())
    assert [(p.student, p.teacher) for p in pairs] == [
        ("model.bert.encoder.layer.0", "model.bert.encoder.layer.0"),
        ("model.bert.encoder.layer.1", "model.bert.encoder.layer.3"),
    ]
    assert s_named[pairs[1].student] is student.bert.encoder.layer[1]
    assert t_named[pairs[1].teacher] is teacher.bert.encoder.layer[3]
    # the first pair starts identical: same embeddings, same layer, same input
    arrays, _ = task.token_data(8, seed=5)
    with torch.no_grad():
        out_t = teacher(**{n: torch.from_numpy(a) for n, a in arrays.items()}, output_hidden_states=True)
        out_s = student(**{n: torch.from_numpy(a) for n, a in arrays.items()}, output_hidden_states=True)
    assert torch.allclose(out_s.hidden_states[1], out_t.hidden_states[1])
    assert len(out_s.hidden_states) == 3


def test_distilled_half_depth_student_keeps_97_percent_and_reloads(setup, tmp_path):
    """Half the layers, the middle two: on this task the teacher's first and last layers alone already classify
    every sample, so the student keeps layers 1 and 2, which start far below the teacher (measured 0.79 against
    1.0): the distillation, not the choice of layers, brings it back."""
    teacher = copy.deepcopy(setup["teacher"])
    files, test = setup["files"], setup["test"]
    kept = [1, 2]
    teacher_accuracy = task.accuracy(setup["teacher"], *test)
    assert task.accuracy(layer_dropped_student(teacher, kept).eval(), *test) < 0.9 * teacher_accuracy
    config = DistillConfig(
        student_layers=kept,
        train=TrainConfig(epochs=4, batch_size=32, lr=1e-3, device="cpu"),
        checkpoint_dir=tmp_path / "ckpt",
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = run_hf_distillation(
            teacher,
            config,
            train=task.bound(files["train"]),
            evaluation=task.bound(files["eval"]),
            seed=0,
            workdir=tmp_path / "work",
            checkpoints=tmp_path / "ckpt",
            progress=Progress(),
        )
    finally:
        torch.set_num_threads(threads)
    figures = result.figures
    assert figures["student_layers"] == kept
    assert [(h["teacher"], h["student"]) for h in figures["hints"]] == [
        ("model.bert.encoder.layer.1", "model.bert.encoder.layer.0"),
        ("model.bert.encoder.layer.2", "model.bert.encoder.layer.1"),
    ]
    assert figures["teacher_cache"]["enabled"] is False  # hints need the teacher's features every batch
    assert figures["params_ratio"] < 0.9 and figures["macs_ratio"] < 0.6

    folder = result.path
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    student = transformers.BertForSequenceClassification.from_pretrained(str(folder), local_files_only=True).eval()
    assert student.config.num_hidden_layers == 2 and len(student.bert.encoder.layer) == 2
    student_accuracy = task.accuracy(student, *test)
    assert student_accuracy >= 0.97 * teacher_accuracy, (student_accuracy, teacher_accuracy)
    assert figures["reload_max_abs_diff"] <= 1e-5  # the trained student in memory against its saved folder
    assert task.accuracy(student, *setup["eval"]) == figures["models"]["student"]["accuracy"]
    for name, value in setup["teacher"].state_dict().items():  # the teacher was never trained
        assert torch.equal(value, teacher.state_dict()[name])


def test_pruned_heads_and_ffn_reload_to_the_same_logits(setup, tmp_path):
    model = copy.deepcopy(setup["teacher"])
    files = setup["files"]
    config = PruneConfig(sparsity=0.5, train=TrainConfig(epochs=2, batch_size=32, lr=1e-3, device="cpu"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = run_hf_pruning(
            model,
            config,
            train=task.bound(files["train"]),
            evaluation=task.bound(files["eval"]),
            seed=0,
            workdir=tmp_path / "work",
            checkpoints=tmp_path / "ckpt",
            progress=Progress(),
        )
    finally:
        torch.set_num_threads(threads)
    figures = result.figures
    assert all(row["after"] == {"heads": 2, "ffn": 32} for row in figures["layers"]), figures["layers"]
    assert figures["macs_ratio"] < 0.8 and figures["reload_max_abs_diff"] <= 1e-4
    saved = transformers.BertConfig.from_pretrained(str(result.path), local_files_only=True)
    assert saved.intermediate_size == 32 and saved.num_attention_heads == 4
    assert {k: len(v) for k, v in saved.pruned_heads.items()} == {i: 2 for i in range(TEACHER_LAYERS)}
    assert figures["heads_removed"] == {str(k): sorted(v) for k, v in saved.pruned_heads.items()}
    reloaded = transformers.BertForSequenceClassification.from_pretrained(str(result.path), local_files_only=True)
    assert reloaded.bert.encoder.layer[0].attention.self.query.out_features == 2 * 8  # 2 heads of 8 dims
    assert _same_logits(result.path, model, setup["test"][0]) <= 1e-5
    assert task.accuracy(reloaded.eval(), *setup["test"]) >= 0.9 * task.accuracy(setup["teacher"], *setup["test"])


def _distilbert():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(vocab_size=96, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=32)
    return DistilBertForSequenceClassification(config)


def test_unsupported_architectures_exit_2_with_the_reason(setup, tmp_path):
    files = setup["files"]
    common = {"train": task.bound(files["train"]), "evaluation": None, "seed": 0, "progress": Progress()}
    folders = {"workdir": tmp_path / "w", "checkpoints": tmp_path / "c"}
    with pytest.raises(InputError) as caught:
        run_hf_distillation(_distilbert(), DistillConfig(student_layers=1), **common, **folders)
    assert caught.value.exit_code == EXIT_BAD_INPUT
    assert "distilbert" in caught.value.one_line() and "encoder.layer" in caught.value.one_line()
    with pytest.raises(InputError, match="distilbert") as caught:
        run_hf_pruning(_distilbert(), PruneConfig(), **common, **folders)
    assert caught.value.exit_code == EXIT_BAD_INPUT

    tagger = transformers.BertForTokenClassification(task.tiny_bert().config)
    with pytest.raises(InputError, match="sequence-classification"):
        run_hf_distillation(tagger, DistillConfig(student_layers=2), **common, **folders)
    with pytest.raises(InputError, match="bn-scale"):
        run_hf_pruning(task.tiny_bert(), PruneConfig(importance="bn-scale"), **common, **folders)
    assert not (tmp_path / "w").exists()  # refused before anything is written


def test_student_layers_on_a_plain_torch_teacher_is_refused():
    from modelforge.distillation.students import load_student

    with pytest.raises(InputError, match="Hugging Face"):
        load_student(DistillConfig(student_layers=2), torch.nn.Linear(2, 2), (torch.zeros(1, 2),))


def test_labels_are_what_the_task_says():
    arrays, labels = task.token_data(50, seed=3)
    tokens = arrays["input_ids"]
    found = [int(np.flatnonzero(np.isin(task.CLASS_TOKENS, row).reshape(task.CLASSES, 2).any(1))[0]) for row in tokens]
    assert found == labels.tolist()


def test_check_source_pairs_student_layers_with_hugging_face_teachers(tmp_path):
    from modelforge.distillation.run import check_source

    with pytest.raises(InputError, match="fewer layers") as caught:
        check_source(tmp_path, "huggingface", {})
    assert "--student-layers" in caught.value.one_line()
    with pytest.raises(InputError, match="Hugging Face folder"):
        check_source(tmp_path / "model.pt2", "torch-export", {"student_layers": 6})
    check_source(tmp_path, "huggingface", {"student_layers": 6})  # accepted


def test_a_pruned_teacher_keeps_its_pruned_heads_on_the_kept_layers(tmp_path):
    torch.manual_seed(0)
    teacher = task.tiny_bert(layers=TEACHER_LAYERS).eval()
    teacher.prune_heads({1: [2], 3: [0, 1]})
    student = layer_dropped_student(teacher, [0, 3]).eval()
    assert student.config.pruned_heads == {1: [0, 1]}  # teacher layer 3 is student layer 1; layer 1 was dropped
    student.save_pretrained(str(tmp_path / "s"), safe_serialization=True)
    arrays, _ = task.token_data(4, seed=6)
    assert _same_logits(tmp_path / "s", student, arrays) <= 1e-6


def test_roberta_layout_is_distilled_and_pruned_alike(tmp_path):
    """RoBERTa names its modules as BERT does (roberta.encoder.layer): both engines rewrite it and it reloads."""
    torch.manual_seed(0)
    config = transformers.RobertaConfig(vocab_size=96, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                                        intermediate_size=64, max_position_embeddings=40, num_labels=task.CLASSES,
                                        type_vocab_size=1, pad_token_id=0)  # fmt: skip
    model = transformers.RobertaForSequenceClassification(config).eval()
    student = layer_dropped_student(model, [0, 3]).eval()
    student.save_pretrained(str(tmp_path / "student"), safe_serialization=True)
    arrays, labels = task.token_data(64, seed=7)
    assert _same_logits(tmp_path / "student", student, arrays) <= 1e-6
    data = task.write_npz(tmp_path / "data.npz", arrays, labels)
    result = run_hf_pruning(
        model,
        PruneConfig(sparsity=0.5, train=TrainConfig(epochs=0, device="cpu")),
        train=task.bound(data),
        evaluation=None,
        seed=0,
        workdir=tmp_path / "work",
        checkpoints=tmp_path / "ckpt",
        progress=Progress(),
    )
    assert all(row["after"] == {"heads": 2, "ffn": 32} for row in result.figures["layers"])
    assert _same_logits(result.path, model, arrays) <= 1e-5
