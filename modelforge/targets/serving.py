"""What runtime and precision a model artifact is served with, and whether this machine can offer it.

A target pass labels its result (`runtime`, `runtime_precision` in the artifact's metadata); the evaluator opens
the result there, the writers write that runtime's files (OpenVINO IR beside model.onnx), the report says so.
"""

from __future__ import annotations

from modelforge.artifact import ModelArtifact
from modelforge.errors import InputError

RUNTIME_KEYS = ("runtime", "runtime_precision")


def serve_on(artifact: ModelArtifact, runtime: str, precision: str) -> ModelArtifact:
    """A copy of `artifact` labelled to be served on `runtime` in `precision` (the original is left alone)."""
    metadata = {**artifact.metadata, "runtime": runtime, "runtime_precision": precision}
    return ModelArtifact(artifact.path, artifact.format, artifact.io, metadata)


def check_offered(runtime: str, precision: str) -> None:
    """Exit-2 errors, before any work: the runtime's extra is missing, or this CPU cannot run the precision."""
    from modelforge.machine import precision_support

    if runtime == "openvino":
        from modelforge.backends.openvino import require_openvino

        require_openvino("target openvino")
    usable, why = precision_support(precision)
    if not usable:
        raise InputError(
            f"precision {precision} is not offered on this CPU: {why}",
            hint="use precision int8 or fp32 (modelforge doctor lists what this CPU can use)",
        )
