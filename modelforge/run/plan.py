"""The plan of a run: the pass chain checked (formats, conversions, data each pass needs) and, for `--dry-run`,
everything a run would check and do, said without running a pass or writing a file.

PyTorch- and TensorFlow-form passes (prune, distill) run on the loaded model; a conversion to ONNX (a `convert`
stage) is inserted where the next pass or the evaluation needs ONNX.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from modelforge.data import open_dataset
from modelforge.errors import InputError
from modelforge.passes import get_pass
from modelforge.recipe.schema import Recipe
from modelforge.run.gates import run_gates, slo_gate_plan
from modelforge.run.inputs import prepare_inputs
from modelforge.run.output import check_output_dir, extends_output, previous_output
from modelforge.runtimes.preflight import run_preflight

# Formats a conversion stage can turn into ONNX.
CONVERTIBLE = ("torch-export", "torchscript", "torch-module", "keras", "savedmodel", "huggingface")
# Formats that are deployable results in their own right and have no ONNX form (evaluated on their runtime).
FINAL_FORMATS = ("tflite",)
# How each format is handed over, for errors that say which inputs a pass takes.
FORMAT_INPUTS = {
    "onnx": "ONNX (.onnx)",
    "torch-export": "torch.export (.pt2)",
    "torchscript": "TorchScript (.pt)",
    "torch-module": "PyTorch factory (--model-factory)",
    "keras": "Keras (.keras/.h5)",
    "savedmodel": "SavedModel (folder)",
    "huggingface": "Hugging Face (folder)",
}


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


def plan_recipe(recipe: Recipe) -> dict[str, Any]:
    """Validate everything a run would check (output, passes, model, data, gates) and say what would run."""
    check_output_dir(recipe, dry_run=True)
    from modelforge.run.llm import is_lm_recipe, plan_lm_recipe

    if is_lm_recipe(recipe):
        return plan_lm_recipe(recipe)
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
            "passes": [f"{spec.name} ({', '.join(cls.accepts)} -> {cls.produces})" for spec, cls in pass_specs]
            if recipe.optimize is None
            else "chosen by the optimize search (prune ratio x fine-tuning x precision x runtime)",
            "training": f"{inputs.train.num_samples} samples of {recipe.data.train.path}" if inputs.train else None,
            "gates": run_gates(recipe, inputs, pass_specs).plan() | slo_gate_plan(recipe),
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
        "gates": {k: v for k, v in recipe.gates.model_dump().items() if v is not None} | slo_gate_plan(recipe),
        "output": _planned_output(recipe),
    }


def _planned_model_files(source_format: str, pass_specs: list[tuple[Any, type]]) -> list[str]:
    """The model files a run writes: the result's (model.onnx, or model.tflite) and the last framework form's."""
    fmt, framework = source_format, None
    for _, cls in pass_specs:
        fmt = "onnx" if fmt not in cls.accepts else fmt
        fmt = getattr(cls, "produces_by_input", {}).get(fmt, cls.produces)
        framework = fmt if fmt != "onnx" else framework
    if fmt in FINAL_FORMATS:
        return [f"model.{fmt}"]
    framework_files = {"torch-export": ["model.pt2"], "keras": ["model.h5"], "huggingface": ["model.safetensors"]}
    files = ["model.onnx", *framework_files.get(framework or "", [])]
    if source_format == "huggingface":  # the output is a Hugging Face folder again
        files.append("config.json and the tokenizer or image processor files, copied from the model folder")
    return files


def _planned_output(recipe: Recipe) -> str:
    """The output folder, and what a real run would do with the one that exists."""
    out = recipe.output.dir
    if not out.exists():
        return str(out)
    if not any(out.iterdir()):
        return f"{out} (exists, empty: replaced)"
    if recipe.output.force:
        return f"{out} (exists: --force moves it to {previous_output(out)})"
    if extends_output(recipe, out):
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
