"""Run the baseline and the result on the same samples and measure them side by side.

Each side runs on its own runtime through the `Backend` interface (the baseline on onnxruntime, the result on
the runtime its target names: onnxruntime, OpenVINO, ...), and the report records each side's `RuntimeInfo`.
The metrics follow the model's task (`modelforge.measure.task_metrics.metric_task`): accuracy and macro F1 for
classifiers, token accuracy and token F1 for token classifiers, pair-similarity Spearman for embedding models
given sentence pairs; output cosine, agreement and SQNR for every model.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from modelforge.data import BoundDataset
from modelforge.errors import InputError
from modelforge.measure.metrics import ComparisonAccumulator, is_token_output
from modelforge.measure.profile import (
    INTERLEAVE_METHOD,
    Subject,
    batch_sweep,
    memory_method,
    open_measured_backend,
    runs_for_limits,
    slo_limits,
    slo_verdicts,
    stop_rule,
    sweep_batch_sizes,
    sweep_entry,
)
from modelforge.measure.task_metrics import (
    TOKEN_CLASSIFICATION,
    PairSimilarity,
    has_embedding,
    metric_task,
    no_entity_tags,
    sentence_embedding,
)
from modelforge.model.artifact import ModelArtifact
from modelforge.progress import Progress
from modelforge.recipe.schema import EvaluateConfig
from modelforge.runtimes.base import served_file, serving_runtime
from modelforge.runtimes.onnxruntime import default_threads, fixed_batch_size

EVAL_BATCH = 32


def evaluate_pair(
    baseline: ModelArtifact,
    result: ModelArtifact,
    data: BoundDataset,
    data_source: str,
    config: EvaluateConfig,
    progress: Progress,
) -> dict[str, Any]:
    threads = config.latency.threads or default_threads()
    # Each session is opened and run once on a latency batch: its cold start and peak memory.
    first_feeds = latency_feeds(data, fixed_batch_size(baseline.io) or config.latency.batch_size)
    runtime_a, precision_a = serving_runtime(baseline)
    runtime_b, precision_b = serving_runtime(result)
    session_a, load_a = open_measured_backend(
        served_file(baseline), threads, first_feeds, runtime=runtime_a, precision=precision_a
    )
    session_b, load_b = open_measured_backend(
        served_file(result), threads, first_feeds, runtime=runtime_b, precision=precision_b
    )
    labels = data.labels()
    kept_outputs: tuple[list, list] | None = ([], []) if config.custom_metrics else None
    batch = fixed_batch_size(baseline.io) or EVAL_BATCH

    # Set only by modelforge's own loader for Hugging Face folders (hf-core): the task and the tag names.
    info = getattr(baseline, "huggingface", None)
    task = metric_task(getattr(info, "task", None), labels)
    no_entity = no_entity_tags(getattr(info, "id2label", None)) if task == TOKEN_CLASSIFICATION else ()
    accumulator = ComparisonAccumulator(token_f1_exclude=no_entity)
    pairs = pair_similarity(data)
    seen = 0
    progress.start("Evaluating", data.num_samples)
    try:
        for feeds in data.batches(batch):
            n = len(next(iter(feeds.values())))
            out_a, out_b = session_a.run(feeds), session_b.run(feeds)
            batch_labels = labels[seen : seen + n] if labels is not None else None
            if batch_labels is not None:
                check_batch_labels(batch_labels, out_a[0], baseline, data)
            accumulator.update(out_a, out_b, batch_labels)
            if pairs is not None and has_embedding(out_a):
                pairs.update(sentence_embedding(out_a, feeds), sentence_embedding(out_b, feeds))
            if kept_outputs is not None:
                kept_outputs[0].append(out_a)
                kept_outputs[1].append(out_b)
            seen += n
            progress.advance(n)
    finally:
        progress.stop()
    metrics: dict[str, Any] = {"task": task, **accumulator.summary(has_labels=labels is not None)}
    if pairs is not None:
        metrics.update(pairs.summary())
    if kept_outputs is not None:
        from modelforge.evaluate.custom import compute_custom_metrics

        metrics["custom"] = compute_custom_metrics(config.custom_metrics, *kept_outputs, labels)

    record: dict[str, Any] = {
        "data": data_source,
        "metrics": metrics,
        "sessions": {
            "threads": threads,
            "memory_method": memory_method(),
            "baseline": asdict(load_a),
            "result": asdict(load_b),
        },
        "runtimes": {"baseline": session_a.info.to_dict(), "result": session_b.info.to_dict()},
        "latency": None,
    }
    if not config.skip_latency:
        record["latency"] = _latency(session_a, session_b, data, baseline, config, threads, progress)
    return record


def check_batch_labels(labels: np.ndarray, output: np.ndarray, model: ModelArtifact, data: BoundDataset) -> None:
    """Labels must name classes of the first output: [N] ids for [N, C] scores, [N, L] tags for [N, L, C]."""
    name = model.io.outputs[0].name
    if labels.ndim == 2 and not is_token_output(output, labels):
        raise InputError(
            f"eval data {data.dataset.path}: token labels of shape {list(labels.shape)} need an output "
            f"[N, {labels.shape[1]}, classes]; output '{name}' has shape {list(output.shape)}"
        )
    classes = output.shape[-1] if output.ndim == labels.ndim + 1 else None
    if classes is not None and labels.max(initial=0) >= classes:
        raise InputError(
            f"eval data {data.dataset.path}: label {int(labels.max())} is out of range for "
            f"output '{name}' with {classes} classes"
        )


def pair_similarity(data: BoundDataset) -> PairSimilarity | None:
    """Sentence pairs in the eval data (the text data's `pair_count`: A texts then B texts), with their gold
    scores when the data has them; None when the data holds no pairs or only part of them is evaluated."""
    count = int(getattr(data.dataset, "pair_count", 0) or 0)
    if count <= 0 or data.start != 0 or data.num_samples != 2 * count:
        return None
    scores = getattr(data.dataset, "pair_scores", None)
    gold = scores() if callable(scores) else None
    return PairSimilarity(count, gold)


def latency_feeds(data: BoundDataset, batch_size: int) -> dict[str, np.ndarray]:
    """A real batch from the data (samples repeated if the set is smaller than the batch)."""
    feeds = next(data.batches(batch_size))
    n = len(next(iter(feeds.values())))
    if n < batch_size:
        reps = -(-batch_size // n)
        feeds = {k: np.concatenate([v] * reps)[:batch_size] for k, v in feeds.items()}
    return feeds


def _latency(session_a, session_b, data, baseline, config: EvaluateConfig, threads: int, progress) -> dict:
    settings = config.latency
    fixed = fixed_batch_size(baseline.io)
    batch_size = fixed or settings.batch_size
    slo = config.slo
    sizes = sweep_batch_sizes(batch_size, settings.batch_sizes, slo.batch_size if slo else None, fixed)

    def feeds(size: int) -> dict[str, np.ndarray]:
        return latency_feeds(data, size)

    runs = runs_for_limits(settings.min_runs, slo_limits(slo) if slo else None)
    sweep = batch_sweep(
        [
            Subject("baseline", session_a, feeds, fixed),
            Subject("result", session_b, feeds, fixed),
        ],
        sizes,
        warmup=settings.warmup,
        min_runs=runs,
        max_seconds=settings.max_seconds,
        stable_within=settings.stable_within,
        min_seconds=settings.min_seconds,
        progress=progress,
    )
    for entry in sweep:
        entry["speedup"] = entry["stats"]["baseline"]["p50_ms"] / entry["stats"]["result"]["p50_ms"]
    main = sweep_entry(sweep, batch_size)
    return {
        "batch_size": batch_size,
        "threads": threads,
        "inter_op_threads": 1,
        "session_config": dict(session_a.info.config),
        "runtimes": {"baseline": session_a.info.to_dict(), "result": session_b.info.to_dict()},
        "method": INTERLEAVE_METHOD,
        "stop_rule": stop_rule(runs, settings.stable_within, settings.max_seconds, settings.min_seconds),
        "warmup": settings.warmup,
        "stopped": main["stopped"],
        "baseline": main["stats"]["baseline"],
        "result": main["stats"]["result"],
        "speedup": main["speedup"],
        "samples_ms": main["samples_ms"],
        "sweep": sweep,
        "slo": slo_verdicts(slo_limits(slo), slo.batch_size, sweep, ("baseline", "result")) if slo else None,
    }
