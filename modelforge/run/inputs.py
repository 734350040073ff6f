"""A run's inputs: the model loaded (and converted to ONNX once), the data bound to it and checked, the evaluation
samples chosen (eval data, or samples held back from calibration or training data).

Each data file is opened once per run (`RunData`): the conversion's example inputs, the binding to the model and
every stage's cache key read the same opened data set, and each file is hashed once (stage keys, manifest).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from modelforge.data import BoundDataset, Dataset, bind, open_dataset
from modelforge.data.sources import IGNORE_LABEL
from modelforge.errors import InputError
from modelforge.model.artifact import ModelArtifact
from modelforge.model.huggingface.info import HFInfo
from modelforge.passes import get_pass
from modelforge.recipe.schema import DataSource, Recipe
from modelforge.run.gates import check_gates_measurable
from modelforge.runtimes.onnxruntime import fixed_batch_size

# Without eval data, this share of the calibration samples is held back to compare the two models.
HELD_BACK_SHARE = 0.2
HELD_BACK_MAX = 256
# Said once on the terminal and kept in the report when a run that needs no data (an export) was given none.
NO_DATA_NOTE = "no data given: evaluation skipped (pass --eval-data to compare the result with the original)"


class RunData:
    """The run's data files, each opened once and hashed once (the same file named twice is one data set)."""

    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self._opened: dict[tuple[Path, str], Dataset] = {}
        self._bound: dict[tuple[Path, str], BoundDataset] = {}
        self._hashes: dict[Path, str] = {}
        # Set once the model is loaded: its tokenizer or image processor prepares text and image data.
        self.huggingface: HFInfo | None = None

    @staticmethod
    def _key(source: DataSource) -> tuple[Path, str]:
        preprocessing = source.preprocessing.model_dump_json() if source.preprocessing is not None else ""
        return source.path, preprocessing

    def open(self, source: DataSource, input_shape: tuple | None = None) -> Dataset:
        """The data set of a source. `input_shape` only sizes an image folder without preprocessing.size, which
        cannot have been opened before without it (opening it raises), so a data set opened once serves all."""
        key = self._key(source)
        if key not in self._opened:
            self._opened[key] = open_dataset(source, input_shape, self.huggingface, self.recipe.data)
        return self._opened[key]

    def bound(self, source: DataSource | None, model: ModelArtifact, role: str) -> BoundDataset | None:
        """The source bound to the model's inputs (checked: names, shapes, dtypes, finite values)."""
        if source is None:
            return None
        key = self._key(source)
        if key not in self._bound:  # the same file, bound again, would pass or fail the same checks
            first = model.io.inputs[0].shape if model.io and model.io.inputs else None
            self._bound[key] = bind(self.open(source, first), model.io, role)
        return self._bound[key]

    def examples(self, count: int) -> dict | None:
        """Example inputs a conversion traces with (and checks on): the first samples of the first data given."""
        from modelforge.data.examples import example_inputs

        data = self.recipe.data
        source = data.calibration or data.eval_data or data.train
        return example_inputs(self.open(source), count) if source is not None else None

    def sha256(self, path: Path) -> str:
        from modelforge.manifest import data_sha256

        if path not in self._hashes:
            self._hashes[path] = data_sha256(path)
        return self._hashes[path]

    def fingerprint(self, data: BoundDataset | None) -> str | None:
        """Content of the samples a pass can see: file bytes, the window, and how the file becomes arrays (image
        preprocessing; the tokenizer, columns and length of text)."""
        if data is None:
            return None
        return f"{self.sha256(data.dataset.path)}:{data.start}:{data.num_samples}:{data.dataset.settings_key()}"

    def hashes(self) -> dict[str, str]:
        """The manifest's data hashes, by role."""
        data = self.recipe.data
        roles = (("calibration", data.calibration), ("eval_data", data.eval_data), ("train", data.train))
        return {role: self.sha256(source.path) for role, source in roles if source is not None}


@dataclass
class Inputs:
    """Everything a run needs before its first pass: the models, the bound data, the stages so far."""

    source: ModelArtifact
    baseline: ModelArtifact  # the ONNX form of the source: what results are compared with
    calibration: BoundDataset | None
    eval_data: BoundDataset | None  # None: a run without data (an export), evaluation skipped
    eval_note: str
    stages: list[dict[str, Any]]
    train: BoundDataset | None
    data: RunData = field(repr=False)  # the opened data files: later conversions and stage keys read them


