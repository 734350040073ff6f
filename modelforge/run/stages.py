"""One stage of a run: a pass run on the current artifact in its own folder, or its result reused from the
content-hash stage cache (modelforge.run.cache) when the model bytes, config, data and versions match; and the
stage's record for the report.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from modelforge.model.artifact import ModelArtifact
from modelforge.passes import PassContext
from modelforge.progress import Progress
from modelforge.recipe.schema import GatesConfig, PassSpec, Recipe
from modelforge.run.inputs import Inputs


def run_pass_stage(
    recipe: Recipe,
    index: int,
    spec: PassSpec,
    pass_cls: type,
    current: ModelArtifact,
    inputs: Inputs,
    gates: GatesConfig,
    progress: Progress,
    workdir: Path,
    out: Path,
) -> tuple[ModelArtifact, dict[str, Any]]:
    """Run pass number `index` of the chain on `current`; returns its result and the stage record."""
    stage_dir = workdir / f"{index:02d}-{spec.name}"
    stage_dir.mkdir()
    ctx = PassContext(
        workdir=stage_dir,
        seed=recipe.seed,
        calibration=inputs.calibration,
        train=inputs.train,
        evaluation=inputs.eval_data,
        gates=gates,
        progress=progress,
        measure_latency=not recipe.evaluate.skip_latency,
        latency_batch_size=recipe.evaluate.latency.batch_size,
        threads=recipe.evaluate.latency.threads,
        extending_output=out if out.is_dir() and not recipe.output.force else None,
        output_dir=out,
    )
    started = time.perf_counter()
    result = run_stage(recipe, spec, pass_cls, current, ctx, inputs)
    if current.huggingface is not None and result.huggingface is None:  # the writer and the evaluator need it
        result = replace(result, huggingface=current.huggingface)
    record = {
        "name": spec.name,
        "pass": spec.name,
        "seconds": time.perf_counter() - started,
        "input_format": current.format,
        "output_format": result.format,
        "metrics": ctx.metrics,
    }
    return result, record


def run_stage(
    recipe: Recipe, spec: PassSpec, pass_cls: Any, current: ModelArtifact, ctx: PassContext, inputs: Inputs
) -> ModelArtifact:
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
        seen = "|".join(str(inputs.data.fingerprint(d)) for d in (inputs.calibration, inputs.eval_data, inputs.train))
        fingerprint = seen + steering + (f"|{extra}" if extra else "")
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
