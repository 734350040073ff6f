"""A run on a decoder language model folder (task text-generation): weight-only quantization of its ONNX form
with a KV cache, judged on held-out text.

The folder is exported in float32 by onnxruntime-genai's model builder (the baseline), quantized by modelforge
(quantization.llm), compared on the held-out text (perplexity, next-token KL, top-1 agreement) and on
generation speed (prefill and decode tokens/s, both models interleaved), and written as a Hugging Face folder
that onnxruntime-genai runs: model.onnx, genai_config.json, config.json, generation_config.json, the tokenizer,
plus the report and the manifest. Only the quantize pass applies to a language model.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from modelforge.errors import InputError
from modelforge.progress import Progress
from modelforge.recipe.schema import Recipe
from modelforge.run.llm_candidate import (
    CALIBRATION_TOKENS,
    EVAL_TOKENS,
    GPTQ_TOKENS,
    NEW_TOKENS,
    PROMPT_TOKENS,
    SPEED_ROUNDS,
    stage_record,
)

DEFAULT_MAX_PERPLEXITY_RATIO = 1.25
DEFAULT_MAX_TOKEN_KL = 0.1
MAX_TEXT_BYTES = 64 << 20
# Files of the input folder the output gets as they are (beside the builder's tokenizer and genai_config).
COPIED = ("config.json", "generation_config.json")


def is_lm_recipe(recipe: Recipe) -> bool:
    """The model is a Hugging Face folder whose config.json names a *ForCausalLM (or --task text-generation)."""
    from modelforge.model.huggingface.folder import is_hf_folder, read_config
    from modelforge.model.huggingface.task import is_causal_lm

    path = recipe.model.path
    if recipe.model.task == "text-generation":
        return True
    if recipe.model.task is not None or not is_hf_folder(path) or (path / "config.json").is_symlink():
        return False
    try:
        return is_causal_lm(read_config(path))
    except InputError:
        return False  # the ordinary path reports a broken config.json


def read_text(path: Path, role: str) -> str:
    """A plain-text file of the user's (held-out or calibration text), bounded, UTF-8."""
    if path.suffix.lower() not in (".txt", ".md", ".text"):
        raise InputError(f"{role} {path}: language models take plain text (.txt)")
    if not path.is_file():
        raise InputError(f"{role} {path}: not found")
    if path.stat().st_size > MAX_TEXT_BYTES:
        raise InputError(f"{role} {path}: over {MAX_TEXT_BYTES >> 20} MiB of text")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{role} {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise InputError(f"{role} {path}: empty")
    return text


def _check(recipe: Recipe) -> Any:
    from modelforge.quantization.config import QuantizeConfig

    if len(recipe.passes) != 1 or recipe.passes[0].name != "quantize":
        names = ", ".join(spec.name for spec in recipe.passes) or "none"
        raise InputError(
            f"model folder {recipe.model.path}: a language model takes the quantize pass only (got {names})"
        )
    config = QuantizeConfig.model_validate(recipe.passes[0].config)
    if config.weights is None:
        config = config.model_copy(update={"weights": "int4"})
    if recipe.data.eval_data is None:
        raise InputError("a language model is judged on held-out text: pass --eval-data TEXT.txt")
    if config.algo in ("gptq", "awq") and recipe.data.calibration is None:
        raise InputError(f"algo {config.algo} needs calibration text: pass --calibration TEXT.txt")
    if config.target in ("openvino", "auto"):
        from modelforge.optional import installed, missing
        from modelforge.quantization.ov_weight_only import check_ov_config

        check_ov_config(config, recipe.data.calibration is not None)
        for module in ("openvino", "nncf", "optimum.intel", "openvino_tokenizers", "openvino_genai"):
            if not installed(module):
                raise missing(module, f"--target {config.target} for a language model")
    return config


def _check_widths_early(folder: Path, config: Any) -> None:
    """The group size against the linear layers' input widths, read from the safetensors headers (no weights
    loaded): a bad --group-size is refused before the export, not after. The ONNX graph is checked again."""
    from safetensors import safe_open

    from modelforge.model.huggingface.folder import weight_files
    from modelforge.quantization.llm import settings_of
    from modelforge.quantization.weight_only import check_widths

    linears: dict[str, tuple[int, int]] = {}
    for path in weight_files(folder):
        with safe_open(str(path), "np") as handle:
            for name in handle.keys():  # noqa: SIM118 (a safe_open handle is not a dict)
                shape = handle.get_slice(name).get_shape()
                if len(shape) == 2 and name.endswith(".weight") and "embed" not in name:
                    if "lm_head" in name and config.keep_lm_head != "quantize":
                        continue
                    linears[name.removesuffix(".weight")] = (int(shape[1]), int(shape[0]))  # Linear: [out, in]
    check_widths(linears, settings_of(config, []).group_size, f"model folder {folder}")


def check_lm_recipe(recipe: Recipe) -> dict[str, Any]:
    """Everything checked before any work (exit 2 on bad input): the pass and its config, the folder, the
    architecture, the group size, the texts, the tokenizer; and the gates with their defaults."""
    from modelforge.model.huggingface.folder import check_folder, check_preprocessor
    from modelforge.model.huggingface.preprocess import load_tokenizer
    from modelforge.model.huggingface.task import check_causal_lm_architecture

    config = _check(recipe)
    folder = recipe.model.path
    hf_config = check_folder(folder, recipe.model.trust_remote_code)
    check_causal_lm_architecture(folder, hf_config)
    check_preprocessor(folder, "text-generation")
    _check_widths_early(folder, config)
    eval_text = read_text(recipe.data.eval_data.path, "--eval-data")
    cal_text = read_text(recipe.data.calibration.path, "--calibration") if recipe.data.calibration else None
    tokenizer = load_tokenizer(folder, recipe.model.trust_remote_code)
    gates = recipe.gates
    defaults: set[str] = set()
    if gates.default_gates:
        fill = {"max_perplexity_ratio": DEFAULT_MAX_PERPLEXITY_RATIO, "max_token_kl": DEFAULT_MAX_TOKEN_KL}
        defaults = {k for k in fill if getattr(gates, k) is None}
        gates = gates.model_copy(update={k: fill[k] for k in defaults})
    return {
        "config": config,
        "gates": gates,
        "defaults": defaults,
        "eval_text": eval_text,
        "cal_text": cal_text,
        "tokenizer": tokenizer,
        "architecture": hf_config["architectures"][0],
        "context": hf_config.get("max_position_embeddings"),
    }


def plan_lm_recipe(recipe: Recipe) -> dict[str, Any]:
    """For --dry-run: what the run would do (everything checked, nothing exported or written)."""
    checked = check_lm_recipe(recipe)
    config, gates = checked["config"], checked["gates"]
    return {
        "model": f"{recipe.model.path} ({checked['architecture']}, task text-generation)",
        "export": {
            "cpu": "onnxruntime-genai model builder, float32, KV cache",
            "openvino": "optimum-intel, stateful OpenVINO IR, float32, KV cache",
            "auto": "both (onnxruntime-genai builder and optimum-intel), the faster result that meets the gates",
        }[config.target],
        "quantize": f"weights {config.weights}, {config.algo}, group {config.group_size or config.int4_block_size}, "
        f"{'symmetric' if config.symmetric else 'asymmetric'}, lm_head {config.keep_lm_head}, ratio {config.ratio:g}",
        "evaluation": f"{recipe.data.eval_data.path}: up to {EVAL_TOKENS} tokens",
        "gates": {
            k + (" (default)" if k in checked["defaults"] else ""): v
            for k, v in gates.model_dump().items()
            if v is not None and k != "default_gates"
        },
        "output": str(recipe.output.dir),
    }


def run_lm_recipe(recipe: Recipe, progress: Progress, out: Path) -> tuple[dict[str, Any], Path | None]:
    """The whole run; returns the report and where an output it replaced went (the runner's RunResult)."""
    from modelforge.run.llm_report import choose, lm_report, write_records
    from modelforge.run.output import staged_output

    checked = check_lm_recipe(recipe)
    target = checked["config"].target
    eval_ids = _ids(checked["tokenizer"], checked["eval_text"])
    if len(eval_ids) < 2:
        raise InputError(f"--eval-data {recipe.data.eval_data.path}: fewer than 2 tokens")
    cal_ids = _ids(checked["tokenizer"], checked["cal_text"]) if checked["cal_text"] else None
    threads = recipe.evaluate.latency.threads

    with staged_output(out) as staging:
        candidates = []
        if target in ("cpu", "auto"):
            dest = staging.folder if target == "cpu" else staging.workdir / "candidate-onnxruntime"
            candidates.append(_build_onnxruntime(recipe, checked, eval_ids, cal_ids, progress, staging.workdir, dest))
        if target in ("openvino", "auto"):
            from modelforge.run.llm_openvino import build_openvino

            dest = staging.folder if target == "openvino" else staging.workdir / "candidate-openvino"
            candidates.append(build_openvino(recipe, checked, eval_ids, cal_ids, progress, staging.workdir, dest))
        speed = None
        if not recipe.evaluate.skip_latency:
            from modelforge.evaluate.lm import generation_speed

            context = int(checked.get("context") or 2048)
            prompt = eval_ids[: min(PROMPT_TOKENS, context // 2)]
            new = max(1, min(NEW_TOKENS, context - len(prompt)))
            runners = {}
            for c in candidates:
                runners[f"{c.runtime}:baseline"] = c.runner(c.baseline, threads)
                runners[f"{c.runtime}:result"] = c.runner(c.folder, threads)
            with progress.task("Measuring prefill and decode tokens/s (interleaved)"):
                speed = generation_speed(runners, prompt, new, SPEED_ROUNDS)
            del runners
        choice = None
        winner = candidates[0]
        if target == "auto":
            winner, choice = choose(candidates, speed, checked)
            progress.log(f"quantize: target auto chose {winner.runtime}: {choice['why']}")
            winner.move_into(staging.folder)
        report = lm_report(recipe, winner, speed, checked, out, choice)
        write_records(staging.folder, report, recipe)
        moved = staging.move_into_place(extending=False)
    return report, moved


def _build_onnxruntime(
    recipe: Recipe,
    checked: dict[str, Any],
    eval_ids: list[int],
    cal_ids: list[int] | None,
    progress: Progress,
    workdir: Path,
    dest: Path,
) -> Any:
    """The onnxruntime candidate: the genai builder's float32 export, modelforge's MatMulNBits, scored."""
    from modelforge.convert.causal_lm import export_causal_lm
    from modelforge.evaluate.lm import WINDOW, GenaiGenerator, KVGraph, Reference, graph_feeds, token_windows
    from modelforge.model.onnx_model import load_onnx
    from modelforge.quantization.llm import LMBudget, quantize_lm
    from modelforge.run.llm_candidate import LMCandidate

    config, folder, gates = checked["config"], recipe.model.path, checked["gates"]
    budget = LMBudget(gates.max_perplexity_ratio, gates.max_token_kl)
    stages: list[dict[str, Any]] = []
    started = time.perf_counter()
    with progress.task("Exporting to ONNX with a KV cache (onnxruntime-genai builder)"):
        fp32 = export_causal_lm(folder, workdir / "fp32", workdir / "builder-cache")
    stages.append(
        stage_record("export", started, "huggingface", "onnx", {"exporter": "onnxruntime-genai model builder"})
    )
    genai = json.loads((fp32.parent / "genai_config.json").read_text(encoding="utf-8"))
    head_size = int(genai["model"]["decoder"]["head_size"])
    checked["context"] = int(genai["model"].get("context_length") or checked.get("context") or 2048)
    window = min(WINDOW, checked["context"])
    cal = cal_ids if cal_ids is not None else eval_ids

    started = time.perf_counter()
    base = load_onnx(fp32)
    graph = KVGraph(fp32, head_size, recipe.evaluate.latency.threads)
    with progress.task("Scoring the original on the held-out text"):
        evaluation = Reference.of(graph, token_windows(eval_ids, window, EVAL_TOKENS))
        calibration = Reference.of(graph, token_windows(cal, window, CALIBRATION_TOKENS))
    feeds = graph_feeds(graph, token_windows(cal, window, GPTQ_TOKENS)) if config.algo == "gptq" else []
    del graph
    result = quantize_lm(
        base, config, evaluation, calibration, head_size, budget, feeds, f"model folder {folder}", progress.task
    )
    del base
    dest.mkdir(parents=True, exist_ok=True)
    _write_folder(result.model, fp32.parent, folder, dest)
    quant_record = {
        "runtime": "onnxruntime",
        "weights": config.weights,
        "algo": config.algo,
        "group_size": config.group_size or config.int4_block_size,
        "symmetric": config.symmetric,
        "keep_lm_head": config.keep_lm_head,
        "int8_layers": result.int8_nodes,
        "float_layers": result.float_nodes,
        "low_bit_share": result.low_bit_share,
        "fallback_steps": result.fallback_steps,
    }
    if result.sensitivity:
        quant_record["sensitivity_kl"] = dict(result.sensitivity[:20])
    stages.append(stage_record("quantize", started, "onnx", "onnx", quant_record))
    return LMCandidate(
        runtime="onnxruntime",
        folder=dest,
        baseline=fp32.parent,
        model_file="model.onnx",
        baseline_perplexity=evaluation.perplexity(),
        metrics=result.metrics,
        quant_record=quant_record,
        stages=stages,
        runner=GenaiGenerator,
        size_of=_size,
    )


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _write_folder(model: Any, built: Path, source: Path, folder: Path) -> None:
    """model.onnx (+ .data when large), the builder's genai_config.json and tokenizer, the source's configs."""
    from modelforge.model.onnx_model import save_onnx

    save_onnx(model, folder / "model.onnx")
    for item in sorted(built.iterdir()):
        if item.is_file() and not item.is_symlink() and not item.name.startswith("model.onnx"):
            shutil.copyfile(item, folder / item.name)
    for name in COPIED:
        path = source / name
        if path.is_file() and not path.is_symlink():
            shutil.copyfile(path, folder / name)


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.name.startswith("model.onnx"))
