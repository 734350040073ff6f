"""Structured pruning of a Hugging Face encoder: whole attention heads and feed-forward (FFN) neurons, so the
result is a smaller dense transformers model that `from_pretrained` reloads with no modelforge code.

- Heads: ranked per layer by the existing importance measures (L1 / L2 norm of the head's query, key, value rows
  and output columns, or first-order Taylor |w * dL/dw| on one labelled batch); the same share is removed in every
  layer through the architecture's own `prune_heads`, which records them in config.json's `pruned_heads` (how
  transformers reloads layers with different head counts).
- FFN neurons: Torch-Pruning's dependency graph removes the intermediate layer's output channels with the matching
  input columns of the FFN's output projection; every other linear layer is ignored, so the hidden size (and
  embeddings, residual stream, classifier) stays. The same share per layer keeps one `intermediate_size`.

Then one fine-tuning run (modelforge.training's loop), a save with `save_pretrained(safe_serialization=True)`,
and a reload check: the saved folder must give the pruned model's logits. Only BERT-style encoders
(modelforge.pruning.hf_encoder) are supported; others exit 2 with the reason.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelforge.errors import InputError, PassError
from modelforge.progress import Progress

if TYPE_CHECKING:
    from modelforge.data import BoundDataset
    from modelforge.pruning.config import PruneConfig

WHAT = "attention-head and FFN pruning"


def check_config(config: PruneConfig) -> tuple[float, float]:
    """(head share, FFN share) to remove; the options this engine does not implement are refused (exit 2)."""
    if config.method != "structured":
        raise InputError(f"method {config.method}: a Hugging Face encoder is pruned with method structured "
                         "(attention heads and FFN neurons)")  # fmt: skip
    if config.target_macs is not None:
        raise InputError("target_macs is not supported for a Hugging Face encoder; give sparsity")
    if config.schedule != "one-shot":
        raise InputError("schedule gradual is not supported for a Hugging Face encoder; use one-shot")
    if config.importance == "bn-scale":
        raise InputError("importance bn-scale needs BatchNorm layers; a transformer has none (use l1, l2 or taylor)")
    ffn = float(config.sparsity if config.sparsity is not None else 0.5)
    heads = float(config.head_sparsity if config.head_sparsity is not None else ffn)
    return heads, ffn


def _head_params(attention) -> list[tuple[Any, int]]:
    """(weight, axis of the head dimension) for the tensors a head owns."""
    own = attention.self
    return [(own.query.weight, 0), (own.query.bias, 0), (own.key.weight, 0), (own.key.bias, 0),
            (own.value.weight, 0), (own.value.bias, 0), (attention.output.dense.weight, 1)]  # fmt: skip


def head_scores(layers, importance: str) -> list[Any]:
    """Per layer, one score per remaining head: sum of |w|, w^2, or |w * grad| (taylor: gradients already set)."""
    import torch

    scores = []
    with torch.no_grad():
        for layer in layers:
            own = layer.attention.self
            total = torch.zeros(own.num_attention_heads)
            for weight, axis in _head_params(layer.attention):
                if weight is None:
                    continue
                if importance == "taylor":
                    values = (weight * weight.grad).abs() if weight.grad is not None else torch.zeros_like(weight)
                else:
                    values = weight.abs() if importance == "l1" else weight.pow(2)
                per_head = values.movedim(axis, 0).reshape(own.num_attention_heads, -1).sum(1)
                total += per_head.float().cpu()
            scores.append(total)
    return scores


def heads_to_remove(layers, scores, share: float) -> dict[int, list[int]]:
    """The least important `share` of each layer's heads, as original head indices (what prune_heads and
    config.pruned_heads take); at least one head stays in every layer."""
    chosen: dict[int, list[int]] = {}
    for index, (layer, score) in enumerate(zip(layers, scores, strict=True)):
        count = layer.attention.self.num_attention_heads
        remove = min(count - 1, int(round(count * share)))
        if remove <= 0:
            continue
        original = layer.attention.self.num_attention_heads + len(layer.attention.pruned_heads)
        remaining = [h for h in range(original) if h not in layer.attention.pruned_heads]
        weakest = score.argsort()[:remove].tolist()
        chosen[index] = sorted(remaining[i] for i in weakest)
    return chosen


def prune_ffn(wrapper, layers, example: tuple, share: float, importance: str, taylor_batch) -> None:
    """Remove `share` of every layer's FFN neurons through Torch-Pruning, every other layer ignored."""
    import torch

    from modelforge.pruning.structured import _prune_once, import_tp, importance_of

    tp = import_tp()
    roots = {id(layer.intermediate.dense) for layer in layers}
    ignored = [m for m in wrapper.modules() if isinstance(m, torch.nn.Linear) and id(m) not in roots]
    try:
        _prune_once(tp, wrapper, example, share, importance_of(importance), importance, ignored, None, taylor_batch)
    except (AssertionError, RuntimeError, ValueError, IndexError) as exc:  # Torch-Pruning's errors are asserts
        raise PassError("prune", f"FFN pruning failed: {type(exc).__name__}: {exc}") from None
    finally:
        wrapper.zero_grad(set_to_none=True)
    sizes = {layer.intermediate.dense.out_features for layer in layers}
    if len(sizes) != 1 or any(layer.output.dense.in_features not in sizes for layer in layers):
        raise PassError("prune", f"FFN pruning left layers with different intermediate sizes {sorted(sizes)}")
    wrapper.model.config.intermediate_size = sizes.pop()


