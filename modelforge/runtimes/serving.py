"""What runtime and precision a model artifact is served with, and whether this machine can offer it.

A target pass labels its result (the artifact's typed `served_on` field); the evaluator opens
the result there, the writers write that runtime's files (OpenVINO IR beside model.onnx), the report says so.
"""

from __future__ import annotations

import dataclasses

from modelforge.errors import InputError
from modelforge.model.artifact import RUNTIME_PRECISIONS, ModelArtifact, ServedOn


def serve_on(artifact: ModelArtifact, runtime: str, precision: str) -> ModelArtifact:
    """A copy of `artifact` labelled to be served on `runtime` in `precision` (the original is left alone)."""
    return dataclasses.replace(artifact, served_on=ServedOn(runtime, precision))


def check_offered(runtime: str, precision: str) -> None:
    """Exit-2 errors, before any work: the runtime's extra is missing, or this CPU cannot run the precision."""
    from modelforge.machine import precision_support

    if runtime == "openvino":
        from modelforge.runtimes.openvino import require_openvino

        require_openvino("target openvino")
    usable, why = precision_support(precision)
    if not usable:
        raise InputError(
            f"precision {precision} is not offered on this CPU: {why}",
            hint="use precision int8 or fp32 (modelforge doctor lists what this CPU can use)",
        )


RUNTIME_EXTRAS = {"onnxruntime": None, "openvino": "openvino"}


def runtime_installed(runtime: str) -> bool:
    if runtime == "openvino":
        from modelforge.runtimes.openvino import openvino_installed

        return openvino_installed()
    return True  # onnxruntime is a core dependency


def offer(runtime: str, precision: str, flags: frozenset[str] | None = None) -> tuple[bool, str]:
    """Whether `runtime` can run `precision` on this CPU (installed or not), and why."""
    from modelforge.machine import precision_support

    if precision not in RUNTIME_PRECISIONS.get(runtime, ()):
        if runtime == "onnxruntime" and precision == "bf16":
            return False, "onnxruntime's CPU provider has no bf16 execution"
        return False, f"{runtime} does not run {precision} models here"
    return precision_support(precision, flags)


def precision_matrix(flags: frozenset[str] | None = None) -> list[dict]:
    """Every CPU runtime modelforge drives, whether it is installed, and each precision usable on this CPU."""
    rows = []
    for runtime, precisions in RUNTIME_PRECISIONS.items():
        installed = runtime_installed(runtime)
        extra = RUNTIME_EXTRAS[runtime]
        rows.append(
            {
                "runtime": runtime,
                "installed": installed,
                "install": None if installed or extra is None else f"pip install 'modelforge[{extra}]'",
                "precisions": {
                    precision: dict(zip(("usable", "why"), offer(runtime, precision, flags), strict=True))
                    for precision in precisions
                },
            }
        )
    return rows
