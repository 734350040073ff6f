"""Run a recipe: load, apply passes in order, evaluate baseline vs result, write outputs.

PyTorch-form passes (prune, distill) run on the loaded PyTorch model; a conversion to ONNX (recorded as a
`convert` stage) is inserted where the next pass or the evaluation needs ONNX. The baseline is always the
original model's ONNX form, so baseline and result are measured on the same runtime.

Outputs are written to a hidden temporary folder beside the target and renamed into place at the end,
so an interrupted or failed run leaves nothing half-written and an existing folder untouched.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from modelforge.data import BoundDataset, bind, open_dataset
from modelforge.errors import EXIT_GATE_FAILED, EXIT_OK, InputError, OutputExistsError, PassError
from modelforge.model.artifact import ModelArtifact
from modelforge.passes import PassContext, get_pass
from modelforge.progress import Progress
from modelforge.recipe.schema import DataSource, Recipe
from modelforge.runtimes.onnxruntime import fixed_batch_size
from modelforge.runtimes.preflight import run_preflight
from modelforge.runtimes.writers import write_artifact

# Without eval data, this share of the calibration samples is held back to compare the two models.
HELD_BACK_SHARE = 0.2
HELD_BACK_MAX = 256
# Said once on the terminal and kept in the report when a run that needs no data (an export) was given none.
NO_DATA_NOTE = "no data given: evaluation skipped (pass --eval-data to compare the result with the original)"


@dataclass
class RunResult:
    report: dict[str, Any]
    output_dir: Path
    previous_output: Path | None = None  # where --force moved the output this run replaced
    # Model folders added to a repository outside the output (export --repository), and those held back
    # because a gate failed: "<repository>/<name>/<version>".
    published: list[str] | None = None
    held_back: list[str] | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.report["passed"] else EXIT_GATE_FAILED


def check_output_dir(recipe: Recipe, dry_run: bool = False) -> Path:
    """Refuse, before any work, an output the run may not write or replace. A dry run writes nothing: an
    existing folder is no reason to refuse it (plan_recipe says what a real run would need)."""
    out = recipe.output.dir
    if out.exists() and not recipe.output.force and not dry_run and not _extends_output(recipe, out):
        raise OutputExistsError(str(out))
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} exists and is not a directory")
    if not out.exists():  # found now, not after the passes have run: a file where a parent folder must go
        blocking = next((p for p in out.absolute().parents if p.exists() or p.is_symlink()), None)
        if blocking is not None and not blocking.is_dir():
            raise InputError(f"output {out}: cannot create it, {blocking} is not a directory")
    if out.exists():  # --force moves it aside: never the folder we run in or one holding the inputs
        sources = (recipe.data.calibration, recipe.data.eval_data, recipe.data.train)
        for kept in (Path.cwd(), recipe.model.path, *(s.path for s in sources if s is not None)):
            kept = kept.resolve()
            if kept == out.resolve() or out.resolve() in kept.parents:
                raise InputError(
                    f"output {out} holds {kept}, which --force would move aside", hint="write to a folder of its own"
                )
        if recipe.output.force:
            _check_replaceable(out)
        elif not dry_run and _moved_aside(out):
            _check_previous_slot(out)
    return out


def previous_output(out: Path) -> Path:
    """Where --force moves the output it replaces: one sibling slot, so a mistaken --force can be undone
    (`mv OUT.previous OUT`) and repeated CI runs keep one old copy, not one per run."""
    return out.with_name(out.name + ".previous")


def _moved_aside(out: Path) -> bool:
    """An extended folder (next Triton version) that modelforge did not write is moved aside, not deleted."""
    from modelforge.manifest import is_modelforge_output

    return out.is_dir() and any(out.iterdir()) and not is_modelforge_output(out)


def _check_replaceable(out: Path) -> None:
    """--force only ever moves aside a folder modelforge wrote (or an empty one), and only over a previous slot
    that is ours too: a folder someone else made is never moved or deleted."""
    from modelforge.manifest import MANIFEST_NAME, is_modelforge_output

    if out.is_symlink():
        raise InputError(f"output {out} is a symbolic link: --force never replaces a link", hint="name the folder")
    if not any(out.iterdir()):  # an empty folder is simply replaced
        return
    if not is_modelforge_output(out):
        raise InputError(
            f"output {out} was not written by modelforge (no modelforge {MANIFEST_NAME} in it): --force never "
            "moves or deletes such a folder",
            hint=f"write to a new folder, e.g. {out / 'run'}, or remove it yourself",
        )
    _check_previous_slot(out)


def _check_previous_slot(out: Path) -> None:
    from modelforge.manifest import is_modelforge_output

    previous = previous_output(out)
    if previous.is_symlink() or (previous.exists() and not previous.is_dir()):
        raise InputError(f"{previous} is in the way (not a folder): --force moves the old output there")
    if previous.is_dir() and any(previous.iterdir()) and not is_modelforge_output(previous):
        raise InputError(
            f"{previous} was not written by modelforge: --force moves the old output there and would replace it",
            hint="move or remove it yourself",
        )


def _extends_output(recipe: Recipe, out: Path) -> bool:
    """A pass that adds to the existing output (export's next Triton model version) needs no --force."""
    for spec in recipe.passes:
        pass_cls = get_pass(spec.name)
        if out.is_dir() and pass_cls.extends_output(pass_cls.Config.model_validate(spec.config), out):
            return True
    return False


def _open_bound(source: DataSource | None, model: ModelArtifact, role: str) -> BoundDataset | None:
    if source is None:
        return None
    first = model.io.inputs[0].shape if model.io and model.io.inputs else None
    return bind(open_dataset(source, first), model.io, role)


def _check_gates_measurable(recipe: Recipe, eval_data: BoundDataset | None, import_code: bool = True) -> None:
    gates = recipe.gates
    if gates.max_accuracy_drop is not None and (eval_data is None or eval_data.labels() is None):
        raise InputError(
            "gate max_accuracy_drop needs eval data with a `labels` array",
            hint="pass --eval-data with labels, or gate on --min-agreement / --min-cosine",
        )
    if gates.min_speedup is not None and recipe.evaluate.skip_latency:
        raise InputError("gate min_speedup needs latency: evaluate.skip_latency is set")
    if recipe.evaluate.slo is not None and recipe.evaluate.skip_latency:
        raise InputError("evaluate.slo needs latency: evaluate.skip_latency is set")
    if recipe.evaluate.custom_metrics and import_code:  # a dry run never imports user code
        from modelforge.evaluate.custom import load_metric

        for spec in recipe.evaluate.custom_metrics:  # fail before any pass runs, not after
            load_metric(spec)


def _model_record(
    artifact: ModelArtifact, display_path: Path, source_format: str | None = None, size_bytes: int | None = None
) -> dict[str, Any]:
    """`source_format`: the format the user handed over, where the model was converted to run (a .pt2 baseline
    runs as ONNX); `size_bytes`: what the result is served from, where that is not the ONNX file (OpenVINO IR)."""
    from modelforge.model.graph_stats import int8_compute_share
    from modelforge.model.onnx_model import load_onnx, opset_version

    model = load_onnx(artifact.path, load_external_data=False) if artifact.format == "onnx" else None
    return {
        "path": str(display_path),
        "format": artifact.format,
        **({"source_format": source_format} if source_format and source_format != artifact.format else {}),
        "compute": int8_compute_share(model) if model is not None else None,
        "size_bytes": artifact.size_bytes() if size_bytes is None else size_bytes,
        "opset": opset_version(model) if model is not None else None,
        "inputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in artifact.io.inputs],
        "outputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in artifact.io.outputs],
    }


def _served_size(final: ModelArtifact, written: list[Path]) -> int:
    """The size of what the result is served from: model.xml + model.bin for an OpenVINO result (the IR the
    runtime loads, written beside model.onnx), the model's own files otherwise."""
    if final.served_on is not None and final.served_on.runtime == "openvino":
        ir = [p for p in written if p.suffix in (".xml", ".bin")]
        if ir:
            return sum(p.stat().st_size for p in ir)
    return final.size_bytes()


def _framework_packages(source: ModelArtifact, final: ModelArtifact) -> tuple[str, ...]:
    """The framework versions a report records: those that loaded, converted or ran the models."""
    if source.format in ("keras", "savedmodel") or final.format == "tflite":
        return ("tensorflow", "keras", "tf_keras", "tf2onnx", "tensorflow_model_optimization", "ai_edge_litert")
    return ("torch", "onnxscript") if source.format != "onnx" else ()


# Formats a conversion stage can turn into ONNX.
CONVERTIBLE = ("torch-export", "torchscript", "torch-module", "keras", "savedmodel")
# Formats that are deployable results in their own right and have no ONNX form (evaluated on their runtime).
FINAL_FORMATS = ("tflite",)


@dataclass
class Inputs:
    """Everything a run needs before its first pass: the models, the bound data, the stages so far."""

    source: ModelArtifact
    baseline: ModelArtifact  # the ONNX form of the source: what results are compared with
    calibration: BoundDataset | None
    eval_data: BoundDataset
    eval_note: str
    stages: list[dict[str, Any]]
    train: BoundDataset | None = None


def check_pass_chain(recipe: Recipe) -> list[tuple[Any, type]]:
    """Every pass exists, gets the format it accepts, and has the data it needs."""
    pass_specs = [(spec, get_pass(spec.name)) for spec in recipe.passes]
    needs_calibration = [cls.name for _, cls in pass_specs if cls.needs_calibration]
    if needs_calibration and recipe.data.calibration is None:
        raise InputError(f"pass '{needs_calibration[0]}' needs calibration data", hint="pass --calibration DATA")
    needs_train = [cls.name for _, cls in pass_specs if getattr(cls, "needs_train_data", False)]
    if needs_train and recipe.data.train is None:
        raise InputError(f"pass '{needs_train[0]}' needs training data", hint="pass --train-data DATA")
    _check_checkpoint_dirs(recipe)
    fmt = _source_format(recipe)
    if pass_specs and hasattr(pass_specs[0][1], "check_source"):  # a source the first pass cannot take: now
        pass_specs[0][1].check_source(recipe.model.path, fmt, pass_specs[0][0].config)
    for index, (spec, cls) in enumerate(pass_specs):
        if fmt not in cls.accepts:
            if not ("onnx" in cls.accepts and fmt in CONVERTIBLE):
                # A model or a pass order the pass cannot take: bad usage (exit 2), found before any work.
                named = FORMAT_INPUTS.get(fmt, fmt)
                got = f"model {recipe.model.path} is {named}" if index == 0 else f"the pass before it produces {named}"
                raise InputError(f"pass '{spec.name}' takes {_accepted_inputs(cls.accepts)}; {got}")
            fmt = "onnx"  # a conversion stage is inserted before this pass
        fmt = getattr(cls, "produces_by_input", {}).get(fmt, cls.produces)
    return pass_specs


# How each format is handed over, for errors that say which inputs a pass takes.
FORMAT_INPUTS = {
    "onnx": "ONNX (.onnx)",
    "torch-export": "torch.export (.pt2)",
    "torchscript": "TorchScript (.pt)",
    "torch-module": "PyTorch factory (--model-factory)",
    "keras": "Keras (.keras/.h5)",
    "savedmodel": "SavedModel (folder)",
}


def _accepted_inputs(accepts: tuple[str, ...]) -> str:
    names = [FORMAT_INPUTS.get(fmt, fmt) for fmt in accepts]
    return (", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]) + " models"


def _check_checkpoint_dirs(recipe: Recipe) -> None:
    """A checkpoint folder the recipe names that holds a link is refused now, before any work (the passes
    check again before they read or write there)."""
    from modelforge.training.checkpoints import check_checkpoint_dir

    for spec in recipe.passes:
        named = spec.config.get("checkpoint_dir") if isinstance(spec.config, dict) else None
        if named:
            check_checkpoint_dir(Path(named))


def _source_format(recipe: Recipe) -> str:
    if recipe.model.format != "auto":
        return recipe.model.format
    from modelforge.model.loader import detect_format

    return detect_format(recipe.model.path)  # a missing or unknown file is exit 2 here, never taken for ONNX


def _convert(artifact: ModelArtifact, folder: Path, recipe: Recipe) -> tuple[ModelArtifact, dict[str, Any]]:
    """Export a PyTorch-form artifact to ONNX; returns it with the `convert` stage record."""
    from modelforge.convert.to_onnx import convert_to_onnx
    from modelforge.data.examples import example_inputs

    started = time.perf_counter()
    folder.mkdir()
    from modelforge.convert.tensorflow import CHECK_SAMPLES  # TF conversions are checked on samples

    count = CHECK_SAMPLES if artifact.format in ("keras", "savedmodel") else 1
    example = example_inputs(recipe.data.calibration or recipe.data.eval_data or recipe.data.train, count)
    converted, info = convert_to_onnx(artifact, folder, recipe.model.opset, example)
    stage = {
        "name": "convert",
        "pass": "convert",
        "seconds": time.perf_counter() - started,
        "input_format": artifact.format,
        "output_format": "onnx",
        "metrics": info,
    }
    return converted, stage


def prepare_inputs(recipe: Recipe, workdir: Path, import_code: bool = True) -> Inputs:
    """Load (and convert once) the model, bind and validate the data, pick the evaluation samples.
    `import_code=False` (a dry run): custom metrics are not imported."""
    from modelforge.model.loader import load_model

    stages: list[dict[str, Any]] = []
    source = load_model(
        recipe.model.path, recipe.model.format, factory=recipe.model.factory, trust_code=recipe.model.trust_model_code
    )
    baseline = source
    if source.format != "onnx":
        baseline, stage = _convert(source, workdir / "00-convert", recipe)
        stages.append(stage)
        if source.io is None and source.format in ("keras", "savedmodel"):  # its signature, as the ONNX form has it
            source.io = baseline.io

    train = _open_bound(recipe.data.train, baseline, "training data")
    if train is not None:
        if train.labels() is None:
            raise InputError(
                f"training data {recipe.data.train.path} has no labels",
                hint="add a `labels` array of class ids to the .npz, or use an image folder with one sub-folder "
                "per class",
            )
        _check_labels(train, baseline)
    calibration = _open_bound(recipe.data.calibration, baseline, "calibration data")
    eval_data = _open_bound(recipe.data.eval_data, baseline, "eval data")
    _check_gates_measurable(recipe, eval_data, import_code)
    if eval_data is not None:
        eval_note = f"eval data {recipe.data.eval_data.path}"
    elif calibration is not None and calibration.num_samples >= 2:
        held = min(max(1, int(calibration.num_samples * HELD_BACK_SHARE)), HELD_BACK_MAX)
        eval_data = calibration.window(calibration.num_samples - held, None)
        calibration = calibration.window(0, calibration.num_samples - held)
        eval_note = f"{held} held-back calibration samples of {recipe.data.calibration.path} (no eval data given)"
    elif calibration is not None:
        eval_data = calibration
        eval_note = f"the calibration sample of {recipe.data.calibration.path} (no eval data given)"
    elif train is not None and train.num_samples >= 2:
        if Path(recipe.data.train.path).is_dir():  # sorted by class: its last 20% would be the last classes only
            raise InputError("training images need --eval-data to evaluate on", hint="pass --eval-data FOLDER")
        held = min(max(1, int(train.num_samples * HELD_BACK_SHARE)), HELD_BACK_MAX)
        eval_data = train.window(train.num_samples - held, None)
        train = train.window(0, train.num_samples - held)
        eval_note = f"{held} held-back training samples of {recipe.data.train.path} (no eval data given)"
    elif recipe.passes and all(get_pass(spec.name).runs_without_data for spec in recipe.passes):
        eval_note = NO_DATA_NOTE  # an export of a model as it is: nothing to compare it with
        return Inputs(source, baseline, calibration, None, eval_note, stages, train)
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
    return Inputs(source, baseline, calibration, eval_data, eval_note, stages, train)


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
    if labels is None or labels.size == 0:
        return
    output = model.io.outputs[0] if model.io and model.io.outputs else None
    classes = output.shape[1] if output is not None and len(output.shape) == 2 else None
    if labels.min() < 0 or (isinstance(classes, int) and labels.max() >= classes):
        bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
        expected = f"0..{classes - 1}" if isinstance(classes, int) else "class ids >= 0"
        raise InputError(
            f"{data.dataset.path}: label {bad} is out of range for output '{output.name if output else '?'}' "
            f"(expected {expected})"
        )


def _data_fingerprint(data: BoundDataset | None) -> str | None:
    """Content of the samples a pass can see: file bytes, the window, and how images are preprocessed."""
    from modelforge.manifest import data_sha256

    if data is None:
        return None
    preprocessing = getattr(data.dataset, "preprocessing", None)
    extra = preprocessing.model_dump_json() if preprocessing is not None else ""
    return f"{data_sha256(data.dataset.path)}:{data.start}:{data.num_samples}:{extra}"


def _run_stage(recipe, spec, pass_cls, current: ModelArtifact, ctx: PassContext, data) -> ModelArtifact:
    """Run one pass, or reuse its cached result when the model bytes, config, data and versions match."""
    from modelforge.run import cache
    from modelforge.training import distributed

    config = pass_cls.Config.model_validate(spec.config)
    key = None
    own = pass_cls(config)
    # A pass's own inputs beyond its config (distill: the student's bytes); None: not cacheable.
    extra = own.cache_fingerprint() if hasattr(own, "cache_fingerprint") else ""
    # Under torchrun one rank's hit and another's miss would leave the other ranks waiting: never cached.
    cacheable = getattr(pass_cls, "cacheable", True) and extra is not None and not distributed.is_distributed()
    if recipe.cache and cacheable and current.format != "torch-module":  # a factory's code is not in the key
        # The gates steer the accuracy fallback; the latency batch, threads and skip steer the speed search.
        latency = recipe.evaluate.latency
        steering = (
            f"{ctx.gates.model_dump_json()}|{latency.batch_size}|{latency.threads}|{recipe.evaluate.skip_latency}"
        )
        fingerprint = "|".join(str(_data_fingerprint(d)) for d in data) + steering + (f"|{extra}" if extra else "")
        key = cache.stage_key(current, spec.name, config.model_dump(mode="json"), fingerprint, recipe.seed)
        hit = cache.lookup(key, ctx.workdir, warn=ctx.progress.log)
        if hit is not None:
            result, metrics = hit
            ctx.metrics.update(metrics)
            ctx.record("cache", "hit")
            return result
    result = own.run(current, ctx)
    if key is not None:
        cache.store(key, result, dict(ctx.metrics))
        ctx.record("cache", "miss")
    return result


def _slo_gate_plan(recipe: Recipe) -> dict[str, Any]:
    slo = recipe.evaluate.slo
    if slo is None or not slo.gate:
        return {}
    limits = (("slo_latency_p99_ms", slo.latency_p99_ms), ("slo_latency_p50_ms", slo.latency_p50_ms))
    return {name: f"{limit:g} ms at batch {slo.batch_size}" for name, limit in limits if limit is not None}


def _planned_model_files(source_format: str, pass_specs: list[tuple[Any, type]]) -> list[str]:
    """The model files a run writes: the result's (model.onnx, or model.tflite) and the last framework form's."""
    fmt, framework = source_format, None
    for _, cls in pass_specs:
        fmt = "onnx" if fmt not in cls.accepts else fmt
        fmt = getattr(cls, "produces_by_input", {}).get(fmt, cls.produces)
        framework = fmt if fmt != "onnx" else framework
    if fmt in FINAL_FORMATS:
        return [f"model.{fmt}"]
    return ["model.onnx", *({"torch-export": ["model.pt2"], "keras": ["model.h5"]}.get(framework or "", []))]


def run_gates(recipe: Recipe, inputs: Inputs, pass_specs: list[tuple[Any, type]]):
    """The recipe's gates plus the default sanity gates (modelforge.run.gates), decided from the original's outputs."""
    from modelforge.run.gates import ResolvedGates, resolve_gates

    if inputs.eval_data is None:  # an export without data: nothing to judge, and the run says it skipped it
        return ResolvedGates(recipe.gates, frozenset())
    has_labels = inputs.eval_data.labels() is not None
    return resolve_gates(recipe.gates, inputs.baseline.io, [cls.name for _, cls in pass_specs], has_labels)


def plan_recipe(recipe: Recipe) -> dict[str, Any]:
    """Validate everything a run would check (output, passes, model, data, gates) and say what would run."""
    check_output_dir(recipe, dry_run=True)
    pass_specs = check_pass_chain(recipe)
    if recipe.model.factory is not None:  # a dry run never imports user code: without it, no model to check
        return _factory_plan(recipe, pass_specs)
    with tempfile.TemporaryDirectory(prefix="modelforge-plan-") as tmp:
        inputs = prepare_inputs(recipe, Path(tmp), import_code=False)
        preflight = run_preflight(inputs.baseline, pass_specs, inputs.calibration)
        return {
            "preflight": preflight,
            "model": str(recipe.model.path),
            "format": inputs.source.format,
            "conversion": inputs.stages[0]["metrics"] if inputs.stages else None,
            "inputs": [f"{t.name} {t.dtype} {t.shape_text()}" for t in inputs.baseline.io.inputs],
            "calibration_samples": inputs.calibration.num_samples if inputs.calibration else 0,
            "evaluation": (
                f"{inputs.eval_data.num_samples} samples: {inputs.eval_note}" if inputs.eval_data else inputs.eval_note
            ),
            "passes": [f"{spec.name} ({', '.join(cls.accepts)} -> {cls.produces})" for spec, cls in pass_specs],
            "training": f"{inputs.train.num_samples} samples of {recipe.data.train.path}" if inputs.train else None,
            "gates": run_gates(recipe, inputs, pass_specs).plan() | _slo_gate_plan(recipe),
            "output": _planned_output(recipe),
            **_planned_checkpoints(recipe),
            **_planned_repositories(recipe),
            "files": [
                *_planned_model_files(inputs.source.format, pass_specs),
                "report.json",
                "report.md",
                "report.html",
                "recipe.resolved.yaml",
                "manifest.json",
            ],
        }


def _factory_plan(recipe: Recipe, pass_specs: list[tuple[Any, type]]) -> dict[str, Any]:
    """The plan of a model built by a factory: what can be checked without importing the factory's code."""
    from modelforge.model.loader import load_model

    load_model(recipe.model.path, recipe.model.format, factory=recipe.model.factory)  # the weights file exists
    for source in (recipe.data.calibration, recipe.data.eval_data, recipe.data.train):
        if source is not None:
            open_dataset(source)  # readable, shapes consistent; binding to the model's inputs needs the model
    return {
        "model": str(recipe.model.path),
        "format": "torch-module",
        "factory": f"{recipe.model.factory} (not imported in a dry run; the model and data binding are checked "
        "when it runs)",
        "passes": [f"{spec.name} ({', '.join(cls.accepts)} -> {cls.produces})" for spec, cls in pass_specs],
        "gates": {k: v for k, v in recipe.gates.model_dump().items() if v is not None} | _slo_gate_plan(recipe),
        "output": _planned_output(recipe),
    }


def _planned_output(recipe: Recipe) -> str:
    """The output folder, and what a real run would do with the one that exists."""
    out = recipe.output.dir
    if not out.exists():
        return str(out)
    if not any(out.iterdir()):
        return f"{out} (exists, empty: replaced)"
    if recipe.output.force:
        return f"{out} (exists: --force moves it to {previous_output(out)})"
    if _extends_output(recipe, out):
        return f"{out} (exists: the run adds to it)"
    return f"{out} (exists: a real run needs --force, which moves it to {previous_output(out)})"


def _planned_repositories(recipe: Recipe) -> dict[str, str]:
    """Where a Triton export adds its model (the dry run names the repository and the version)."""
    from modelforge.export.triton import next_version

    plan = {}
    for spec in recipe.passes:
        if spec.name == "export" and spec.config.get("target") == "triton":
            name, named = spec.config.get("name", "model"), spec.config.get("repository")
            if named is None:
                plan["triton repository"] = f"{recipe.output.dir / 'model_repository'} (new; {name}/1)"
            else:
                version = next_version(Path(named) / name)
                plan["triton repository"] = f"{named} (adds {name}/{version} once the gates pass)"
    return plan


def _planned_checkpoints(recipe: Recipe) -> dict[str, str]:
    """Where the training passes checkpoint (the dry run lists it, as the run's files)."""
    from modelforge.training.checkpoints import checkpoint_dir

    plan = {}
    for spec in recipe.passes:
        if spec.name in ("prune", "distill"):
            named = spec.config.get("checkpoint_dir")
            where = checkpoint_dir(Path(named) if named else None, recipe.output.dir, create=False)
            kept = "kept there" if named else "removed once the pass is done"
            kept += f"; {recipe.output.dir / 'checkpoints'}/ gets best.pt and last.pt" if not named else ""
            plan[f"checkpoints ({spec.name})"] = f"{where} ({kept})"
    return plan


def run_recipe(recipe: Recipe, progress: Progress | None = None) -> RunResult | None:
    """Run a recipe; under torchrun, ranks other than 0 only train and return None (rank 0 writes)."""
    from modelforge.training import distributed

    progress = progress or Progress()
    out = check_output_dir(recipe)
    if distributed.is_distributed():
        try:
            distributed.init_from_env()
            return _run_recipe(recipe, progress, out)
        except RuntimeError as exc:  # a collective broke: another rank died (its own error is printed above)
            if not distributed.peer_failure(exc):
                raise
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
            raise PassError(
                "torchrun", f"rank {distributed.rank()} stopped: another rank failed, see its error ({first})"
            ) from None
        finally:
            distributed.shutdown()
    return _run_recipe(recipe, progress, out)


def _run_recipe(recipe: Recipe, progress: Progress, out: Path) -> RunResult | None:
    from modelforge.training import distributed

    random.seed(recipe.seed)
    np.random.seed(recipe.seed)
    pass_specs = check_pass_chain(recipe)

    created = _make_parents(out) if distributed.is_primary() else []
    try:
        workdir = Path(tempfile.mkdtemp(prefix="modelforge-work-"))
    except OSError as exc:
        _remove_empty(created)
        raise InputError(
            f"cannot create a temporary folder in {tempfile.gettempdir()}: {exc.strerror or exc}",
            hint="set TMPDIR to a writable folder",
        ) from exc
    try:  # torchrun's other ranks never write into the output's folder: a private one stands in for staging
        where = out.parent if distributed.is_primary() else workdir
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=where))
    except OSError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        _remove_empty(created)
        raise InputError(f"output {out}: cannot create a folder in {out.parent}: {exc.strerror or exc}") from exc
    finished = False
    try:
        inputs = prepare_inputs(recipe, workdir)
        source, baseline, stages = inputs.source, inputs.baseline, inputs.stages
        calibration, eval_data, eval_note = inputs.calibration, inputs.eval_data, inputs.eval_note
        preflight = run_preflight(baseline, pass_specs, calibration)
        run_gate_set = run_gates(recipe, inputs, pass_specs)

        # A chain that starts with a PyTorch-form pass works on the loaded model, not on its ONNX export.
        first_accepts = pass_specs[0][1].accepts if pass_specs else ()
        current = source if source.format != "onnx" and source.format in first_accepts else baseline
        framework_form: ModelArtifact | None = None  # the last PyTorch form a pass produced (written as model.pt2)
        for index, (spec, pass_cls) in enumerate(pass_specs, start=1):
            if current.format not in pass_cls.accepts:  # check_pass_chain made sure ONNX is accepted here
                current, stage = _convert(current, workdir / f"{index:02d}-convert", recipe)
                stages.append(stage)
            stage_dir = workdir / f"{index:02d}-{spec.name}"
            stage_dir.mkdir()
            ctx = PassContext(
                workdir=stage_dir,
                seed=recipe.seed,
                calibration=calibration,
                train=inputs.train,
                evaluation=eval_data,
                gates=run_gate_set.config,
                progress=progress,
                measure_latency=not recipe.evaluate.skip_latency,
                latency_batch_size=recipe.evaluate.latency.batch_size,
                threads=recipe.evaluate.latency.threads,
                extending_output=out if out.is_dir() and not recipe.output.force else None,
                output_dir=out,
            )
            started = time.perf_counter()
            result = _run_stage(recipe, spec, pass_cls, current, ctx, (calibration, eval_data, inputs.train))
            stages.append(
                {
                    "name": spec.name,
                    "pass": spec.name,
                    "seconds": time.perf_counter() - started,
                    "input_format": current.format,
                    "output_format": result.format,
                    "metrics": ctx.metrics,
                }
            )
            current = result
            if result.format != "onnx":
                framework_form = result
            if not distributed.is_primary() and not any(c.needs_train_data for _, c in pass_specs[index:]):
                return None  # this rank's part (data-parallel training) is done; rank 0 evaluates and writes
        if not distributed.is_primary():
            return None
        if current.format not in ("onnx", *FINAL_FORMATS):  # the evaluation and the deployable output need ONNX
            current, stage = _convert(current, workdir / f"{len(pass_specs) + 1:02d}-convert", recipe)
            stages.append(stage)

        # What lands in the output is each artifact's business (modelforge.runtimes.writers): model.onnx, model.pt2, ...
        written = write_artifact(current, staging)
        if framework_form is not None and framework_form is not current:  # a .tflite result is both
            write_artifact(framework_form, staging)
        final = replace(current, path=written[0])

        from modelforge.evaluate.evaluator import evaluate_pair
        from modelforge.machine import machine_record
        from modelforge.manifest import MANIFEST_NAME, build_manifest, data_sha256
        from modelforge.report import build_report, evaluate_gates
        from modelforge.report.build import build_summary
        from modelforge.report.markdown import render_markdown

        if eval_data is not None:
            evaluation = evaluate_pair(baseline, final, eval_data, eval_note, recipe.evaluate, progress)
        else:
            progress.log(eval_note)
            evaluation = _skipped_evaluation(eval_note)
        result_size = _served_size(final, written)
        summary = build_summary(
            evaluation,
            source.size_bytes() if source.format == "onnx" else baseline.size_bytes(),
            result_size,
        )
        from modelforge.report.verdict import mark_original_shipped, run_warnings, same_file

        runtimes = evaluation.get("runtimes") or {}
        same_runtime = (runtimes.get("baseline") or {}).get("runtime") == (runtimes.get("result") or {}).get("runtime")
        if (
            same_runtime
            and final.format == "onnx"
            and baseline.format == "onnx"
            and same_file(baseline.path, final.path)
        ):
            mark_original_shipped(summary, stages)
        gates = evaluate_gates(run_gate_set.config, summary, run_gate_set.defaults)
        if recipe.evaluate.slo is not None and recipe.evaluate.slo.gate:
            from modelforge.report.build import slo_gates

            gates += slo_gates(evaluation)
        recipe_dict = recipe.model_dump(mode="json")
        report = build_report(
            recipe=recipe_dict,
            models={
                "source": str(recipe.model.path),
                "baseline": _model_record(baseline, recipe.model.path, source.format),
                "result": _model_record(final, out / written[0].name, size_bytes=result_size),
            },
            stages=stages,
            preflight=preflight,
            evaluation=evaluation,
            summary=summary,
            gates=gates,
            machine=machine_record(_framework_packages(source, final)),
            warnings=run_warnings(summary, stages, runtimes),
        )
        report = _json_safe(report)
        from modelforge.safe_files import write_text

        write_text(staging / "report.json", json.dumps(report, indent=2, allow_nan=False, default=_json_default) + "\n")
        write_text(staging / "report.md", render_markdown(report))
        from modelforge.report.html import render_html

        write_text(staging / "report.html", render_html(report))
        write_text(staging / "recipe.resolved.yaml", recipe.to_yaml())
        data_hashes = {
            role: data_sha256(src.path)
            for role, src in (
                ("calibration", recipe.data.calibration),
                ("eval_data", recipe.data.eval_data),
                ("train", recipe.data.train),
            )
            if src is not None
        }
        manifest = build_manifest(staging, recipe_dict, data_hashes, report["machine"]["versions"])
        write_text(staging / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
        staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the output is a normal folder
        extending = out.is_dir() and not recipe.output.force
        moved = _move_into_place(staging, out, extending)
        finished = True
        published, held_back = _publish(final, report["passed"])
        return RunResult(report, out, moved, published, held_back)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
        if not finished:  # a failed run leaves no trace, not even the parent folders it made for its output
            _remove_empty(created)


def _skipped_evaluation(note: str) -> dict[str, Any]:
    """The evaluation record of a run without data: every figure unmeasured (None), so a gate on one fails."""
    metrics = {
        "samples": 0,
        "accuracy_baseline": None,
        "accuracy_result": None,
        "top1_agreement": None,
        "output_cosine": None,
    }
    return {"data": note, "skipped": True, "metrics": metrics, "latency": None}


def _publish(final: ModelArtifact, passed: bool) -> tuple[list[str], list[str]]:
    """Add what the run built for a long-lived repository outside its output, once the output is in place:
    only a run whose gates passed, so a shared repository never serves a model its gates refused."""
    places = [str(p.destination / str(p.version)) for p in final.publications]
    if not passed:
        return [], places
    from modelforge.export.triton import publish_model

    for publication in final.publications:
        publish_model(publication.staged, publication.destination, publication.version)
    return places, []


def _make_parents(out: Path) -> list[Path]:
    """Create the output's missing parent folders; returns those created, outermost first."""
    missing = [p for p in (out.parent, *out.parent.parents) if not p.exists()][::-1]
    created: list[Path] = []
    for folder in missing:
        try:
            folder.mkdir()
        except FileExistsError:
            if not folder.is_dir():
                _remove_empty(created)
                raise InputError(f"output {out}: cannot create it, {folder} is not a directory") from None
        except OSError as exc:
            _remove_empty(created)
            raise InputError(f"output {out}: cannot create {folder}: {exc.strerror or exc}") from exc
        else:
            created.append(folder)
    return created


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders this run created, innermost first, where they are still empty."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def _json_safe(value: Any) -> Any:
    """JSON has no NaN or infinity: a model whose outputs hold NaN still gets its report, with null there
    (and a gate on that value fails, as an unmeasured one does)."""
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _move_into_place(staging: Path, out: Path, extending: bool) -> Path | None:
    """Rename the finished folder into place. An existing output is renamed to OUT.previous first (--force,
    or an extended folder modelforge did not write), or removed after its content was carried over (an
    extended modelforge folder); returns where the old one went, if it was kept."""
    from modelforge.manifest import is_modelforge_output

    if not out.exists():
        staging.rename(out)
        return None
    if not any(out.iterdir()):  # an empty folder: nothing to keep
        out.rmdir()
        staging.rename(out)
        return None
    if extending and is_modelforge_output(out):  # its other models and versions were carried into staging
        old = out.with_name(f".{out.name}.old-{time.time_ns()}")
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
        return None
    if extending:  # a folder someone else made, extended: kept whole as OUT.previous
        _check_previous_slot(out)
    else:  # --force; checked again right before: the folder may have changed while the run worked
        _check_replaceable(out)
    previous = previous_output(out)
    if previous.is_dir():  # the slot holds an older output of ours (checked above): the new one replaces it
        gone = previous.with_name(f".{previous.name}.old-{time.time_ns()}")
        previous.rename(gone)
        shutil.rmtree(gone, ignore_errors=True)
    out.rename(previous)
    staging.rename(out)
    return previous