def convert(
    artifact: ModelArtifact, folder: Path, recipe: Recipe, data: RunData
) -> tuple[ModelArtifact, dict[str, Any]]:
    """Export a PyTorch- or TensorFlow-form artifact to ONNX; returns it with the `convert` stage record.

    The same file converted the same way earlier in this process (optimize's search, then its winner's run) is
    copied from that conversion, not exported again: an export takes seconds, a copy nothing."""
    from modelforge.convert.to_onnx import convert_to_onnx

    started = time.perf_counter()
    folder.mkdir()
    from modelforge.convert.check import CHECK_SAMPLES  # TF and Hugging Face conversions are checked on samples

    count = CHECK_SAMPLES if artifact.format in ("keras", "savedmodel", "huggingface") else 1
    model = recipe.model
    examples = data.examples(count)
    key = _conversion_key(artifact, model, examples)
    earlier = _CONVERTED.get(key) if key is not None else None
    if earlier is not None and earlier[0].path.is_file():
        before, info, where = earlier
        shutil.copytree(where, folder, dirs_exist_ok=True)
        converted, info = replace(before, path=folder / before.path.relative_to(where)), dict(info)
    else:
        converted, info = convert_to_onnx(
            artifact, folder, model.opset, examples, model.exporter, model.trust_remote_code
        )
        if key is not None and converted.path.is_relative_to(folder):
            _CONVERTED[key] = (converted, dict(info), folder)
    if artifact.huggingface is not None and converted.huggingface is None:  # every derived form keeps it
        converted = replace(converted, huggingface=artifact.huggingface)
    stage = {
        "name": "convert",
        "pass": "convert",
        "seconds": time.perf_counter() - started,
        "input_format": artifact.format,
        "output_format": "onnx",
        "metrics": info,
    }
    return converted, stage


# (file sha256, format, opset, exporter, examples digest) -> an earlier conversion in this process
_CONVERTED: dict[tuple, tuple[ModelArtifact, dict[str, Any], Path]] = {}


def _conversion_key(artifact: ModelArtifact, model: Any, examples: dict | None) -> tuple | None:
    """What decides a conversion: the file's bytes, how it is exported, the example inputs it traces with.
    Folders (SavedModel, Hugging Face) and factory-built modules (code, not bytes) are never reused."""
    import hashlib

    from modelforge.manifest import file_sha256

    if artifact.format not in ("torch-export", "keras") or not artifact.path.is_file():
        return None
    digest = hashlib.sha256()
    for name, value in sorted((examples or {}).items()):
        digest.update(name.encode() + b"\0" + np.ascontiguousarray(value).tobytes() + str(value.shape).encode())
    return (file_sha256(artifact.path), artifact.format, model.opset, model.exporter, digest.hexdigest())


