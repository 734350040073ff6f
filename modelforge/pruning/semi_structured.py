"""2:4 semi-structured sparsity: in every group of 4 consecutive weights along the input-channel axis, 2 are zero.

This is the pattern NVIDIA's sparse tensor cores (Ampere and later, through TensorRT's sparse-weights flag)
run at up to 2x the dense math rate. CPUs (and onnxruntime) have no such kernels: no speed-up there.
Layers whose input-channel count is not a multiple of 4 are not eligible and stay dense.
"""

from __future__ import annotations

from typing import Any


def _grouped(weight):
    """The weight with input channels last ([out, kh, kw, in] for convolutions), as groups of 4."""
    w = weight.detach()
    if w.dim() == 4:
        w = w.permute(0, 2, 3, 1)
    return w.reshape(-1, 4)


def eligible(layer) -> bool:
    import torch

    if isinstance(layer, torch.nn.ConvTranspose2d):
        return False  # its weight layout is [in, out, kh, kw]: TensorRT does not run it sparse
    groups = getattr(layer, "groups", 1)
    return layer.weight.shape[1] % 4 == 0 and groups == 1


def masks_2_4(layers: dict[str, Any]) -> dict[str, Any]:
    """name -> mask keeping the 2 largest |w| of each group of 4 input channels (eligible layers only)."""
    import torch

    masks = {}
    for name, layer in layers.items():
        if not eligible(layer):
            continue
        groups = _grouped(layer.weight).abs()
        keep = torch.zeros_like(groups, dtype=torch.bool)
        keep.scatter_(1, groups.topk(2, dim=1, sorted=False).indices, True)
        w = layer.weight
        if w.dim() == 4:
            out, inp, kh, kw = w.shape
            masks[name] = keep.view(out, kh, kw, inp).permute(0, 3, 1, 2).contiguous()
        else:
            masks[name] = keep.view_as(w)
    return masks


def verify_2_4(layers: dict[str, Any]) -> dict[str, bool]:
    """Per eligible layer: does every group of 4 hold at most 2 non-zeros?"""
    return {
        name: bool(((_grouped(layer.weight) != 0).sum(1) <= 2).all())
        for name, layer in layers.items()
        if eligible(layer)
    }
