"""A recipe with an `optimize` section: prepare the inputs as any run does, search (modelforge.search), then ship
the winner as a normal output folder through the runner with the winning chain, whose recipe.resolved.yaml
replays that chain with no search; the search's record goes into report.json (`search`) and search.json.

The replay is cheap here and exact anywhere: the winner's prune/distill pass carries `resume: true`, and the
winning trial's checkpoints (already in the prune/distill layout) are copied to where that pass resumes from
for this output folder, so the runner finds every epoch done and trains nothing. On another machine (CI) the
same recipe finds nothing to resume, trains from the start, and the seeded training lands on the same weights.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelforge.errors import EXIT_GATE_FAILED, ModelforgeError
from modelforge.measure.profile import runs_for_limits
from modelforge.model.artifact import ModelArtifact
from modelforge.progress import Progress
from modelforge.recipe.schema import Recipe


class NothingMeets(ModelforgeError):
    """No candidate meets every constraint: exit 1, nothing shipped; `record` (the search dict) says how near."""

    exit_code = EXIT_GATE_FAILED

    def __init__(self, message: str, record: dict[str, Any]):
        super().__init__(message, hint="loosen --latency-p99-ms / --max-accuracy-drop, or widen the space")
        self.record = record


def search_base(recipe: Recipe) -> Recipe:
    """The recipe the search prepares its inputs from: no passes, calibration defaulting to the train data."""
    base = recipe.model_copy(deep=True)
    base.optimize = None
    if base.data.calibration is None:
        base.data.calibration = base.data.train or base.data.eval_data
    return base


def run_optimize(recipe: Recipe, progress: Progress, ship: Callable[..., Any]):
    """Search, then `ship` the winning recipe (modelforge.run.runner.run_recipe, passed in: no import cycle)."""
    from modelforge.run.inputs import convert, prepare_inputs
    from modelforge.run.output import check_output_dir
    from modelforge.runtimes.onnxruntime import default_threads
    from modelforge.search.engine import SearchInputs, run_search
    from modelforge.search.space import check_early

    config = recipe.optimize
    check_early(config, recipe.model.path, recipe.data.train is not None)
    out = check_output_dir(recipe)  # refused now, not after the search
    base = search_base(recipe)
    latency = recipe.evaluate.latency
    with tempfile.TemporaryDirectory(prefix="modelforge-optimize-") as tmp:
        workdir = Path(tmp)
        inputs = prepare_inputs(base, workdir)

        def to_onnx(program: Path, folder: Path) -> Path:
            folder.parent.mkdir(parents=True, exist_ok=True)
            artifact = ModelArtifact(path=program, format="torch-export", io=inputs.source.io)
            return convert(artifact, folder, base, inputs.data)[0].path

        fingerprints = [inputs.data.fingerprint(d) for d in (inputs.train, inputs.eval_data)]
        p99_limit = {"p99_ms": config.latency_p99_ms} if config.latency_p99_ms is not None else None
        outcome = run_search(
            config,
            SearchInputs(
                source=inputs.source,
                baseline_onnx=inputs.baseline.path,
                train=inputs.train,
                evaluation=inputs.eval_data,
                calibration=inputs.calibration,
                data_digest=hashlib.sha256(repr(fingerprints).encode()).hexdigest(),
                to_onnx=to_onnx,
                batch=latency.batch_size,
                threads=latency.threads or default_threads(),
                measure={
                    "warmup": latency.warmup,
                    # the search judges candidates against the p99 SLO: enough runs for a p99
                    "min_runs": runs_for_limits(latency.min_runs, p99_limit),
                    "max_seconds": latency.max_seconds,
                    "stable_within": latency.stable_within,
                    "min_seconds": latency.min_seconds,
                },
                seed=recipe.seed,
                workdir=workdir,
                progress=progress,
            ),
        )
        if outcome.winner is None:
            raise NothingMeets("no candidate meets every constraint; nothing was written", outcome.record)
        winning = winner_recipe(recipe, outcome)
        if outcome.winner_trial is not None:
            _seed_checkpoints(outcome.winner_trial.folder / "checkpoints", out)
        progress.log(f"optimize: the winner is {outcome.winner.id}; writing it with the winning chain")
        # Still inside the search's folder: the runner copies the conversions the search made (run.inputs.convert).
        return ship(winning, progress, sections={"search": outcome.record})


def winner_recipe(recipe: Recipe, outcome) -> Recipe:
    """The winning chain as a plain recipe: the same model, data, evaluation and output, the search's constraints
    as gates (and the SLO), no `optimize`."""
    config = recipe.optimize
    raw = search_base(recipe).model_dump(mode="json")
    raw.pop("optimize", None)
    passes = []
    if outcome.winner_trial is not None:
        passes.append(outcome.winner_trial.spec.pass_spec(resume=True))
    if outcome.winner.quantize is not None:
        passes.append({"name": "quantize", "config": dict(outcome.winner.quantize)})
    raw["passes"] = passes
    if config.max_accuracy_drop is not None:
        raw["gates"]["max_accuracy_drop"] = config.max_accuracy_drop
    if config.speedup is not None:
        raw["gates"]["min_speedup"] = config.speedup
    if config.latency_p99_ms is not None:
        raw["evaluate"]["slo"] = {
            "latency_p99_ms": config.latency_p99_ms,
            "batch_size": recipe.evaluate.latency.batch_size,
            "gate": True,
        }
    return Recipe.model_validate(raw)


def _seed_checkpoints(trained: Path, out: Path) -> None:
    """The winning trial's checkpoints, where the winner's prune/distill pass resumes from for `out`."""
    from modelforge.safe_files import check_tree_has_no_links
    from modelforge.training.checkpoints import default_checkpoint_dir

    if not trained.is_dir():
        return  # the pass trains from the start: slower, same result
    check_tree_has_no_links(trained)  # the cache is untrusted: a link is never followed
    target = default_checkpoint_dir(out)
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(trained, target)