def layer_sizes(layers) -> list[dict[str, int]]:
    return [
        {"heads": layer.attention.self.num_attention_heads, "ffn": layer.intermediate.dense.out_features}
        for layer in layers
    ]


def prune_encoder(wrapper, layers, example: tuple, *, heads: float, ffn: float, importance: str, taylor_batch):
    """Heads, then FFN neurons, in place on the logits wrapper's model; returns the heads removed per layer."""
    from modelforge.pruning.structured import _taylor_gradients

    model = wrapper.model
    model.eval()
    if importance == "taylor":
        _taylor_gradients(wrapper, *taylor_batch)
    chosen = heads_to_remove(layers, head_scores(layers, importance), heads) if heads > 0 else {}
    wrapper.zero_grad(set_to_none=True)
    if chosen:
        model.prune_heads(chosen)  # also records them in config.pruned_heads, which from_pretrained replays
    if ffn > 0:
        prune_ffn(wrapper, layers, example, ffn, importance, taylor_batch)
    model.eval()
    return chosen


def check_reload(folder: Path, wrapper, example: tuple, pass_name: str = "prune") -> float:
    """Reload the saved folder as a user would and compare logits: a config that does not describe the saved
    shapes (pruned heads, FFN size, layer count) fails here (exit 3), not in the user's hands."""
    import torch

    from modelforge.model.huggingface.offline import import_transformers
    from modelforge.pruning.hf_encoder import logits_module

    transformers = import_transformers()
    cls = getattr(transformers, type(wrapper.model).__name__)
    try:
        again = cls.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise PassError(pass_name, f"the saved model does not reload from {folder}: {exc}") from None
    reloaded = logits_module(again.eval(), wrapper.names)
    wrapper.eval()
    with torch.no_grad():
        diff = float((reloaded(*example) - wrapper(*example)).abs().max())
    if diff > 1e-4:
        raise PassError(pass_name, f"the reloaded model's logits differ by {diff:.3g} from the trained model's")
    return diff


