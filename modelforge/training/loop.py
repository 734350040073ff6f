"""The training loop: seeded, deterministic on CPU, checkpointed every epoch, resumable.

Under `torchrun` (modelforge.training.distributed) the module is wrapped in DistributedDataParallel, a
`DistributedSampler` shards the samples (the batch size stays the global one, split over the ranks), each rank
is seeded apart, loss and accuracies are all-reduced, and only rank 0 writes checkpoints.

A checkpoint folder holds `last.pt` (everything to continue: weights, optimizer, scheduler, generator state,
history, early-stopping counters, plus the caller's own `extra` state) and `best.pt` (the best epoch's weights).
Both are plain tensors and numbers, read back with `torch.load(weights_only=True)`. A resumed run continues
from the epoch after the last checkpoint and ends with exactly the weights an uninterrupted run would have.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelforge.progress import Progress
from modelforge.training.config import TrainConfig

LAST, BEST = "last.pt", "best.pt"


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch: loss, train/eval accuracy, lr
    best_accuracy: float | None = None
    # Epochs are counted from 1 everywhere people read them (history rows, progress lines, best_epoch); best_epoch
    # 0 is the model before training (kept when no epoch beat it), resumed_from_epoch the last epoch done before.
    best_epoch: int | None = None
    stopped_early: bool = False
    resumed_from_epoch: int | None = None
    seconds: float = 0.0


def device_for(config: TrainConfig):
    import torch

    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _optimizer(torch, params, config: TrainConfig):
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def _scheduler(torch, optimizer, config: TrainConfig, steps_per_epoch: int):
    total = max(1, config.epochs * steps_per_epoch)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, (2 * total) // 3), gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _augment(torch, batch, config: TrainConfig, generator):
    """Random flips / padded crops of rank-4 NCHW inputs, drawn from the seeded generator."""
    x = batch[0]
    if x.dim() != 4 or not (config.hflip or config.crop_padding):
        return batch
    if config.hflip:
        flip = torch.rand(x.shape[0], generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if config.crop_padding:
        p = config.crop_padding
        padded = torch.nn.functional.pad(x, (p, p, p, p))
        dy, dx = torch.randint(0, 2 * p + 1, (2,), generator=generator).tolist()  # one offset per batch
        x = padded[:, :, dy : dy + x.shape[2], dx : dx + x.shape[3]]
    return (x, *batch[1:])


def train(
    module,
    train_data: tuple[tuple, Any],
    eval_data: tuple[tuple, Any] | None,
    config: TrainConfig,
    *,
    checkpoint_dir: Path,
    seed: int = 0,
    progress: Progress | None = None,
    resume: bool = False,
    after_step: Callable[[], None] | None = None,
    extra: dict[str, Any] | None = None,
    description: str = "fine-tune",
    loss: Callable[[Any, Any, tuple], Any] | None = None,
) -> TrainResult:
    """Train `module` in place on (inputs, labels) tensors; returns the per-epoch history.

    `after_step` runs after each optimizer step (pruning masks are re-applied there). `extra` is stored in
    every checkpoint (the caller's own state, e.g. the pruning step). `loss(outputs, labels, inputs)` replaces
    cross-entropy (distillation adds its teacher term there); a loss with `takes_indices = True` also gets the
    batch's sample indices (`indices=`), for per-sample caches."""
    import torch

    from modelforge.training import distributed

    progress = progress or Progress()
    started = time.perf_counter()
    parallel = distributed.active()
    rank, world = (distributed.rank(), distributed.world_size()) if parallel else (0, 1)
    primary = rank == 0
    torch.manual_seed(seed + rank)  # seed per rank: augmentation draws differ, initial weights come from rank 0
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = device_for(config)
    module.to(device)
    inputs, labels = train_data
    samples = labels.shape[0]
    batch_size = -(-config.batch_size // world)  # the global batch, split over the ranks
    sampler = None
    if parallel:
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(range(samples), num_replicas=world, rank=rank, shuffle=True, seed=seed)
    shard = len(sampler) if sampler is not None else samples
    steps_per_epoch = max(1, -(-shard // batch_size))
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = _optimizer(torch, params, config)
    scheduler = _scheduler(torch, optimizer, config, steps_per_epoch)
    generator = torch.Generator().manual_seed(seed + rank)
    result = TrainResult()
    best_state = None
    bad_epochs = 0
    first_epoch = 0
    if primary:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
    last = checkpoint_dir / LAST
    if resume and last.is_file():
        state = torch.load(str(last), map_location="cpu", weights_only=True)
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        result.history = list(state["history"])
        result.best_accuracy, result.best_epoch = state["best_accuracy"], state["best_epoch"]
        bad_epochs, result.stopped_early = state["bad_epochs"], state["stopped_early"]
        first_epoch = state["epoch"] + 1
        result.resumed_from_epoch = first_epoch
        if first_epoch >= config.epochs or result.stopped_early:
            progress.log(f"{description}: finished in an earlier run, reused from {last}")
        if (checkpoint_dir / BEST).is_file():
            best_state = torch.load(str(checkpoint_dir / BEST), map_location="cpu", weights_only=True)["model"]
        module.to(device)
    elif result.best_accuracy is None and eval_data is not None and config.keep_best:
        # not fine-tuning is a candidate
        result.best_accuracy, result.best_epoch = distributed.sharded_accuracy(module, *eval_data), 0
        best_state = {k: v.detach().clone().cpu() for k, v in module.state_dict().items()}
        if primary:
            _save(torch, {"model": best_state, "epoch": -1}, checkpoint_dir / BEST)

    cross_entropy = torch.nn.CrossEntropyLoss()
    loss_fn = loss or (lambda out, target, _inputs: cross_entropy(out, target))
    with_indices = getattr(loss, "takes_indices", False)
    model = module
    if parallel:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    for epoch in range(first_epoch, config.epochs):
        if result.stopped_early:
            break
        model.train()
        if sampler is not None:
            sampler.set_epoch(epoch)
            order = torch.tensor(list(sampler), dtype=torch.int64)
        else:
            order = torch.randperm(samples, generator=generator)
        total_loss, correct, seen = 0.0, 0, 0
        progress.start(f"{description} epoch {epoch + 1}/{config.epochs}", steps_per_epoch)
        try:
            for step in range(steps_per_epoch):
                index = order[step * batch_size : (step + 1) * batch_size]
                batch = _augment(torch, tuple(t[index] for t in inputs), config, generator)
                batch = tuple(t.to(device) for t in batch)
                target = labels[index].to(device)
                optimizer.zero_grad(set_to_none=True)
                out = model(*batch)
                out = out[0] if isinstance(out, tuple | list) else out
                value = loss_fn(out, target, batch, indices=index) if with_indices else loss_fn(out, target, batch)
                value.backward()
                optimizer.step()
                scheduler.step()
                if after_step is not None:
                    after_step()
                total_loss += float(value.detach()) * index.shape[0]
                correct += int((out.argmax(1) == target).sum())
                seen += index.shape[0]
                progress.advance(1)
        finally:
            progress.stop()
        total_loss, correct, seen = distributed.all_reduce_sum([total_loss, float(correct), float(seen)])
        record = {
            "epoch": epoch + 1,
            "loss": total_loss / seen,
            "train_accuracy": correct / seen,
            "lr": optimizer.param_groups[0]["lr"],
        }
        if eval_data is not None:
            record["eval_accuracy"] = distributed.sharded_accuracy(module, *eval_data)
            better = result.best_accuracy is None or record["eval_accuracy"] > result.best_accuracy
            if better:
                result.best_accuracy, result.best_epoch, bad_epochs = record["eval_accuracy"], epoch + 1, 0
                best_state = {k: v.detach().clone().cpu() for k, v in module.state_dict().items()}
                if primary:
                    _save(torch, {"model": best_state, "epoch": epoch}, checkpoint_dir / BEST)
            else:
                bad_epochs += 1
                if config.early_stopping is not None and bad_epochs >= config.early_stopping:
                    result.stopped_early = True
        result.history.append(record)
        progress.log(
            f"{description} epoch {epoch + 1}: loss {record['loss']:.4f}"
            + (f", eval accuracy {record['eval_accuracy']:.4f}" if "eval_accuracy" in record else "")
        )
        checkpoint = {
            "model": module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": result.history,
            "best_accuracy": result.best_accuracy,
            "best_epoch": result.best_epoch,
            "bad_epochs": bad_epochs,
            "stopped_early": result.stopped_early,
            "epoch": epoch,
            "extra": extra or {},
        }
        if primary:  # replaced atomically: a crash mid-write never leaves a damaged checkpoint to resume from
            _save(torch, checkpoint, last)
        progress.epoch(dict(record))  # after the save: a search that stops the trial here loses nothing
    if config.keep_best and best_state is not None and result.best_epoch is not None:
        module.load_state_dict(best_state)
        if after_step is not None:
            after_step()
    module.to("cpu").eval()  # export and evaluation run on CPU tensors
    result.seconds = time.perf_counter() - started
    return result


def _save(torch, state: dict, path: Path) -> None:
    """torch.save through a file object: a link at `path` is refused, never written through."""
    from modelforge.safe_files import open_for_write

    with open_for_write(path) as file:
        torch.save(state, file)


def load_tensors(data, limit: int | None = None) -> tuple[tuple, Any]:
    """A bound data set in memory: (input tensors in model-input order, int64 labels)."""
    import numpy as np
    import torch

    if data is None:
        return None
    chunks: dict[str, list] = {name: [] for name in data.keys}
    for batch in data.batches(512):
        for name, array in batch.items():
            chunks[name].append(array)
    arrays = tuple(torch.from_numpy(np.concatenate(parts)) for parts in chunks.values())
    labels = data.labels()
    label_tensor = torch.from_numpy(np.asarray(labels, dtype=np.int64)) if labels is not None else None
    if limit is not None:
        arrays = tuple(a[:limit] for a in arrays)
        label_tensor = label_tensor[:limit] if label_tensor is not None else None
    return arrays, label_tensor
