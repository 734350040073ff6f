"""A language model's OpenVINO candidate (--target openvino, and half of --target auto): optimum-intel's stateful
export in float32 (the baseline), NNCF's compress_weights (quantization.ov_weight_only), scored on the held-out
text by the IR's own logits, written as a folder that OVModelForCausalLM and openvino_genai.LLMPipeline run."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from modelforge.progress import Progress
from modelforge.recipe.schema import Recipe
from modelforge.run.llm_candidate import EVAL_TOKENS, OV_CALIBRATION_TOKENS, LMCandidate, stage_record

MODEL_XML = "openvino_model.xml"


def ir_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.name.startswith("openvino_model."))


def build_openvino(
    recipe: Recipe,
    checked: dict[str, Any],
    eval_ids: list[int],
    cal_ids: list[int] | None,
    progress: Progress,
    workdir: Path,
    dest: Path,
) -> LMCandidate:
    """Export, compress and score; the result is written into `dest`."""
    import openvino as ov

    from modelforge.convert.openvino_lm import export_openvino_lm
    from modelforge.evaluate.lm import WINDOW, Reference, token_windows
    from modelforge.evaluate.lm_openvino import OVGenerator, OVGraph, default_precision, ov_feeds
    from modelforge.quantization.llm import LMBudget
    from modelforge.quantization.ov_weight_only import check_ov_config, compress_lm

    config, folder, gates = checked["config"], recipe.model.path, checked["gates"]
    check_ov_config(config, cal_ids is not None)
    threads = recipe.evaluate.latency.threads
    started = time.perf_counter()
    with progress.task("Exporting to OpenVINO with a KV cache (optimum-intel)"):
        fp32 = export_openvino_lm(folder, workdir / "openvino-fp32")
    stages = [
        stage_record("export", started, "huggingface", "openvino", {"exporter": "optimum-intel (stateful, float32)"})
    ]
    context = int(checked.get("context") or 2048)
    window = min(WINDOW, context)

    started = time.perf_counter()
    with progress.task("Scoring the original (OpenVINO) on the held-out text"):
        evaluation = Reference.of(OVGraph(fp32, threads, exact=True), token_windows(eval_ids, window, EVAL_TOKENS))
    feeds = None
    if cal_ids is not None:
        feeds = ov_feeds(ov.Core().read_model(str(fp32)), token_windows(cal_ids, window, OV_CALIBRATION_TOKENS))
    budget = LMBudget(gates.max_perplexity_ratio, gates.max_token_kl)
    result = compress_lm(
        fp32,
        config,
        feeds,
        lambda model: evaluation.compare(OVGraph(model, threads)),
        evaluation.perplexity(),
        budget,
        progress.task,
    )
    dest.mkdir(parents=True, exist_ok=True)
    for item in sorted(fp32.parent.iterdir()):
        if item.is_file() and not item.is_symlink() and not item.name.startswith("openvino_model."):
            shutil.copyfile(item, dest / item.name)
    ov.save_model(result.model, str(dest / MODEL_XML), compress_to_fp16=False)
    record = {
        "runtime": "openvino",
        "weights": config.weights,
        "algo": config.algo,
        "group_size": result.record["group_size"],
        "symmetric": config.symmetric,
        "keep_lm_head": config.keep_lm_head,
        "int8_layers": result.record.pop("int8_layers"),
        "float_layers": result.record.pop("float_layers"),
        "low_bit_share": result.record.pop("low_bit_share"),  # of the MatMul weights, by element count
        "fallback_steps": result.fallback_steps,
        "nncf": result.record,
        # The original is scored in f32; the result (and both models' speed) at OpenVINO's default precision.
        "inference_precision": default_precision(),
    }
    stages.append(stage_record("quantize", started, "openvino", "openvino", record))
    return LMCandidate(
        runtime="openvino",
        folder=dest,
        baseline=fp32.parent,
        model_file=MODEL_XML,
        baseline_perplexity=evaluation.perplexity(),
        metrics=result.metrics,
        quant_record=record,
        stages=stages,
        runner=OVGenerator,
        size_of=ir_size,
    )
