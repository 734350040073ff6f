"""The search, step by step: resolve the space, screen latency (exit 1 before training when the goal is out of
reach), fine-tune the survivors as Ray Tune trials under ASHA, build and assess the finalists, time them all
interleaved on this machine, choose, record. It returns the decision; modelforge.run.optimize ships the winner
through the normal runner."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelforge.progress import Progress
from modelforge.search import record as records
from modelforge.search.choose import choose
from modelforge.search.finalists import Candidate, assess, build, time_all
from modelforge.search.screen import Goal, Screened, check_reachable, screen
from modelforge.search.space import resolve_space
from modelforge.search.trials import LocalRay, TrialResult, TrialSpec, in_memory, run_trials, trial_key, trials_root


@dataclass
class SearchInputs:
    """What the run prepared: the user's model, its ONNX form, the bound data, and how to convert a .pt2."""

    source: Any  # ModelArtifact
    baseline_onnx: Path
    train: Any
    evaluation: Any
    calibration: Any
    data_digest: str
    to_onnx: Callable[[Path, Path], Path]
    batch: int
    threads: int
    measure: dict[str, Any]  # latency measurement settings (warmup, min_runs, ...)
    seed: int
    workdir: Path
    progress: Progress = field(default_factory=Progress)


@dataclass
class SearchOutcome:
    record: dict[str, Any]
    winner: Candidate | None
    winner_trial: TrialResult | None


def _example(train) -> tuple:
    import numpy as np
    import torch

    batch = next(train.batches(2))
    return tuple(torch.from_numpy(np.array(batch[name])) for name in train.keys)  # a writable copy


def _module_factory(source) -> Callable[[], Any]:
    def load():
        import warnings

        from modelforge.model.torch.loading import load_module

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_module(source)

    return load