def run_hf_pruning(
    model,
    config: PruneConfig,
    *,
    train: BoundDataset | None,
    evaluation: BoundDataset | None,
    seed: int,
    workdir: Path,
    checkpoints: Path,
    progress: Progress,
):
    """Prune heads and FFN neurons of the Hugging Face `model`, fine-tune, save to `workdir`/model (config.json +
    model.safetensors) and return a PruneResult whose path is that folder. Checkpoints as run_pruning's."""
    import torch

    from modelforge.pruning.hf_encoder import (
        check_sequence_classifier,
        encoder_layers,
        logits_module,
        transformer_train,
    )
    from modelforge.pruning.run import PruneResult, _tensors, weights_sizes
    from modelforge.pruning.structured import count_macs_params
    from modelforge.training import accuracy
    from modelforge.training import train as train_loop
    from modelforge.training.checkpoints import check_checkpoint_dir, finish_checkpoints

    heads, ffn = check_config(config)
    check_sequence_classifier(model, WHAT)
    layers, _ = encoder_layers(model, WHAT)
    if config.skip_layers:
        raise InputError("skip_layers is not supported for a Hugging Face encoder (every layer is pruned alike)")
    torch.manual_seed(seed)
    train_t, eval_t = _tensors(train, evaluation)
    wrapper = logits_module(model, tuple(train.keys))
    for parameter in wrapper.parameters():
        parameter.requires_grad_(True)
    example = tuple(t[:2] for t in train_t[0])
    check_checkpoint_dir(checkpoints)
    if not config.resume and config.checkpoint_dir is None:
        shutil.rmtree(checkpoints, ignore_errors=True)  # the cache's folder: a fresh run starts clean

    macs_before, params_before = count_macs_params(wrapper, example)
    sizes_before, bytes_before = layer_sizes(layers), weights_sizes(wrapper)[0]
    record: dict[str, Any] = {
        "method": "structured (attention heads + FFN neurons, Hugging Face encoder)",
        "importance": config.importance,
        "head_sparsity": heads,
        "ffn_sparsity": ffn,
        "learning_rate": transformer_train(config).lr,
        "params_before": params_before,
        "macs_before": macs_before,
        "accuracy_before_prune": accuracy(wrapper, *eval_t) if eval_t else None,
    }
    taylor_batch = (tuple(t[:64] for t in train_t[0]), train_t[1][:64])
    chosen = prune_encoder(
        wrapper, layers, example, heads=heads, ffn=ffn, importance=config.importance, taylor_batch=taylor_batch
    )
    record["accuracy_after_prune"] = accuracy(wrapper, *eval_t) if eval_t else None
    progress.log(f"pruned {sum(map(len, chosen.values()))} heads and {ffn:.0%} of the FFN neurons; fine-tuning next")
    result = train_loop(
        wrapper,
        train_t,
        eval_t,
        transformer_train(config),
        checkpoint_dir=checkpoints / "step-1",
        seed=seed + 1,
        progress=progress,
        resume=config.resume,
        extra={"step": 1},
        description="fine-tune",
    )
    folder = workdir / "model"
    model.save_pretrained(str(folder), safe_serialization=True)
    macs, params = count_macs_params(wrapper, example)
    record.update(
        accuracy_after_finetune=accuracy(wrapper, *eval_t) if eval_t else None,
        heads_removed={str(k): v for k, v in chosen.items()},
        layers=[
            {"layer": i, "before": b, "after": a}
            for i, (b, a) in enumerate(zip(sizes_before, layer_sizes(layers), strict=True))
        ],
        intermediate_size=model.config.intermediate_size,
        params_after=params,
        macs_after=macs,
        params_ratio=params / params_before if params_before else None,
        macs_ratio=macs / macs_before if macs_before else None,
        weights_bytes_before=bytes_before,
        weights_bytes_after=weights_sizes(wrapper)[0],
        reload_max_abs_diff=check_reload(folder, wrapper, example),
        best_epoch=result.best_epoch,
        training_curve=result.history,
        steps=[{"step": 1, "target": ffn, "accuracy_after_finetune": None}],
    )
    record["steps"][0]["accuracy_after_finetune"] = record["accuracy_after_finetune"]
    kept = finish_checkpoints(checkpoints / "step-1", checkpoints, workdir, named=config.checkpoint_dir is not None,
                              record=record)  # fmt: skip
    return PruneResult(folder, record, kept)
