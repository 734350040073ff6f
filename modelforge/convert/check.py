"""The numerical check every conversion to ONNX passes: the ONNX form must compute what the framework model does.

An exporter can produce a model that loads and runs yet computes something else (tf2onnx's `continue_on_error`,
an op a PyTorch exporter traces wrongly, a dynamic axis frozen to the example's size). So every conversion runs
both models on real samples and records the max absolute difference and the cosine similarity; beyond tolerance
the conversion is a failed pass (exit 3), never a silently wrong model. One helper for every converter.
"""

from __future__ import annotations

import numpy as np

from modelforge.errors import PassError

# A conversion differing by more than this (absolute, scaled by the output's magnitude when above 1) or with
# a cosine below MIN_COSINE fails. Float32 kernels reorder sums: a faithful conversion stays near 1e-6.
MAX_ABS_TOLERANCE = 1e-4
MIN_COSINE = 0.9999
CHECK_SAMPLES = 32


def compare_outputs(reference: list[np.ndarray], converted: list[np.ndarray]) -> dict[str, float]:
    """Max absolute difference, mean per-sample cosine, and the tolerance they were held to."""
    max_abs, cosines, scale = 0.0, [], 1.0
    for ref, out in zip(reference, converted, strict=True):
        ref = (
            np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
            if np.ndim(ref)
            else np.asarray(ref, np.float64).reshape(1, 1)
        )
        out = np.asarray(out, dtype=np.float64).reshape(ref.shape)
        max_abs = max(max_abs, float(np.abs(ref - out).max(initial=0.0)))
        scale = max(scale, float(np.abs(ref).max(initial=0.0)))
        norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
        same = np.all(ref == out, axis=1)
        cosines.append(np.where(same, 1.0, (ref * out).sum(axis=1) / np.maximum(norms, 1e-30)))
    return {
        "max_abs_diff": max_abs,
        "cosine": float(np.concatenate(cosines).mean()) if cosines else 1.0,
        "max_abs_tolerance": MAX_ABS_TOLERANCE * scale,
        "min_cosine": MIN_COSINE,
    }


def check_agreement(reference: list[np.ndarray], converted: list[np.ndarray], framework: str, hint: str) -> dict:
    """compare_outputs, and a PassError (exit 3) when the ONNX form disagrees beyond tolerance."""
    if any(np.shape(r) != np.shape(c) for r, c in zip(reference, converted, strict=True)):
        shapes = [list(np.shape(c)) for c in converted]
        raise PassError("convert", f"the ONNX form returns other output shapes than {framework} ({shapes})")
    check = compare_outputs(reference, converted)
    if not (check["max_abs_diff"] <= check["max_abs_tolerance"] and check["cosine"] >= MIN_COSINE):
        raise PassError(
            "convert",
            f"the ONNX form disagrees with the {framework} model: max abs diff {check['max_abs_diff']:.3g} "
            f"(tolerance {check['max_abs_tolerance']:.3g}), cosine {check['cosine']:.6f} (min {MIN_COSINE})",
            hint=hint,
        )
    return check
