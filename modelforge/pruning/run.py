"""The pruning procedure behind the `prune` pass: prune in steps, fine-tune after each, checkpoint, measure.

Every step ends as a saved `torch.export` program that the next step (and a resumed run) rebuilds its module
from, so an interrupted run resumed with `resume` follows exactly the path of an uninterrupted one:

    checkpoints/start.pt2                    the model before pruning (rebuilt into nn layers)
    checkpoints/step-K/pruned.pt2            after pruning step K, before its fine-tuning
    checkpoints/step-K/last.pt, best.pt      per-epoch training state (modelforge.training)
    checkpoints/step-K/model.pt2 + step.json  step K done

`run_pruning` takes the module, the config, the data, the seed, the folders and a Progress, and returns a
`PruneResult` (the model file, the checkpoints the output keeps, the stage's figures): it knows no pass.
"""

from __future__ import annotations

import gzip
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelforge.errors import InputError
from modelforge.progress import Progress

if TYPE_CHECKING:
    from modelforge.data import BoundDataset
    from modelforge.pruning.config import PruneConfig


@dataclass(frozen=True)
class PruneResult:
    """What a pruning run made: the model file, the checkpoints the output keeps, and the stage's figures."""

    path: Path
    figures: dict[str, Any]
    checkpoints: tuple[Path, ...] = ()


def weights_sizes(module) -> tuple[int, int]:
    """Raw and gzipped bytes of the module's parameters and buffers (float32 as stored): what pruning changes,
    without the program's graph, which compresses alike before and after."""
    raw = b"".join(t.detach().cpu().contiguous().numpy().tobytes() for t in module.state_dict().values())
    return len(raw), len(gzip.compress(raw, compresslevel=6, mtime=0))


def _reload(path: Path):
    from modelforge.model.torch.loading import load_program
    from modelforge.model.torch.rebuild import rebuild_modules

    return rebuild_modules(load_program(path))


def _tensors(train_data: BoundDataset | None, eval_data: BoundDataset | None):
    from modelforge.training import load_tensors

    if train_data is None:
        raise InputError("pruning needs training data", hint="pass --train-data DATA")
    train = load_tensors(train_data)
    if train[1] is None:
        raise InputError(f"training data {train_data.dataset.path} has no labels")
    evaluation = load_tensors(eval_data) if eval_data is not None else None
    if evaluation is not None and evaluation[1] is None:
        evaluation = None  # agreement-only eval data: no accuracy to select on
    return train, evaluation


def _prunable(module, config) -> tuple[dict[str, Any], list[str]]:
    from modelforge.pruning.layers import default_skipped, prunable_layers, resolve_skip

    skipped = resolve_skip(module, config.skip_layers)
    skipped += [
        n
        for n in default_skipped(module, first_conv=not config.prune_first_conv, classifier=not config.prune_classifier)
        if n not in skipped
    ]
    layers = {n: layer for n, layer in prunable_layers(module).items() if n not in skipped}
    return layers, skipped


def run_pruning(
    module,
    config: PruneConfig,
    *,
    train: BoundDataset | None,
    evaluation: BoundDataset | None,
    seed: int,
    workdir: Path,
    checkpoints: Path,
    progress: Progress,
) -> PruneResult:
    """Prune and fine-tune `module`, checkpointing into `checkpoints`; the result's .pt2 is written in `workdir`.

    Once done, the final step's best.pt and last.pt are copied into `workdir`/kept for the output, and a
    folder the user did not name (the cache's) is removed (modelforge.training.checkpoints)."""
    from modelforge.training.checkpoints import finish_checkpoints

    path, record = _prune(module, config, train, evaluation, seed, workdir, checkpoints, progress)
    named = config.checkpoint_dir is not None
    final_step = checkpoints / f"step-{len(record['steps'])}"
    kept = finish_checkpoints(final_step, checkpoints, workdir, named=named, record=record)
    return PruneResult(path, record, kept)


