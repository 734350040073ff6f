"""Language-model evaluation: held-out perplexity, next-token KL divergence and top-1 agreement of a result vs
the original, and prefill/decode tokens per second with the KV cache.

Quality runs the exported graph itself (onnxruntime, an empty KV cache, one window of tokens at a time), so
baseline and result are compared on the same runtime and the same tokens. Speed runs onnxruntime-genai's
generator on the two folders, greedy, the original and the result interleaved round by round so a machine that
slows down mid-run slows both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Longest window of held-out tokens scored at once (the KV cache starts empty for each window).
WINDOW = 128


def token_windows(ids: list[int], window: int, max_tokens: int) -> list[np.ndarray]:
    """Consecutive windows of at most `window` tokens covering the first `max_tokens` ids (each >= 2 tokens)."""
    ids = ids[:max_tokens]
    chunks = [np.asarray(ids[i : i + window], dtype=np.int64) for i in range(0, len(ids), window)]
    return [c for c in chunks if len(c) >= 2]


class KVGraph:
    """An ONNX decoder with a KV cache (onnxruntime-genai's layout), run on whole windows from an empty cache."""

    def __init__(self, model: Any, head_size: int, threads: int | None = None):
        """`model`: a path or a serialized ModelProto; `head_size`: genai_config.json's (the graph leaves the
        cache's last dimension symbolic)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        source = str(model) if isinstance(model, Path) else model
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.past = {}
        for item in self.session.get_inputs():
            if item.name.startswith("past_key_values"):
                heads, dim = item.shape[1], item.shape[3]
                self.past[item.name] = (int(heads), int(dim) if isinstance(dim, int) else head_size)
        self.names = {item.name for item in self.session.get_inputs()}

    def log_probs(self, ids: np.ndarray) -> np.ndarray:
        """[len(ids), vocab] log-probabilities of the next token after each position."""
        length = len(ids)
        feeds: dict[str, np.ndarray] = {"input_ids": ids[None, :]}
        if "attention_mask" in self.names:
            feeds["attention_mask"] = np.ones((1, length), dtype=np.int64)
        if "position_ids" in self.names:
            feeds["position_ids"] = np.arange(length, dtype=np.int64)[None, :]
        for name, (heads, dim) in self.past.items():
            feeds[name] = np.zeros((1, heads, 0, dim), dtype=np.float32)
        logits = self.session.run(["logits"], feeds)[0][0].astype(np.float64)
        shifted = logits - logits.max(axis=-1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def graph_feeds(graph: KVGraph, windows: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The feeds of `windows` as the graph takes them (GPTQ's calibration reader)."""
    feeds = []
    for ids in windows:
        feed: dict[str, np.ndarray] = {"input_ids": ids[None, :]}
        if "attention_mask" in graph.names:
            feed["attention_mask"] = np.ones((1, len(ids)), dtype=np.int64)
        if "position_ids" in graph.names:
            feed["position_ids"] = np.arange(len(ids), dtype=np.int64)[None, :]
        for name, (heads, dim) in graph.past.items():
            feed[name] = np.zeros((1, heads, 0, dim), dtype=np.float32)
        feeds.append(feed)
    return feeds


@dataclass
class Reference:
    """The original's log-probabilities on the windows, computed once and compared with every candidate."""

    windows: list[np.ndarray]
    log_probs: list[np.ndarray]

    @classmethod
    def of(cls, graph: KVGraph, windows: list[np.ndarray]) -> Reference:
        return cls(windows, [graph.log_probs(ids) for ids in windows])

    def perplexity(self) -> float:
        return _perplexity(self.windows, self.log_probs)

    def compare(self, graph: KVGraph) -> dict[str, float]:
        """perplexity of `graph`, mean token KL(original || graph) in nats, top-1 agreement, tokens scored."""
        kls, agree, count, candidate = 0.0, 0, 0, []
        for ids, ref in zip(self.windows, self.log_probs, strict=True):
            got = graph.log_probs(ids)
            candidate.append(got)
            kls += float((np.exp(ref) * (ref - got)).sum())
            agree += int((ref.argmax(axis=-1) == got.argmax(axis=-1)).sum())
            count += len(ids)
        return {
            "perplexity": _perplexity(self.windows, candidate),
            "token_kl": kls / max(count, 1),
            "top1_agreement": agree / max(count, 1),
            "tokens": count,
        }


def _perplexity(windows: list[np.ndarray], log_probs: list[np.ndarray]) -> float:
    nll, count = 0.0, 0
    for ids, lp in zip(windows, log_probs, strict=True):
        nll -= float(lp[np.arange(len(ids) - 1), ids[1:]].sum())
        count += len(ids) - 1
    return float(np.exp(nll / max(count, 1)))


class GenaiGenerator:
    """One onnxruntime-genai folder, greedy with the KV cache; `threads` overrides genai_config.json's session
    options (intra-op threads) without touching the folder."""

    def __init__(self, folder: Path, threads: int | None = None):
        import json

        import onnxruntime_genai as og

        config = og.Config(str(folder))
        if threads:
            overlay = {"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}
            config.overlay(json.dumps(overlay))
        self.og, self.model = og, og.Model(config)

    def once(self, prompt: list[int], new_tokens: int) -> tuple[float, float]:
        """(prefill tokens/s, decode tokens/s) of one generation from `prompt`."""
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(max_length=len(prompt) + new_tokens, do_sample=False)
        generator = self.og.Generator(self.model, params)
        started = time.perf_counter()
        generator.append_tokens(np.asarray(prompt, dtype=np.int32))
        prefilled = time.perf_counter()
        made = 0
        while made < new_tokens and not generator.is_done():
            generator.generate_next_token()
            made += 1
        ended = time.perf_counter()
        del generator
        return len(prompt) / max(prefilled - started, 1e-9), made / max(ended - prefilled, 1e-9)


def generation_speed(
    runners: dict[str, Any], prompt: list[int], new_tokens: int, rounds: int = 3
) -> dict[str, dict[str, float]]:
    """Prefill and decode tokens/s of each runner (a GenaiGenerator or an OpenVINO one: `once(prompt, new)`),
    interleaved round by round; the median of `rounds`. Prompt and new tokens are cut to the context length."""
    times: dict[str, dict[str, list[float]]] = {name: {"prefill": [], "decode": []} for name in runners}
    for _ in range(rounds):
        for name, runner in runners.items():
            prefill, decode = runner.once(prompt, new_tokens)
            times[name]["prefill"].append(prefill)
            times[name]["decode"].append(decode)
    return {
        name: {
            "prefill_tokens_per_s": float(np.median(t["prefill"])),
            "decode_tokens_per_s": float(np.median(t["decode"])),
        }
        for name, t in times.items()
    }
