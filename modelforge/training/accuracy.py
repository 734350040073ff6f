"""Top-1 accuracy of a torch module on in-memory tensors (the training loop's and the distributed merge's)."""

from __future__ import annotations


def accuracy(module, inputs: tuple, labels, batch_size: int = 256) -> float:
    """Top-1 accuracy of the module (eval mode) on in-memory tensors."""
    import torch

    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, labels.shape[0], batch_size):
            batch = tuple(t[start : start + batch_size].to(device) for t in inputs)
            out = module(*batch)
            out = out[0] if isinstance(out, tuple | list) else out
            correct += int((out.argmax(1).cpu() == labels[start : start + batch_size]).sum())
    module.train(was_training)
    return correct / max(1, labels.shape[0])
