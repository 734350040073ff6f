"""A language model run's records: the summary of one candidate, the choice between candidates (--target auto),
report.json/md/html, the resolved recipe and the manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from modelforge.recipe.schema import Recipe
from modelforge.run.llm_candidate import NEW_TOKENS, PROMPT_TOKENS, SPEED_ROUNDS


def choose(candidates: list[Any], speed: dict | None, checked: dict[str, Any]) -> tuple[Any, dict]:
    """target auto: the highest decode tokens/s among the candidates that meet the gates (the lowest KL when
    latency is skipped or none meets them); the record names both candidates' figures."""
    from modelforge.run.gates import evaluate_gates

    rows = []
    for c in candidates:
        summary = _summary(c, speed)
        gates = evaluate_gates(checked["gates"], summary, frozenset(checked["defaults"]))
        rows.append((c, summary, all(g["passed"] for g in gates)))
    passing = [r for r in rows if r[2]]
    if passing and speed is not None:
        winner = max(passing, key=lambda r: r[1]["decode_tokens_per_s_result"] or 0)
        figures = ", ".join(f"{c.runtime} {s['decode_tokens_per_s_result']:.1f}" for c, s, _ in rows)
        why = f"the higher decode tokens/s among the candidates that meet the gates ({figures} tok/s)"
    elif passing:
        winner = min(passing, key=lambda r: r[1]["token_kl"])
        why = "latency skipped: the lower token KL among the candidates that meet the gates"
    else:
        winner = min(rows, key=lambda r: r[1]["token_kl"])
        why = "no candidate meets the gates: the lower token KL ships and the gates fail"
    record = {
        "chosen": {"runtime": winner[0].runtime, "weights": winner[0].quant_record["weights"]},
        "why": why,
        "candidates": [
            {
                "runtime": c.runtime,
                "weights": s["weights"],
                "perplexity_ratio": s["perplexity_ratio"],
                "token_kl": s["token_kl"],
                "top1_agreement": s["top1_agreement"],
                "decode_tokens_per_s": s["decode_tokens_per_s_result"],
                "prefill_tokens_per_s": s["prefill_tokens_per_s_result"],
                "decode_tokens_per_s_fp32": s["decode_tokens_per_s_baseline"],
                "size_bytes": s["size_bytes_result"],
                "meets_gates": ok,
                "verdict": "chosen" if c is winner[0] else "lost",
            }
            for c, s, ok in rows
        ],
        "method": "each candidate gated on its own runtime's float32 export; all four models (two float32, two "
        "quantized) timed interleaved in one loop, same prompt and threads",
    }
    return winner[0], record


def _summary(candidate: Any, speed: dict[str, dict[str, float]] | None) -> dict[str, Any]:
    metrics, base_ppl = candidate.metrics, candidate.baseline_perplexity
    size_a, size_b = candidate.size_bytes()
    speed = speed or {}
    decode = {k: speed.get(f"{candidate.runtime}:{k}", {}).get("decode_tokens_per_s") for k in ("baseline", "result")}
    prefill = {k: speed.get(f"{candidate.runtime}:{k}", {}).get("prefill_tokens_per_s") for k in ("baseline", "result")}
    return {
        "accuracy_baseline": None,
        "accuracy_result": None,
        "accuracy_drop_pp": None,
        "top1_agreement": metrics["top1_agreement"],
        "output_cosine": None,
        # One decoded token's time: the latency a language model is served at.
        "latency_p50_ms_baseline": 1000 / decode["baseline"] if decode["baseline"] else None,
        "latency_p50_ms_result": 1000 / decode["result"] if decode["result"] else None,
        "speedup": decode["result"] / decode["baseline"] if decode["baseline"] and decode["result"] else None,
        "size_bytes_baseline": size_a,
        "size_bytes_result": size_b,
        "size_ratio": size_a / size_b if size_b else None,
        "perplexity_baseline": base_ppl,
        "perplexity_result": metrics["perplexity"],
        "perplexity_ratio": metrics["perplexity"] / base_ppl if base_ppl else None,
        "token_kl": metrics["token_kl"],
        "prefill_tokens_per_s_baseline": prefill["baseline"],
        "prefill_tokens_per_s_result": prefill["result"],
        "decode_tokens_per_s_baseline": decode["baseline"],
        "decode_tokens_per_s_result": decode["result"],
        "weights": result_weights(candidate.stages),
    }