def _prune(
    module,
    config: PruneConfig,
    train_data: BoundDataset | None,
    eval_data: BoundDataset | None,
    seed: int,
    workdir: Path,
    checkpoints: Path,
    progress: Progress,
) -> tuple[Path, dict[str, Any]]:
    """The steps themselves; returns the result's .pt2 and the stage record (checkpoints still in place)."""
    import torch

    from modelforge.model.torch.export import save_program
    from modelforge.pruning import apply_masks, magnitude_masks, masks_2_4, polynomial_targets, verify_2_4
    from modelforge.pruning.magnitude import masks_from_zeros, sparsity_report
    from modelforge.training import accuracy, train

    torch.manual_seed(seed)
    train_t, eval_t = _tensors(train_data, eval_data)
    example = tuple(t[:2] for t in train_t[0])
    from modelforge.safe_files import make_dirs, write_text
    from modelforge.training import distributed
    from modelforge.training.checkpoints import check_checkpoint_dir

    check_checkpoint_dir(checkpoints)  # a link in it is refused before anything there is read or written
    if not config.resume and config.checkpoint_dir is None and distributed.is_primary():
        shutil.rmtree(checkpoints, ignore_errors=True)  # the cache's folder: a fresh run starts clean
    start = checkpoints / "start.pt2"
    resuming = config.resume and start.is_file()
    if not resuming:  # bad input is refused before anything is written
        from modelforge.model.torch.export import trace_check

        if config.resume:
            progress.log(f"nothing to resume in {checkpoints}: starting from the beginning")
        _prunable(module, config)  # unknown skip-layer names
        trace_check(module, example, "the model")
    checkpoints.mkdir(parents=True, exist_ok=True)
    if not resuming:
        save_program(module, example, start, root=checkpoints)
    module = _reload(start)
    layers, skipped = _prunable(module, config)
    if not layers:
        raise InputError("no layer left to prune once the skipped ones are set aside")

    structured = config.method == "structured"
    from modelforge.pruning.structured import channel_counts, channel_report, count_macs_params

    base_macs, base_params = count_macs_params(module, example)
    weights_before = weights_sizes(module)
    channels_before = channel_counts(module)
    record: dict[str, Any] = {
        "method": config.method,
        "importance": config.importance if structured else "magnitude (|w|)",
        "scope": config.scope if config.method == "magnitude" else None,
        "schedule": config.schedule,
        "skipped_layers": skipped,
        "params_before": base_params,
        "macs_before": base_macs,
        "accuracy_before_prune": accuracy(module, *eval_t) if eval_t else None,
    }
    steps = 1 if config.schedule == "one-shot" or config.method == "2:4" else config.steps
    if config.method == "2:4":
        targets = [0.5]
    elif structured and config.target_macs is not None:
        targets = [1 - t for t in polynomial_targets(1 - config.target_macs, steps)]  # MACs ratios to reach
    else:
        targets = polynomial_targets(config.sparsity, steps)
    history: list[dict[str, Any]] = []
    step_records = []
    removed_so_far = 0.0
    for k, target in enumerate(targets, start=1):
        step_dir = checkpoints / f"step-{k}"
        done, pruned = step_dir / "model.pt2", step_dir / "pruned.pt2"
        if config.resume and done.is_file() and (step_dir / "step.json").is_file():
            module = _reload(done)
            step = json.loads((step_dir / "step.json").read_text())
            step_records.append(step)
            history += step["history"]
            removed_so_far = step.get("channel_fraction_removed", removed_so_far)
            progress.log(f"prune step {k}/{len(targets)}: finished in an earlier run, reused from {step_dir}")
            continue
        resume_training = config.resume and pruned.is_file()
        if not resume_training:
            shutil.rmtree(step_dir, ignore_errors=True)
            make_dirs(step_dir, checkpoints)
            layers, _ = _prunable(module, config)
            if config.method == "magnitude":
                apply_masks(layers, magnitude_masks(layers, target, config.scope))
            elif config.method == "2:4":
                apply_masks(layers, masks_2_4(layers))
            else:
                from modelforge.pruning.structured import prune_channels

                ratio = None
                if config.target_macs is None:  # channels to remove now, as a share of what is left
                    ratio = 1 - (1 - target) / (1 - removed_so_far)
                    removed_so_far = target
                prune_channels(
                    module,
                    example,
                    ratio=ratio,
                    target_macs=target if config.target_macs is not None else None,
                    base_macs=base_macs,
                    importance=config.importance,
                    skipped=skipped,
                    round_to=config.round_to,
                    taylor_batch=(tuple(t[:256] for t in train_t[0]), train_t[1][:256]),
                )
            save_program(module, example, pruned, root=checkpoints)
        module = _reload(pruned)
        layers, _ = _prunable(module, config)
        masks = None if structured else masks_from_zeros(layers)
        after_prune = accuracy(module, *eval_t) if eval_t else None
        # Said before the fine-tuning it precedes, so the log reads in the order things happened.
        progress.log(
            f"prune step {k}/{len(targets)}: accuracy after pruning "
            + ("n/a (no eval data)" if after_prune is None else f"{after_prune:.4f}")
            + ", fine-tuning next"
        )
        last = k == len(targets)
        train_config = config.train.model_copy(update={"epochs": config.train.epochs if last else config.step_epochs})
        result = train(
            module,
            train_t,
            eval_t,
            train_config,
            checkpoint_dir=step_dir,
            seed=seed + k,
            progress=progress,
            resume=resume_training,
            after_step=(lambda lay=layers, m=masks: apply_masks(lay, m)) if masks is not None else None,
            extra={"step": k},
            description=f"fine-tune (step {k}/{len(targets)})",
        )
        for row in result.history:
            row["step"] = k
        history += result.history
        step = {
            "step": k,
            "target": target,
            "accuracy_after_prune": after_prune,
            "accuracy_after_finetune": accuracy(module, *eval_t) if eval_t else None,
            "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early,
            "resumed_from_epoch": result.resumed_from_epoch,
            "history": result.history,
            "channel_fraction_removed": removed_so_far,
        }
        save_program(module, example, done, root=checkpoints)
        write_text(step_dir / "step.json", json.dumps(step, indent=2), checkpoints)
        step_records.append(step)
        if step["accuracy_after_finetune"] is not None:
            progress.log(
                f"prune step {k}/{len(targets)}: accuracy after fine-tuning {step['accuracy_after_finetune']:.4f}"
            )

    macs, params = count_macs_params(module, example)
    layers, _ = _prunable(module, config)
    result_path = workdir / "model.pt2"
    extra = {}
    if config.method == "2:4":
        verified = verify_2_4(layers)
        record["semi_structured"] = {
            "pattern": "2:4",
            "layers_2_4": sorted(n for n, ok in verified.items() if ok),
            "layers_dense": sorted(set(layers) - set(verified)),
            "verified": all(verified.values()),
            "note": "2:4 runs faster only on sparse tensor cores (NVIDIA Ampere+, TensorRT with sparse weights); "
            "CPUs and onnxruntime get no speed-up from it.",
        }
        extra["modelforge.sparsity"] = json.dumps({"pattern": "2:4", "layers": record["semi_structured"]["layers_2_4"]})
    save_program(module, example, result_path, extra=extra)
    first, final = step_records[0], step_records[-1]
    record.update(
        params_after=params,
        macs_after=macs,
        params_ratio=params / base_params if base_params else None,
        macs_ratio=macs / base_macs if base_macs else None,
        accuracy_after_prune=first["accuracy_after_prune"] if len(step_records) == 1 else final["accuracy_after_prune"],
        accuracy_after_finetune=final["accuracy_after_finetune"],
        program_bytes_before=start.stat().st_size,
        program_bytes_after=result_path.stat().st_size,
        weights_bytes_before=weights_before[0],
        weights_bytes_after=weights_sizes(module)[0],
        gzip_bytes_before=weights_before[1],
        gzip_bytes_after=weights_sizes(module)[1],
    )
    record["gzip_ratio"] = record["gzip_bytes_after"] / record["gzip_bytes_before"]
    if structured:
        record["channels"] = channel_report(channels_before, module)
        record["channel_fraction_removed"] = 1 - sum(
            r["out_channels"][1] for r in record["channels"] if r["layer"] not in skipped
        ) / max(1, sum(r["out_channels"][0] for r in record["channels"] if r["layer"] not in skipped))
    else:
        rows = sparsity_report(layers)
        record["layers"] = rows
        total = sum(r["weights"] for r in rows)
        record["sparsity_measured"] = sum(r["zeros"] for r in rows) / total if total else 0.0
        record["note"] = (
            "Zeros inside dense weight tensors: dense CPU kernels (onnxruntime) multiply them like any other value, "
            "so latency does not improve (see the measured speed-up); the gain is compressed size (gzip)."
            if config.method == "magnitude"
            else record["semi_structured"]["note"]
        )
    record["steps"] = [{k: v for k, v in s.items() if k != "history"} for s in step_records]
    record["training_curve"] = history
    record["checkpoints"] = str(checkpoints)
    return result_path, record