def run_search(config, inputs: SearchInputs) -> SearchOutcome:
    """`config`: recipe.schema.OptimizeConfig."""
    from modelforge.machine import cpu_info

    started = time.perf_counter()
    seconds: dict[str, float] = {}
    progress = inputs.progress
    space = resolve_space(config, inputs.source.format, inputs.train is not None)
    goal = Goal(config.latency_p99_ms, config.speedup)
    example = _example(inputs.train) if config.prunes else None
    factory = _module_factory(inputs.source) if config.prunes else None
    mac_targets: list[dict] = []
    if config.mac_targets:
        from dataclasses import replace

        from modelforge.search.mac_targets import resolve_mac_targets

        mac_targets = resolve_mac_targets(factory, example, config.mac_targets)
        ratios = sorted({*space.prune_ratios, *(row["prune_ratio"] for row in mac_targets)})
        space = replace(space, prune_ratios=tuple(ratios))
        progress.log(
            "optimize: MAC targets "
            + ", ".join(f"{r['mac_target']:g} -> prune ratio {r['prune_ratio']:.2f}" for r in mac_targets)
        )

    # 1. Latency before training, the unpruned forms first: when one meets everything and accuracy is the
    # objective, no pruned model is even built (pruning is spent only where the goal asks for it).
    forms = space.forms()
    pruned_forms = [f for f in forms if f.ratio > 0]
    screen_args = {
        "baseline_onnx": inputs.baseline_onnx,
        "module_factory": factory,
        "example": example,
        "to_onnx": inputs.to_onnx,
        "calibration": inputs.calibration,
        "feeds_data": inputs.evaluation,
        "goal": goal,
        "batch": inputs.batch,
        "threads": inputs.threads,
        "measure": inputs.measure,
        "workdir": inputs.workdir / "screen",
        "progress": progress,
    }
    t = time.perf_counter()
    screened, base_screen = screen([f for f in forms if f.ratio == 0], **screen_args, final=not pruned_forms)
    seconds["latency_screen"] = time.perf_counter() - t

    # 2. The unpruned forms that passed, built and assessed.
    from modelforge.evaluate.evaluator import EVAL_BATCH
    from modelforge.quantization.fallback import OutputJudge

    judge = OutputJudge(inputs.baseline_onnx, inputs.evaluation, EVAL_BATCH, inputs.threads, "optimize")
    judge.runtime, judge.precision = "onnxruntime", "fp32"
    base_accuracy = judge.measure(inputs.baseline_onnx).get("accuracy_result")
    build_args = {
        "calibration": inputs.calibration,
        "evaluation": inputs.evaluation,
        "max_drop": config.max_accuracy_drop,
        "batch": inputs.batch,
        "threads": inputs.threads,
        "progress": progress,
    }
    t = time.perf_counter()
    candidates = [Candidate(row.form, "none", None) for row in screened if row.dropped is None]
    for candidate in candidates:
        build(candidate, inputs.baseline_onnx, workdir=inputs.workdir / "finalists", **build_args)
    assess(candidates, judge)
    quantize_seconds = time.perf_counter() - t
    timing_args = {
        "baseline_onnx": inputs.baseline_onnx,
        "feeds_data": inputs.evaluation,
        "batch": inputs.batch,
        "threads": inputs.threads,
        "settings": inputs.measure,
        "progress": progress,
    }
    # The unpruned finalists judged as the final choice judges (timed, every constraint, no screening slack):
    # when one wins and accuracy is the objective, pruning could only cost accuracy, and this is the choice.
    unpruned_winner, unpruned_base = None, None
    t = time.perf_counter()
    if pruned_forms and config.objective == "accuracy" and any(c.accuracy_drop_pp is not None for c in candidates):
        standing = [c for c in candidates if c.lost is None]  # not failed: choose() judges these
        unpruned_base = time_all(candidates, **timing_args)
        unpruned_winner = choose(candidates, goal, unpruned_base["p50_ms"], config.max_accuracy_drop, "accuracy")
        if unpruned_winner is None:
            for candidate in standing:  # judged again with the pruned finalists
                candidate.lost, candidate.misses, candidate.detail = None, [], ""
    seconds["finalists"] = time.perf_counter() - t
    unpruned_enough = unpruned_winner is not None
    if pruned_forms and not unpruned_enough:
        t = time.perf_counter()
        more, base_screen = screen(pruned_forms, **screen_args, final=False)
        screened += more
        check_reachable(screened, goal, base_screen, inputs.batch, inputs.threads)
        seconds["latency_screen"] += time.perf_counter() - t
    kept: dict[float, list[Screened]] = {}
    for row in screened:
        if row.dropped is None:
            kept.setdefault(row.form.ratio, []).append(row)
    progress.log(
        f"optimize: latency screen kept {sum(len(v) for v in kept.values())} of {len(screened)} forms "
        f"({', '.join(f'p{r:.2f}' for r in sorted(kept))})"
    )

    # 3. Fine-tuning trials for the pruned ratios that can meet the goal.
    ratios = [r for r in space.prune_ratios if r > 0] if unpruned_enough else [r for r in sorted(kept) if r > 0]
    specs = [
        TrialSpec(ratio, mode, config.epochs, config.batch_size, config.lr)
        for ratio in ratios
        for mode in space.fine_tune
    ]
    trial_rows: list[dict[str, Any]] = []
    trials: list[TrialResult] = []
    ray_record: dict[str, Any] = {
        "address": config.ray_address or "local",
        "nodes": 0,
        "scheduler": "ASHA",
        "compared_within": "prune ratio",  # search/brackets.py
        "max_epochs": config.epochs,
        "reduction_factor": config.reduction_factor,
    }
    t = time.perf_counter()
    if specs and unpruned_enough:
        for spec in specs:
            trial_rows.append(
                _skipped_row(spec, "an unpruned form already meets every constraint: pruning would only cost accuracy")
            )
    elif specs and config.time_budget is not None and time.perf_counter() - started >= config.time_budget:
        for spec in specs:  # the budget went on the screen and the unpruned forms: those compete
            trial_rows.append(_skipped_row(spec, "the time budget ran out before fine-tuning", lost="budget"))
    elif specs:
        trials = _run_trials(specs, config, inputs, started, ray_record)
    seconds["fine_tune"] = time.perf_counter() - t

    # 4. Finalists from the trials that finished every epoch.
    t = time.perf_counter()
    by_trial: dict[str, TrialResult] = {}
    for trial in trials:
        status, lost, detail = _trial_verdict(trial, config.epochs, started, config.time_budget)
        trial_rows.append(records.trial_row(trial, base_accuracy, status, lost, detail))
        if not trial.finished:
            continue
        onnx_path = inputs.to_onnx(trial.model, inputs.workdir / "trained" / trial.spec.id)
        for row in kept[trial.spec.ratio]:
            candidate = Candidate(row.form, trial.spec.fine_tune, len(trial.history))
            build(candidate, onnx_path, workdir=inputs.workdir / "finalists", **build_args)
            by_trial[candidate.id] = trial
            candidates.append(candidate)
    assess(candidates, judge)
    seconds["quantize"] = quantize_seconds + time.perf_counter() - t

    # 5. Every finalist timed interleaved on this machine, then the choice (made above when unpruned won).
    t = time.perf_counter()
    if unpruned_enough:
        base, winner = unpruned_base, unpruned_winner
    else:
        base = time_all(candidates, **timing_args)
        winner = choose(candidates, goal, base["p50_ms"], config.max_accuracy_drop, config.objective)
    seconds["finalists"] += time.perf_counter() - t
    seconds["total"] = time.perf_counter() - started

    cpu = cpu_info()
    rows = [records.screen_row(r) for r in screened if r.dropped is not None]
    rows += trial_rows
    rows += [records.candidate_row(c, winner, bool(by_trial.get(c.id) and by_trial[c.id].cached)) for c in candidates]
    record = records.search_record(
        objective=config.objective,
        constraints={
            "latency_p99_ms": config.latency_p99_ms,
            "speedup": config.speedup,
            "max_accuracy_drop": config.max_accuracy_drop,
            "batch_size": inputs.batch,
            "threads": inputs.threads,
        },
        measured_on={"cpu": cpu["model"], "isa": " ".join(cpu["instruction_sets"]), "node": "driver"},
        baseline={
            "latency_p50_ms": round(base["p50_ms"], 4),
            "latency_p99_ms": round(base["p99_ms"], 4),
            "accuracy": None if base_accuracy is None else round(base_accuracy, 4),
            "size_bytes": inputs.baseline_onnx.stat().st_size,
        },
        space=space.record() | ({"mac_targets": mac_targets} if mac_targets else {}),
        stage_seconds=seconds,
        ray=ray_record,
        trials=rows,
        winner=winner.id if winner else None,
    )
    return SearchOutcome(record, winner, by_trial.get(winner.id) if winner else None)


