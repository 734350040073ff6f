"""Which layers pruning touches: convolutions and linear layers, minus the skipped ones.

By default the first convolution (it sees raw pixels, has few channels, and pruning it costs accuracy for
little gain) and the classifier (its outputs are the classes) are kept whole.
"""

from __future__ import annotations

from modelforge.errors import InputError


def prunable_layers(module) -> dict[str, object]:
    """name -> Conv2d / ConvTranspose2d / Linear layer, in module order."""
    import torch

    kinds = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)
    return {name: layer for name, layer in module.named_modules() if isinstance(layer, kinds)}


def default_skipped(module, first_conv: bool = True, classifier: bool = True) -> list[str]:
    import torch

    layers = prunable_layers(module)
    skipped = []
    convs = [n for n, layer in layers.items() if isinstance(layer, torch.nn.Conv2d)]
    if first_conv and convs:
        skipped.append(convs[0])
    linears = [n for n, layer in layers.items() if isinstance(layer, torch.nn.Linear)]
    if classifier and linears:
        skipped.append(linears[-1])
    return skipped


def resolve_skip(module, names: list[str]) -> list[str]:
    """Layer names to skip, checked: an unknown name is a usage error naming the layers there are."""
    layers = prunable_layers(module)
    for name in names:
        if name not in layers:
            known = ", ".join(list(layers)[:12]) + (", ..." if len(layers) > 12 else "")
            raise InputError(f"skip layer {name!r} is not a prunable layer of the model (layers: {known})")
    return list(names)
