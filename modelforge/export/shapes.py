"""Optimization-profile shapes (min / opt / max per input) for TensorRT, from the model and the export config.

A fixed dimension is used as is; a dynamic first (batch) axis spans min_batch..max_batch with opt_batch in
between; any other dynamic axis needs a size from `dims` (NAME=SIZE), or the export stops naming it.
"""

from __future__ import annotations

from modelforge.errors import InputError
from modelforge.model.artifact import IOSpec

Shape = tuple[int, ...]


def batch_is_dynamic(io: IOSpec) -> bool:
    return all(t.shape and not isinstance(t.shape[0], int) for t in io.inputs)


def profile_shapes(
    io: IOSpec, min_batch: int, opt_batch: int, max_batch: int, dims: dict[str, int] | None = None
) -> dict[str, tuple[Shape, Shape, Shape]]:
    """{input: (min, opt, max)}; equal shapes for a model with no dynamic axis."""
    dims = dims or {}
    profiles = {}
    for spec in io.inputs:
        low, mid, high = [], [], []
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, int):
                sizes = (dim, dim, dim)
            elif isinstance(dim, str) and dim in dims:
                sizes = (dims[dim],) * 3
            elif axis == 0:
                sizes = (min_batch, opt_batch, max_batch)
            else:
                raise InputError(
                    f"input '{spec.name}' {spec.shape_text()}: axis {axis} is dynamic",
                    hint=f"give its size with dims: {{{dim or 'NAME'}: SIZE}} (--dim {dim or 'NAME'}=SIZE)",
                )
            low.append(sizes[0])
            mid.append(sizes[1])
            high.append(sizes[2])
        profiles[spec.name] = (tuple(low), tuple(mid), tuple(high))
    return profiles


def trtexec_shapes(profiles: dict[str, tuple[Shape, Shape, Shape]]) -> list[str]:
    """--minShapes/--optShapes/--maxShapes arguments (trtexec's NAME:1x3x224x224 form)."""
    flags = []
    for flag, index in (("--minShapes", 0), ("--optShapes", 1), ("--maxShapes", 2)):
        value = ",".join(f"{name}:{'x'.join(str(d) for d in shapes[index])}" for name, shapes in profiles.items())
        flags.append(f"{flag}={value}")
    return flags
