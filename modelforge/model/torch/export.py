"""Export a trained or pruned nn.Module: to a `torch.export` program (.pt2, batch dimension dynamic) and ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelforge.errors import InputError, PassError, first_line

MAX_BATCH = 4096


def export_program(module, example: tuple, stage: str = "export") -> Any:
    """torch.export the module in eval mode with a dynamic batch dimension on every input."""
    import torch

    module.eval()
    if example[0].shape[0] < 2:  # a batch of one would be specialised to 1
        example = tuple(torch.cat([t, t]) for t in example)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    try:
        return torch.export.export(module, example, dynamic_shapes=tuple({0: batch} for _ in example))
    except Exception as exc:
        first = first_line(exc)
        raise PassError(stage, f"torch.export failed: {first}") from None


def save_program(
    module, example: tuple, path: Path, extra: dict[str, str] | None = None, root: Path | None = None
) -> Path:
    """Save as a .pt2 through a file object: a link at `path` (or between `root` and it) is refused, not
    followed (modelforge.safe_files)."""
    import torch

    from modelforge.safe_files import open_for_write

    program = export_program(module, example)
    with open_for_write(path, root) as file:
        torch.export.save(program, file, extra_files=extra or None)
    return path


def trace_check(module, example: tuple, what: str) -> None:
    """Bad input, not a failed pass: a model that cannot be traced is refused before any work."""
    import torch

    module.eval()
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    example = tuple(torch.cat([t, t]) for t in example) if example[0].shape[0] < 2 else example
    try:
        torch.export.export(module, example, dynamic_shapes=tuple({0: batch} for _ in example))
    except Exception as exc:
        first = first_line(exc)
        raise InputError(f"{what} cannot be traced by torch.export: {first}") from None
