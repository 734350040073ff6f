"""Language models on OpenVINO: the stateful IR's next-token log-probabilities (for evaluate.lm.Reference, which
computes perplexity, KL and top-1 agreement the same way as on onnxruntime), NNCF's calibration feeds, and
prefill/decode tokens/s through openvino_genai.LLMPipeline with the KV cache.

Quality runs in float32 inference precision (INFERENCE_PRECISION_HINT f32): a CPU with bf16 would otherwise round
the activations of both models, and the gates are about the weights. Speed runs at the pipeline's defaults, as a
user would, with INFERENCE_NUM_THREADS when threads are given.
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

    def __init__(self, model: Any, threads: int | None = None):
        """`model`: an IR path (openvino_model.xml) or an ov.Model."""
        import openvino as ov

        core = ov.Core()
        source = core.read_model(str(model)) if isinstance(model, Path) else model
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
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
        config = self.genai.GenerationConfig()
        config.max_new_tokens = config.min_new_tokens = new_tokens
        config.ignore_eos = True
        config.do_sample = False
        ids = self.ov.Tensor(np.asarray(prompt, dtype=np.int64)[None, :])
        metrics = self.pipeline.generate(ids, config).perf_metrics
        first_ms, per_token_ms = metrics.get_ttft().mean, metrics.get_tpot().mean
        return len(prompt) / max(first_ms / 1000, 1e-9), 1000 / max(per_token_ms, 1e-9)
