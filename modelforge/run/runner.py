"""Run a recipe: the orchestration only. Check the plan and the output, prepare the inputs, run the stages in
order (converting to ONNX where the next pass or the evaluation needs it), evaluate baseline vs result, write
the records into the staging folder and move it into place.

The baseline is always the original model's ONNX form, so baseline and result are measured on the same runtime.
Each job has its module: plan (the pass chain), inputs (model and data), stages (a pass and the cache), gates,
records (report and manifest), output (the folder, staging, the atomic move).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from modelforge.errors import EXIT_GATE_FAILED, EXIT_OK, InputError, PassError
from modelforge.model.artifact import ModelArtifact
from modelforge.progress import Progress
from modelforge.recipe.schema import Recipe
from modelforge.run.gates import run_gates
from modelforge.run.inputs import convert, prepare_inputs
from modelforge.run.output import check_output_dir, publish, staged_output
from modelforge.run.plan import FINAL_FORMATS, check_pass_chain
from modelforge.run.records import evaluate, run_report, write_records
from modelforge.run.stages import run_pass_stage
from modelforge.runtimes.preflight import run_preflight
from modelforge.runtimes.writers import write_artifact
from modelforge.safe_files import write_text


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


def run_recipe(
    recipe: Recipe, progress: Progress | None = None, sections: dict[str, Any] | None = None
) -> RunResult | None:
    """Run a recipe; under torchrun, ranks other than 0 only train and return None (rank 0 writes).

    A recipe with an `optimize` section searches its chain first (modelforge.run.optimize), then comes back here
    with the winning chain and its `sections` ({"search": ...}): each is added to report.json and written as
    NAME.json beside it, before the manifest hashes the folder."""
    from modelforge.training import distributed

    progress = progress or Progress()
    if recipe.optimize is not None:
        from modelforge.run.optimize import run_optimize

        return run_optimize(recipe, progress, ship=run_recipe)
    out = check_output_dir(recipe)
    from modelforge.run.llm import is_lm_recipe, run_lm_recipe

    if is_lm_recipe(recipe):  # a decoder language model: weight-only quantization with perplexity gates
        report, moved = run_lm_recipe(recipe, progress, out)
        return RunResult(report, out, moved)
    if any(p.name == "quantize" and p.config.get("weights") is not None for p in recipe.passes):
        raise InputError(
            f"model {recipe.model.path}: weights int4/int8 is weight-only quantization of a language model "
            "(a Hugging Face folder whose config.json names a *ForCausalLM); this is not one",
            hint="for 4-bit MatMul weights of another model use --precision int4-weights",
        )
    if distributed.is_distributed():
        try:
            distributed.init_from_env()
            return _run_recipe(recipe, progress, out, sections)
        except RuntimeError as exc:  # a collective broke: another rank died (its own error is printed above)
            if not distributed.peer_failure(exc):
                raise
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
            raise PassError(
                "torchrun", f"rank {distributed.rank()} stopped: another rank failed, see its error ({first})"
            ) from None
        finally:
            distributed.shutdown()
    return _run_recipe(recipe, progress, out, sections)


def _run_recipe(
    recipe: Recipe, progress: Progress, out: Path, sections: dict[str, Any] | None = None
) -> RunResult | None:
    from modelforge.training import distributed

    random.seed(recipe.seed)
    np.random.seed(recipe.seed)
    pass_specs = check_pass_chain(recipe)
    with staged_output(out, primary=distributed.is_primary()) as staging:
        workdir = staging.workdir
        inputs = prepare_inputs(recipe, workdir)
        preflight = run_preflight(inputs.baseline, pass_specs, inputs.calibration)
        gates = run_gates(recipe, inputs, pass_specs)

        # A chain that starts with a PyTorch-form pass works on the loaded model, not on its ONNX export.
        first_accepts = pass_specs[0][1].accepts if pass_specs else ()
        source = inputs.source
        current = source if source.format != "onnx" and source.format in first_accepts else inputs.baseline
        framework_form: ModelArtifact | None = None  # the last PyTorch form a pass produced (written as model.pt2)
        for index, (spec, pass_cls) in enumerate(pass_specs, start=1):
            if current.format not in pass_cls.accepts:  # check_pass_chain made sure ONNX is accepted here
                current, stage = convert(current, workdir / f"{index:02d}-convert", recipe, inputs.data)
                inputs.stages.append(stage)
            result, stage = run_pass_stage(
                recipe, index, spec, pass_cls, current, inputs, gates.config, progress, workdir, out
            )
            inputs.stages.append(stage)
            current = result
            if result.format != "onnx":
                framework_form = result
            if not distributed.is_primary() and not any(c.needs_train_data for _, c in pass_specs[index:]):
                return None  # this rank's part (data-parallel training) is done; rank 0 evaluates and writes
        if not distributed.is_primary():
            return None
        if current.format not in ("onnx", *FINAL_FORMATS):  # the evaluation and the deployable output need ONNX
            current, stage = convert(current, workdir / f"{len(pass_specs) + 1:02d}-convert", recipe, inputs.data)
            inputs.stages.append(stage)

        # What lands in the output is each artifact's business (modelforge.runtimes.writers): model.onnx, model.pt2, ...
        written = write_artifact(current, staging.folder)
        if framework_form is not None and framework_form is not current:  # a .tflite result is both
            write_artifact(framework_form, staging.folder)
        final = replace(current, path=written[0])

        evaluation = evaluate(inputs, final, recipe, progress)
        report = run_report(recipe, inputs, final, written, evaluation, preflight, gates, out)
        for name, section in (sections or {}).items():
            report[name] = section
            write_text(staging.folder / f"{name}.json", json.dumps(section, indent=2, allow_nan=False) + "\n")
        write_records(staging.folder, report, recipe, inputs.data)
        moved = staging.move_into_place(extending=out.is_dir() and not recipe.output.force)
        published, held_back = publish(final, report["passed"])
        return RunResult(report, out, moved, published, held_back)