def _skipped_row(spec: TrialSpec, why: str, lost: str = "dominated") -> dict[str, Any]:
    return {
        "id": spec.id,
        "prune_ratio": spec.ratio,
        "fine_tune": spec.fine_tune,
        "precision": "fp32",
        "runtime": "torch",
        "epochs": None,
        "latency_p50_ms": None,
        "latency_p99_ms": None,
        "accuracy": None,
        "accuracy_drop_pp": None,
        "size_bytes": None,
        "status": "lost",
        "lost_because": lost,
        "detail": f"not trained: {why}",
        "cached": False,
    }


def _trial_verdict(trial: TrialResult, epochs: int, started: float, budget: float | None) -> tuple:
    """(status, lost_because, detail) of a fine-tuning trial."""
    done = len(trial.history)
    accuracy = trial.accuracy
    at = "n/a" if accuracy is None else f"{accuracy * 100:.1f}%"
    if trial.finished:
        return "finalist", None, f"fine-tuned {done} epochs ({trial.spec.fine_tune}): {at}"
    if trial.error:
        return "lost", "failed", f"trial failed: {trial.error}"
    if budget is not None and time.perf_counter() - started >= budget:
        return "lost", "budget", f"time budget ran out after {done} epochs at {at}"
    return "lost", "stopped_early", f"stopped by ASHA after {done} of {epochs} epochs at {at}"


def _run_trials(specs, config, inputs: SearchInputs, started: float, ray_record: dict) -> list[TrialResult]:
    model_bytes = _model_bytes(inputs.source)
    import hashlib

    digest = hashlib.sha256(model_bytes).hexdigest()
    folders = {s.id: trials_root() / trial_key(digest, inputs.data_digest, s, inputs.seed) for s in specs}
    payload = {
        "model": model_bytes,
        "train": in_memory(inputs.train),
        "evaluation": in_memory(inputs.evaluation),
        "seed": inputs.seed,
    }
    budget = None
    if config.time_budget is not None:
        budget = max(1.0, config.time_budget - (time.perf_counter() - started))
    inputs.progress.log(f"optimize: {len(specs)} fine-tuning trials on Ray ({ray_record['address']}), ASHA")
    storage = Path(tempfile.mkdtemp(prefix="ray-results-", dir=inputs.workdir))
    with LocalRay(config.ray_address) as ray:
        ray_record["nodes"] = ray.nodes()
        return run_trials(
            specs,
            folders=folders,
            payload=payload,
            epochs=config.epochs,
            reduction_factor=config.reduction_factor,
            time_budget=budget,
            storage=storage,
        )


def _model_bytes(source) -> bytes:
    return Path(source.path).read_bytes()  # the user's .pt2 (resolve_space allowed only that), loaded already
