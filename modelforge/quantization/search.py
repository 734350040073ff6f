"""The flow's searches over which nodes stay in float: the speed-aware search and ship rule (machinery in
`speed.py`) and the accuracy-aware fallback (machinery in `fallback.py`), wired to the run's data, budget and
latency settings. Variants are built from the prepared and quantized models the flow already holds."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

    from modelforge.quantization.schemes import Scheme
    from modelforge.quantization.speed import LatencyJudge
    from modelforge.quantization.state import FlowState


def latency_judge(state: FlowState, prepared_model: onnx.ModelProto) -> LatencyJudge | None:
    """Measures variants at the batch size and threads the run's latency is reported at; None when the run
    measures no latency (or has no data to measure on)."""
    from modelforge.evaluate.evaluator import latency_feeds
    from modelforge.model.onnx_model import io_spec
    from modelforge.quantization.speed import LatencyJudge
    from modelforge.runtimes.onnxruntime import fixed_batch_size

    inputs = state.inputs
    data = inputs.evaluation or inputs.calibration
    if data is None or not inputs.latency.measure:
        return None
    batch = fixed_batch_size(io_spec(prepared_model)) or inputs.latency.batch_size
    runtime, precision = state.runtime
    feeds = latency_feeds(data, batch)
    return LatencyJudge(feeds, inputs.latency.threads, state.name, runtime=runtime, precision=precision)


def speed_search(
    state: FlowState,
    original: Path,
    prepared: Path,
    output: Path,
    scheme: Scheme,
    exclude: list[str],
    judge: LatencyJudge,
) -> Path:
    """Keeps in float the op groups that are faster so; returns `original` when float wins outright."""
    from modelforge.model.onnx_model import save_onnx
    from modelforge.quantization.qdq import keep_in_float, quantized_nodes
    from modelforge.quantization.speed import choose_fastest, node_groups
    from modelforge.quantization.writing import dynamic_extra

    static_path = state.workdir / "model-static.onnx" if scheme.dynamic_op_types else output
    quantized = state.load(static_path)
    float_model = state.load(prepared)
    groups = node_groups(quantized_nodes(quantized), float_model)
    dynamic_nodes = [n.name for n in float_model.graph.node if n.op_type in scheme.dynamic_op_types]
    dynamic_group = f"{'/'.join(scheme.dynamic_op_types)} dynamic int8"
    if dynamic_nodes:
        groups[dynamic_group] = dynamic_nodes
    workdir = state.workdir / "speed"
    workdir.mkdir(exist_ok=True)

    def build(nodes: frozenset[str], path: Path) -> Path:
        save_onnx(keep_in_float(quantized, float_model, set(nodes) - set(dynamic_nodes)), path)
        if dynamic_nodes and not set(dynamic_nodes) <= nodes:
            with_dynamic = path.with_name(path.stem + "-dynamic.onnx")
            dynamic_extra(state, path, with_dynamic, scheme, exclude)
            return with_dynamic
        return path

    with state.task("Measuring INT8 vs float speed, variants", total=len(groups) + 1) as advance:
        choice = choose_fastest(
            original, output, groups, build, judge, workdir,
            log=state.log, advance=advance, time_budget=state.config.speed_time_budget,
        )  # fmt: skip
    state.put("speed_search", choice.record())
    return choice.model_path


def never_slower(state: FlowState, original: Path, output: Path, judge: LatencyJudge) -> Path:
    """The final model against the float model the flow was given, which ships unless INT8 is faster
    (the speed search's ship rule: `speed.ship_verdict`)."""
    from modelforge.quantization.speed import compare_with_float, ship_verdict

    with state.task("Measuring the final model against float"):
        speedup = compare_with_float(judge, original, output)
    verdict = ship_verdict(speedup, "the quantized model")
    state.put("speedup_vs_float", round(speedup.estimate, 3))
    record = {"speedup_vs_float": round(speedup.estimate, 3), "ship_interval": speedup.record()}
    search = state.record.setdefault("speed_search", {})
    search.update(record | {"decision": verdict.decision})
    if verdict.decision == "unclear" or verdict.shipped == "float":
        state.log(f"quantize: {verdict.reason}")
    if verdict.shipped == "quantized":
        search.update(shipped="quantized", reason=verdict.reason)
        return output
    search.update(shipped="float", reason=verdict.reason)
    return original


def accuracy_fallback(state: FlowState, prepared: Path, output: Path, scheme: Scheme, exclude: list[str]) -> Path:
    """Keep the most sensitive nodes of `output` in float until the run's accuracy budget is met on the eval
    data; returns the model to go on with (`output` itself when it is within budget)."""
    from modelforge.evaluate.evaluator import EVAL_BATCH
    from modelforge.model.onnx_model import io_spec, load_onnx, save_onnx
    from modelforge.quantization.fallback import OutputJudge, accuracy_aware_fallback, speed_cost
    from modelforge.quantization.qdq import keep_in_float, quantized_nodes
    from modelforge.runtimes.onnxruntime import fixed_batch_size

    cfg, evaluation = state.config, state.inputs.evaluation
    workdir = state.workdir / "fallback"
    workdir.mkdir(exist_ok=True)
    prepared_model = state.load(prepared)
    batch = fixed_batch_size(io_spec(prepared_model)) or EVAL_BATCH

    if scheme.mode == "static":
        quantized = state.load(output)
        candidates = quantized_nodes(quantized)

        def build(nodes: frozenset[str], path: Path) -> Path:
            save_onnx(keep_in_float(quantized, prepared_model, set(nodes)), path)
            return path
    else:
        from modelforge.quantization.qdq import write_dynamic_model, write_int4_model

        initializers = {t.name for t in prepared_model.graph.initializer}
        candidates = [
            (n.name, n.op_type)
            for n in prepared_model.graph.node
            if n.op_type in scheme.op_types
            and n.name not in exclude
            and (not scheme.constant_weights_only or (len(n.input) > 1 and n.input[1] in initializers))
        ]
        writer = write_dynamic_model if scheme.mode == "dynamic" else write_int4_model

        def build(nodes: frozenset[str], path: Path) -> Path:
            if not nodes:
                return output
            writer(prepared, path, scheme, sorted({*exclude, *nodes}), state.name)
            return path

    runtime, precision = state.runtime
    with state.task("Measuring the float model on the eval data", total=evaluation.num_samples) as advance:
        judge = OutputJudge(
            prepared, evaluation, batch, None, state.name, advance=advance, runtime=runtime, precision=precision
        )
    result = accuracy_aware_fallback(
        candidates=candidates,
        build=build,
        judge=judge,
        budget=state.inputs.budget,
        workdir=workdir,
        sensitivity_samples=cfg.sensitivity_samples,
        max_nodes=cfg.fallback_max_nodes,
        task=state.task,
        log=state.log,
        time_budget=cfg.time_budget,
    )
    record = result.record
    record["tuned_on"] = f"the run's eval data ({evaluation.num_samples} samples), also used to judge the gates"
    if result.float_nodes and result.model_path != output:
        record["speed_cost"] = speed_cost(
            output, result.model_path, evaluation, None, state.name, runtime=runtime, precision=precision
        )
    state.put("fallback", record)
    state.put("float_nodes", [n["name"] for n in record.get("float_nodes", [])])
    if not result.met:
        state.log(f"quantize: accuracy budget not met: {result.reason}")
    final = state.workdir / "model-fallback.onnx"
    if result.model_path == output:
        return output
    state.forget(final)
    if result.model_path.with_name(result.model_path.name + ".data").exists():
        save_onnx(load_onnx(result.model_path), final)  # the weights file is named after the model file
    else:
        shutil.copyfile(result.model_path, final)  # a self-contained file: the same bytes
    return final