def lm_report(
    recipe: Recipe,
    candidate: Any,
    speed: dict[str, dict[str, float]] | None,
    checked: dict[str, Any],
    out: Path,
    choice: dict[str, Any] | None,
) -> dict[str, Any]:
    from modelforge.machine import machine_record
    from modelforge.report import build_report
    from modelforge.run.gates import evaluate_gates
    from modelforge.run.records import json_safe

    summary = _summary(candidate, speed)
    metrics = candidate.metrics
    stages = [dict(stage) for stage in candidate.stages]
    if choice is not None:
        stages[-1] = {**stages[-1], "metrics": {**stages[-1]["metrics"], "target_auto": choice}}
    fmt = "openvino" if candidate.runtime == "openvino" else "onnx"
    threads = recipe.evaluate.latency.threads
    runtime = (
        "openvino_genai.LLMPipeline (KV cache, greedy, EOS ignored)"
        if candidate.runtime == "openvino"
        else "onnxruntime-genai (KV cache, greedy)"
    )
    evaluated = {
        "data": f"{recipe.data.eval_data.path} (tokens)",
        "metrics": {
            "samples": metrics["tokens"],
            "accuracy_baseline": None,
            "accuracy_result": None,
            "top1_agreement": metrics["top1_agreement"],
            "output_cosine": None,
        },
        "latency": None,
        "language_model": {
            "tokens": metrics["tokens"],
            "speed": speed,
            "speed_settings": {
                "prompt_tokens": PROMPT_TOKENS,
                "new_tokens": NEW_TOKENS,
                "rounds": SPEED_ROUNDS,
                "threads": threads if threads else "runtime default",
            },
            "runtime": f"{runtime}, baseline and result interleaved",
        },
    }
    model_io = {"inputs": [], "outputs": []}
    size_a, size_b = summary["size_bytes_baseline"], summary["size_bytes_result"]
    versions = ("onnxruntime_genai", "transformers", "tokenizers", "torch")
    if candidate.runtime == "openvino":
        versions = ("openvino", "openvino-genai", "nncf", "optimum-intel", "transformers", "torch")
    report = build_report(
        recipe=recipe.model_dump(mode="json"),
        models={
            "source": str(recipe.model.path),
            "baseline": {
                "path": str(recipe.model.path),
                "format": fmt,
                "source_format": "huggingface",
                "size_bytes": size_a,
                "compute": None,
                "opset": None,
                **model_io,
            },
            "result": {
                "path": str(out / candidate.model_file),
                "format": fmt,
                "size_bytes": size_b,
                "compute": None,
                "opset": None,
                **model_io,
            },
        },
        stages=stages,
        preflight={},
        evaluation=evaluated,
        summary=summary,
        gates=evaluate_gates(checked["gates"], summary, frozenset(checked["defaults"])),
        machine=machine_record(versions),
    )
    return json_safe(report)


def result_weights(stages: list[dict[str, Any]]) -> str:
    record = stages[-1]["metrics"]
    mixed = " + int8" if record["int8_layers"] and record["weights"] != "int8" else ""
    group = f"group {record['group_size']}" if record["group_size"] else "per channel"
    return f"{record['weights']}{mixed} ({record['algo']}, {group})"


def write_records(folder: Path, report: dict[str, Any], recipe: Recipe) -> None:
    from modelforge.manifest import MANIFEST_NAME, build_manifest
    from modelforge.report.html import render_html
    from modelforge.report.markdown import render_markdown
    from modelforge.run.records import json_default
    from modelforge.safe_files import write_text

    write_text(folder / "report.json", json.dumps(report, indent=2, allow_nan=False, default=json_default) + "\n")
    write_text(folder / "report.md", render_markdown(report))
    write_text(folder / "report.html", render_html(report))
    write_text(folder / "recipe.resolved.yaml", recipe.to_yaml())
    data = {
        role: source.path
        for role, source in (("calibration", recipe.data.calibration), ("eval_data", recipe.data.eval_data))
        if source is not None
    }
    hashes = {role: hashlib.sha256(path.read_bytes()).hexdigest() for role, path in data.items()}
    manifest = build_manifest(folder, recipe.model_dump(mode="json"), hashes, report["machine"]["versions"])
    write_text(folder / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
