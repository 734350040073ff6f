"""The targets of `modelforge export --target`, in one table: the flag's help, its error and `explain export`
all list them from here, so that none leaves a target out."""

from __future__ import annotations

# target -> (the pass that makes it, what it writes and from what)
EXPORT_TARGETS: dict[str, tuple[str, str]] = {
    "triton": ("export", "a Triton model repository (from ONNX)"),
    "jetson": ("export", "a bundle that builds a TensorRT engine on the device (from ONNX)"),
    "tensorrt": ("export", "a TensorRT engine built here (from ONNX; NVIDIA GPU and the [tensorrt] extra)"),
    "tflite": ("tflite", "a .tflite for LiteRT (from a Keras model or SavedModel; the `tflite` pass)"),
}


def target_names(pass_name: str | None = None) -> list[str]:
    return [name for name, (made_by, _) in EXPORT_TARGETS.items() if pass_name in (None, made_by)]


def one_of(names: list[str]) -> str:
    return ", ".join(names[:-1]) + " or " + names[-1]


def describe_targets() -> str:
    return "; ".join(f"{name}: {what}" for name, (_, what) in EXPORT_TARGETS.items()) + "."
