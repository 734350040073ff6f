"""Run onnxruntime-genai's model builder (`python -m modelforge.convert.genai_build ARGS...`, a child process).

The builder imports some vision-model classes that transformers 4.x does not have and reads the rope settings
where transformers 5 puts them; both are bridged here, in the child only, before the builder is imported. The
environment is offline (no hub access): the builder reads the local folder alone.
"""

from __future__ import annotations

import os
import runpy
import sys

# Classes the builder imports at module level, for architectures modelforge never routes to it when missing.
OPTIONAL_CLASSES = (
    "Gemma3ForConditionalGeneration",
    "Lfm2VlForConditionalGeneration",
    "Mistral3ForConditionalGeneration",
    "Qwen2_5_VLForConditionalGeneration",
    "Qwen3_5ForConditionalGeneration",
    "Qwen3_5MoeForConditionalGeneration",
    "Qwen3VLForConditionalGeneration",
)


def _bridge_transformers() -> None:
    from modelforge.model.huggingface.offline import import_transformers

    transformers = import_transformers()
    missing = [name for name in OPTIONAL_CLASSES if not hasattr(transformers, name)]
    module = sys.modules["transformers"]  # the lazy module replaces itself once loaded: set names on the live one
    for name in missing:
        setattr(module, name, type(name, (), {}))
    auto = module.AutoConfig
    load = auto.from_pretrained.__func__

    def from_pretrained(cls, *args, **kwargs):
        config = load(cls, *args, **kwargs)
        if getattr(config, "rope_scaling", 0) is None:  # transformers 4: None; the builder iterates it
            config.rope_scaling = {}
        if not isinstance(getattr(config, "rope_parameters", None), dict) and hasattr(config, "rope_theta"):
            config.rope_parameters = {"rope_type": "default", "rope_theta": config.rope_theta}
        return config

    auto.from_pretrained = classmethod(from_pretrained)


def main() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    _bridge_transformers()
    sys.argv = ["onnxruntime_genai.models.builder", *sys.argv[1:]]
    runpy.run_module("onnxruntime_genai.models.builder", run_name="__main__")


if __name__ == "__main__":
    main()
