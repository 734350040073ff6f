"""Magnitude (unstructured) pruning: zero the smallest |w|, globally or per layer, exactly the requested share.

Masks are plain boolean tensors re-applied after every optimizer step; the result is ordinary dense weights with
zeros in them (no reparametrisation left), so the export sees a normal model. Dense CPU kernels do not skip
zeros: the model gets no faster, only more compressible.
"""

from __future__ import annotations

from typing import Any


def magnitude_masks(layers: dict[str, Any], sparsity: float, scope: str = "global") -> dict[str, Any]:
    """name -> mask (True = kept) zeroing round(sparsity * n) weights, the smallest by |w|."""
    import torch

    if scope == "layer":
        masks = {}
        for name, layer in layers.items():
            w = layer.weight.detach().abs().flatten()
            k = round(sparsity * w.numel())
            mask = torch.ones_like(w, dtype=torch.bool)
            mask[torch.argsort(w, stable=True)[:k]] = False
            masks[name] = mask.view_as(layer.weight)
        return masks
    flat = torch.cat([layer.weight.detach().abs().flatten() for layer in layers.values()])
    k = round(sparsity * flat.numel())
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[torch.argsort(flat, stable=True)[:k]] = False  # exact count, ties broken by position
    masks, offset = {}, 0
    for name, layer in layers.items():
        n = layer.weight.numel()
        masks[name] = keep[offset : offset + n].view_as(layer.weight)
        offset += n
    return masks


def apply_masks(layers: dict[str, Any], masks: dict[str, Any]) -> None:
    import torch

    with torch.no_grad():
        for name, mask in masks.items():
            layers[name].weight.mul_(mask.to(layers[name].weight.device, layers[name].weight.dtype))


def masks_from_zeros(layers: dict[str, Any]) -> dict[str, Any]:
    """Masks of a model whose pruned weights are already zero (a checkpoint or a pruned .pt2)."""
    return {name: layer.weight.detach() != 0 for name, layer in layers.items()}


def sparsity_report(layers: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, layer in layers.items():
        w = layer.weight.detach()
        zeros = int((w == 0).sum())
        rows.append(
            {"layer": name, "shape": list(w.shape), "weights": w.numel(), "zeros": zeros, "sparsity": zeros / w.numel()}
        )
    return rows
