"""Language models on OpenVINO: the stateful IR's next-token log-probabilities (for evaluate.lm.Reference, which
computes perplexity, KL and top-1 agreement the same way as on onnxruntime), NNCF's calibration feeds, and
prefill/decode tokens/s through openvino_genai.LLMPipeline with the KV cache.

The original is scored in float32 inference precision (INFERENCE_PRECISION_HINT f32: the model as it is); the
result at OpenVINO's defaults, as LLMPipeline runs the folder it ships (bf16 activations on a CPU with AVX-512 BF16
or AMX): the gates judge what ships. Speed runs both at the pipeline's defaults, as a user would, with
INFERENCE_NUM_THREADS when threads are given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _feed(names: set[str], ids: np.ndarray) -> dict[str, np.ndarray]:
    feed: dict[str, np.ndarray] = {"input_ids": ids[None, :].astype(np.int64)}
    if "attention_mask" in names:
        feed["attention_mask"] = np.ones((1, len(ids)), dtype=np.int64)
    if "position_ids" in names:
        feed["position_ids"] = np.arange(len(ids), dtype=np.int64)[None, :]
    if "beam_idx" in names:
        feed["beam_idx"] = np.zeros((1,), dtype=np.int32)
    return feed


class OVGraph:
    """optimum-intel's stateful decoder (the KV cache is internal state), run on whole windows from a reset state."""

    def __init__(self, model: Any, threads: int | None = None, exact: bool = False):
        """`model`: an IR path (openvino_model.xml) or an ov.Model; `exact`: float32 inference precision (the
        original), else OpenVINO's default precision on this CPU (the result as it ships)."""
        import openvino as ov

        core = ov.Core()
        source = core.read_model(str(model)) if isinstance(model, Path) else model
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"} if exact else {}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(source, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.names = {name for port in self.compiled.inputs for name in port.get_names()}

    def log_probs(self, ids: np.ndarray) -> np.ndarray:
        """[len(ids), vocab] log-probabilities of the next token after each position."""
        self.request.reset_state()
        self.request.infer(_feed(self.names, ids))
        logits = self.request.get_tensor("logits").data[0].astype(np.float64)
        shifted = logits - logits.max(axis=-1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def default_precision() -> str:
    """OpenVINO's default inference precision on this CPU (bf16 where it has AVX-512 BF16 or AMX, else f32)."""
    import openvino as ov

    return str(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name())


def ov_feeds(model: Any, windows: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The windows as the IR takes them: NNCF's calibration dataset (AWQ, scale estimation, GPTQ, data-aware
    ratio). NNCF resets the state before each item."""
    names = {name for port in model.inputs for name in port.get_names()}
    return [_feed(names, ids) for ids in windows]


class OVGenerator:
    """One OpenVINO LM folder under openvino_genai.LLMPipeline, greedy, exactly `new_tokens` new tokens."""

    def __init__(self, folder: Path, threads: int | None = None):
        import openvino as ov
        import openvino_genai

        properties = {"INFERENCE_NUM_THREADS": threads} if threads else {}
        self.ov, self.genai = ov, openvino_genai
        self.pipeline = openvino_genai.LLMPipeline(str(folder), "CPU", **properties)

    def once(self, prompt: list[int], new_tokens: int) -> tuple[float, float]:
        """(prefill tokens/s, decode tokens/s): the prompt over the time to the first token, and the mean time
        per later token, from the pipeline's own performance metrics."""
        # The pipeline keeps the last call's KV cache and reuses a shared prefix: the same prompt again would
        # prefill nothing. One token that differs from the prompt's first (untimed) clears that history.
        other = self.genai.GenerationConfig()
        other.max_new_tokens = 1
        other.do_sample = False
        flush = prompt[-1] if prompt[-1] != prompt[0] else prompt[0] + 1
        self.pipeline.generate(self.ov.Tensor(np.asarray([[flush]], dtype=np.int64)), other)
        config = self.genai.GenerationConfig()
        config.max_new_tokens = config.min_new_tokens = new_tokens
        config.ignore_eos = True
        config.do_sample = False
        ids = self.ov.Tensor(np.asarray(prompt, dtype=np.int64)[None, :])
        metrics = self.pipeline.generate(ids, config).perf_metrics
        first_ms, per_token_ms = metrics.get_ttft().mean, metrics.get_tpot().mean
        return len(prompt) / max(first_ms / 1000, 1e-9), 1000 / max(per_token_ms, 1e-9)
