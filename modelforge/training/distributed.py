"""Data-parallel training under `torchrun` (PyTorch DistributedDataParallel): one process per rank.

torchrun sets RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT; `init_from_env` joins the process group (gloo on
CPU, nccl when CUDA is present). Every rank runs the same recipe; the training loop shards the samples with a
`DistributedSampler`, seeds each rank apart, and all-reduces its metrics, so every rank takes the same
early-stopping and best-epoch decisions. Only rank 0 writes (checkpoints, the output folder).

`world_size()` and `rank()` read the environment only (no torch import), so the pipeline can ask cheaply.
"""

from __future__ import annotations

import os
from datetime import timedelta


def world_size() -> int:
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def rank() -> int:
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def is_distributed() -> bool:
    return world_size() > 1


def is_primary() -> bool:
    """Rank 0 (or a single process): the one that writes."""
    return rank() == 0


def init_from_env(timeout_s: float = 600) -> str | None:
    """Join torchrun's process group once; returns the backend, or None outside torchrun."""
    if not is_distributed():
        return None
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return dist.get_backend()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return backend


def active() -> bool:
    """A process group with more than one rank is up (the training loop goes data-parallel)."""
    if not is_distributed():
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def shutdown() -> None:
    if is_distributed():
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def all_reduce_sum(values: list[float], device=None) -> list[float]:
    """Sum numbers over ranks (float64 on the wire); unchanged outside a process group."""
    if not active():
        return list(values)
    import torch
    import torch.distributed as dist

    if device is None:
        device = torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().tolist()


def barrier() -> None:
    if active():
        import torch.distributed as dist

        dist.barrier()


def sharded_accuracy(module, inputs: tuple, labels, batch_size: int = 256) -> float:
    """Top-1 accuracy with the samples split over ranks (every rank's share, then all-reduced)."""
    from modelforge.training.accuracy import accuracy

    if not active():
        return accuracy(module, inputs, labels, batch_size)
    import torch.distributed as dist

    r, n = dist.get_rank(), dist.get_world_size()
    mine = tuple(t[r::n] for t in inputs), labels[r::n]
    count = int(mine[1].shape[0])
    correct = accuracy(module, *mine, batch_size) * count if count else 0.0
    correct, total = all_reduce_sum([correct, float(count)])
    return round(correct) / max(1.0, total)


def peer_failure(exc: BaseException) -> bool:
    """A collective failed because another rank went away (gloo/nccl report it as a RuntimeError)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    names = {type(e).__name__ for e in (exc, exc.__cause__) if e is not None}
    return bool(names & {"DistBackendError", "DistNetworkError"}) or any(
        marker in text for marker in ("Connection closed by peer", "Connection reset by peer", "Broken pipe")
    )
