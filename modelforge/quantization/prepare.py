"""Prepare a float ONNX model for quantization: weights as initializers, fused and shape-inferred.

Calibration and quantization must see the same graph that will run: folding BatchNorm into Conv and
fusing first means one QDQ pair per fused op instead of one per original op (fewer requantizations).
"""

from __future__ import annotations

from pathlib import Path

from modelforge.errors import PassError
from modelforge.onnx_model import constants_to_initializers, load_onnx, save_onnx


def prepare_for_quantization(source: Path, workdir: Path, pass_name: str) -> tuple[Path, dict[str, int]]:
    """Returns the prepared model's path and what was done (for the stage record)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = load_onnx(source)
    moved = constants_to_initializers(model)
    staged = workdir / "float-staged.onnx"
    save_onnx(model, staged)
    del model
    prepared = workdir / "float-prepared.onnx"
    large = staged.stat().st_size > (1 << 30) or (workdir / (staged.name + ".data")).exists()
    options = dict(
        save_as_external_data=large,
        all_tensors_to_one_file=True,
        external_data_location=prepared.name + ".data",
    )
    try:
        quant_pre_process(str(staged), str(prepared), **options)
        symbolic = True
    except Exception:  # symbolic shape inference rejects some graphs; plain ONNX shape inference still works
        try:
            quant_pre_process(str(staged), str(prepared), skip_symbolic_shape=True, **options)
            symbolic = False
        except Exception as exc:
            raise PassError(pass_name, f"graph preparation failed: {str(exc).splitlines()[0]}") from None
    return prepared, {"constants_to_initializers": moved, "symbolic_shape_inference": int(symbolic)}
