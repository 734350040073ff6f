"""What pruning and distillation need to know about a Hugging Face encoder: where its transformer layers are
(BERT-style `encoder.layer`), whether its attention and feed-forward blocks have the layout we can rewrite, and a
wrapper that turns it into a plain `module(*tensors) -> logits` for the shared training loop and Torch-Pruning.

The layout is checked on the module tree, not trusted from config.json's model_type: BERT, RoBERTa, XLM-R,
CamemBERT and ELECTRA share it; DistilBERT (`transformer.layer`, `q_lin`), ALBERT (one shared layer), ViT and
decoder models do not, and are refused with exit 2 naming what was found.
"""

from __future__ import annotations

from typing import Any

from modelforge.errors import InputError

# The model types whose classes we have run through these engines (tests build BERT; RoBERTa has the same modules).
SUPPORTED = ("bert", "roberta", "xlm-roberta", "camembert", "electra")
SUPPORTED_TEXT = f"BERT-style encoders with encoder.layer[i].attention.self.query/key/value ({', '.join(SUPPORTED)})"


def _describe(model) -> str:
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None) or "unknown"
    return f"{model_type} ({type(model).__name__})"


def encoder_layers(model, what: str):
    """The encoder's ModuleList of transformer layers and its dotted name inside `model`; exit 2 (InputError)
    naming the model type when the layout is not the BERT one (`what` says which engine refused it)."""
    base = getattr(model, "base_model", None)
    encoder = getattr(base, "encoder", None)
    layers = getattr(encoder, "layer", None)
    reason = None
    if layers is None or not hasattr(layers, "__len__") or len(layers) == 0:
        reason = "it has no encoder.layer list"
    elif getattr(model.config, "model_type", None) not in SUPPORTED:
        reason = f"model type {model.config.model_type!r} is not one of {', '.join(SUPPORTED)}"
    else:
        for index, layer in enumerate(layers):
            missing = [name for name in _LAYER_PARTS if _get(layer, name) is None]
            if missing:
                reason = f"encoder layer {index} has no {missing[0]}"
                break
        if reason is None and getattr(model.config, "is_decoder", False):
            reason = "it is configured as a decoder (cross-attention and caches are not rewritten)"
    if reason is not None:
        raise InputError(
            f"{what} does not support the Hugging Face model {_describe(model)}: {reason}",
            hint=f"supported: {SUPPORTED_TEXT}",
        )
    prefix = next(name for name, module in model.named_modules() if module is layers)
    return layers, prefix


_LAYER_PARTS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)


def _get(module, dotted: str):
    for part in dotted.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def check_sequence_classifier(model, what: str) -> None:
    """The training loop, accuracy and KD losses work on [batch, classes] scores: a sequence-classification head.
    Token classification and embedding models are refused (exit 2) until the loop knows their outputs."""
    architectures = getattr(model.config, "architectures", None) or [type(model).__name__]
    if not type(model).__name__.endswith("ForSequenceClassification"):
        raise InputError(
            f"{what} needs a sequence-classification model; {_describe(model)} ({', '.join(architectures)}) is not "
            "(token classification and feature extraction are not supported by this engine yet)",
            hint="use a *ForSequenceClassification folder with labelled training data",
        )


# Fine-tuning a pre-trained transformer takes a small learning rate: the CNN defaults (1e-3, 3e-3) wreck its weights.
TRANSFORMER_LR = 5e-5


def transformer_train(config):
    """The training settings for a transformer: the caller's, except a learning rate nobody set explicitly (the
    recipe default made for CNNs), which becomes TRANSFORMER_LR."""
    train = config.train
    if "train" in config.model_fields_set and "lr" in train.model_fields_set:
        return train
    return train.model_copy(update={"lr": TRANSFORMER_LR})


def logits_module(model, input_names: tuple[str, ...]):
    """`model` as a module called with tensors in `input_names` order, returning the logits tensor: the shared
    training loop, the distillation losses and Torch-Pruning all call `module(*tensors)` and read one tensor."""
    import torch

    class EncoderLogits(torch.nn.Module):
        def __init__(self, inner, names: tuple[str, ...]):
            super().__init__()
            self.model = inner
            self.names = tuple(names)

        def forward(self, *tensors: Any):
            return self.model(**dict(zip(self.names, tensors, strict=True)), return_dict=True).logits

    return EncoderLogits(model, input_names)