def prepare_inputs(recipe: Recipe, workdir: Path, import_code: bool = True) -> Inputs:
    """Load (and convert once) the model, bind and validate the data, pick the evaluation samples.
    `import_code=False` (a dry run): custom metrics are not imported."""
    from modelforge.model.loader import load_model

    data = RunData(recipe)
    stages: list[dict[str, Any]] = []
    model = recipe.model
    source = load_model(
        model.path,
        model.format,
        factory=model.factory,
        trust_code=model.trust_model_code,
        task=model.task,
        trust_remote_code=model.trust_remote_code,
    )
    data.huggingface = source.huggingface
    if source.huggingface is not None:  # text and image data are read and checked now, not after the conversion
        for given in (recipe.data.calibration, recipe.data.eval_data, recipe.data.train):
            if given is not None:
                data.open(given)
    baseline = source
    if source.format != "onnx":
        baseline, stage = convert(source, workdir / "00-convert", recipe, data)
        stages.append(stage)
        if source.io is None and source.format in ("keras", "savedmodel", "huggingface"):  # as the ONNX form has it
            source.io = baseline.io

    train = data.bound(recipe.data.train, baseline, "training data")
    if train is not None:
        if train.labels() is None:
            raise InputError(
                f"training data {recipe.data.train.path} has no labels",
                hint="add a `labels` array of class ids to the .npz, a label column to text data, or use an image "
                "folder with one sub-folder per class",
            )
        _check_labels(train, baseline)
    calibration = data.bound(recipe.data.calibration, baseline, "calibration data")
    eval_data = data.bound(recipe.data.eval_data, baseline, "eval data")
    check_gates_measurable(recipe, eval_data, import_code)
    if eval_data is not None:
        eval_note = f"eval data {recipe.data.eval_data.path}"
    elif calibration is not None and calibration.num_samples >= 2:
        calibration, eval_data, held = _hold_back(calibration)
        eval_note = f"{held} held-back calibration samples of {recipe.data.calibration.path} (no eval data given)"
    elif calibration is not None:
        eval_data = calibration
        eval_note = f"the calibration sample of {recipe.data.calibration.path} (no eval data given)"
    elif train is not None and train.num_samples >= 2:
        if Path(recipe.data.train.path).is_dir():  # sorted by class: its last 20% would be the last classes only
            raise InputError("training images need --eval-data to evaluate on", hint="pass --eval-data FOLDER")
        train, eval_data, held = _hold_back(train)
        eval_note = f"{held} held-back training samples of {recipe.data.train.path} (no eval data given)"
    elif recipe.passes and all(get_pass(spec.name).runs_without_data for spec in recipe.passes):
        eval_note = NO_DATA_NOTE  # an export of a model as it is: nothing to compare it with
        return Inputs(source, baseline, calibration, None, eval_note, stages, train, data)
    else:
        raise InputError("nothing to evaluate on", hint="pass --eval-data or --calibration")
    if recipe.data.eval_samples:
        eval_data = eval_data.window(0, min(recipe.data.eval_samples, eval_data.num_samples))
    _check_labels(eval_data, baseline)
    fixed = fixed_batch_size(baseline.io)
    if fixed is not None and fixed > 1:
        calibration = whole_batches(calibration, fixed, "calibration data")
        whole = whole_batches(eval_data, fixed, "eval data")
        if whole.num_samples < eval_data.num_samples:
            eval_note += (
                f" (last {eval_data.num_samples - whole.num_samples} dropped: the model's batch is fixed at {fixed})"
            )
        eval_data = whole
    return Inputs(source, baseline, calibration, eval_data, eval_note, stages, train, data)


def _hold_back(data: BoundDataset) -> tuple[BoundDataset, BoundDataset, int]:
    """Split off the last samples to evaluate on: (kept, held back, how many were held back)."""
    held = min(max(1, int(data.num_samples * HELD_BACK_SHARE)), HELD_BACK_MAX)
    return data.window(0, data.num_samples - held), data.window(data.num_samples - held, None), held


def whole_batches(data: BoundDataset | None, batch: int, role: str) -> BoundDataset | None:
    """A model with a fixed batch dimension only accepts full batches: drop the samples of a last, partial one."""
    if data is None:
        return None
    whole = data.num_samples - data.num_samples % batch
    if whole == 0:
        raise InputError(
            f"{role} {data.dataset.path}: {data.num_samples} sample(s), "
            f"fewer than the model's fixed batch size {batch}",
            hint=f"give at least {batch} samples, or export the model with a dynamic batch dimension",
        )
    return data.window(0, whole)


def _check_labels(data: BoundDataset, model: ModelArtifact) -> None:
    """Labels are class ids of the first output: checked before any work, not after the passes have run."""
    labels = data.labels()  # raises on a wrong dtype or rank
    _check_token_labels_rank(data, labels, model)
    if labels is None or labels.size == 0:
        return
    output = model.io.outputs[0] if model.io and model.io.outputs else None
    rank = labels.ndim + 1  # the output's: [batch, classes], or [batch, tokens, classes] for token labels
    classes = output.shape[-1] if output is not None and len(output.shape) == rank else None
    if labels.ndim == 2:  # token classification: positions no metric counts are ignored
        labels = labels[labels != IGNORE_LABEL]
        if labels.size == 0:
            return
    if labels.min() < 0 or (isinstance(classes, int) and labels.max() >= classes):
        bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
        expected = f"0..{classes - 1}" if isinstance(classes, int) else "class ids >= 0"
        raise InputError(
            f"{data.dataset.path}: label {bad} is out of range for output '{output.name if output else '?'}' "
            f"(expected {expected})"
        )


def _check_token_labels_rank(data: BoundDataset, labels: Any, model: ModelArtifact) -> None:
    """[N, L] labels are token tags: they need an [N, L, classes] output (a classifier's [N, C] has no tokens)."""
    output = model.io.outputs[0] if model.io and model.io.outputs else None
    if labels is None or labels.ndim != 2 or output is None or len(output.shape) == 3:
        return
    raise InputError(
        f"{data.dataset.path}: labels of shape {list(labels.shape)} are token tags, which need an output "
        f"[N, {labels.shape[1]}, classes]; output '{output.name}' is {output.shape_text()}"
    )
