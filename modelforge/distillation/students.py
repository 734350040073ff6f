"""Where the student comes from: a user's `.pt2` program (rebuilt into real nn layers), a factory (with optional
weights), or the teacher itself made narrower by structured channel pruning (`student_from_teacher` = the width
kept, e.g. 0.5: about a quarter of the parameters). Also: the shape check teacher vs student, and their sizes.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from modelforge.errors import InputError


def load_student(config, teacher, example: tuple):
    """The student nn.Module named by the distill config."""
    if config.student is not None:
        from modelforge.model.torch.loading import load_program
        from modelforge.model.torch.rebuild import rebuild_modules

        if not Path(config.student).is_file():
            raise InputError(f"student {config.student} not found")
        from modelforge.model.formats import check_bytes

        check_bytes(Path(config.student), ".pt2", role="student")
        try:
            return rebuild_modules(load_program(Path(config.student)))
        except InputError:
            raise
        except (ValueError, AttributeError, RuntimeError) as exc:
            raise InputError(f"student {config.student}: its layers cannot be rebuilt as nn modules ({exc})") from None
    if config.student_factory is not None:
        from modelforge.model.torch.loading import build_from_factory, call_factory

        if config.student_weights is not None:
            return build_from_factory(config.student_factory, Path(config.student_weights))
        return call_factory(config.student_factory)
    if getattr(config, "student_layers", None) is not None:
        raise InputError("student_layers applies to a Hugging Face encoder teacher (a folder with config.json)")
    return narrowed_teacher(teacher, config.student_from_teacher, example)


def narrowed_teacher(teacher, width: float, example: tuple):
    """A copy of the teacher with `1 - width` of the channels of every prunable layer removed (L1 importance,
    the first convolution and the classifier kept whole), through the pruning issue's Torch-Pruning path."""
    from modelforge.pruning.layers import default_skipped
    from modelforge.pruning.structured import count_macs_params, prune_channels

    student = copy.deepcopy(teacher)
    macs, _ = count_macs_params(student, example)
    prune_channels(
        student,
        example,
        ratio=1.0 - width,
        target_macs=None,
        base_macs=macs,
        importance="l1",
        skipped=default_skipped(student),
        round_to=None,
    )
    return student


def first_output(module, example: tuple):
    import torch

    module.eval()
    with torch.no_grad():
        out = module(*example)
    return out[0] if isinstance(out, tuple | list) else out


def check_output_shapes(teacher, student, example: tuple) -> tuple[list[int], list[int]]:
    """Teacher and student must give outputs of the same shape; else exit 2 naming both."""
    try:
        student_out = first_output(student, example)
    except Exception as exc:
        shapes = ", ".join(str(list(t.shape)) for t in example)
        raise InputError(
            f"the student cannot run on the training inputs {shapes}: {type(exc).__name__}: {exc}"
        ) from None
    teacher_out = first_output(teacher, example)
    t, s = list(teacher_out.shape), list(student_out.shape)
    if t != s:
        shown = (f"[{', '.join(['N', *map(str, shape[1:])])}]" for shape in (t, s))  # N: the batch
        raise InputError(
            f"teacher output shape {next(shown)} and student output shape {next(shown)} differ; the student must "
            "produce the teacher's output shape"
        )
    return t, s


def sizes(module, example: tuple) -> dict[str, Any]:
    """Parameters and MACs (Torch-Pruning's counter) and float32 weight bytes."""
    from modelforge.pruning.run import weights_sizes
    from modelforge.pruning.structured import count_macs_params

    macs, params = count_macs_params(module, example)
    return {"params": params, "macs": macs, "weights_bytes": weights_sizes(module)[0]}
