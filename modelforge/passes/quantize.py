"""`quantize`: post-training INT8 (or 4-bit weight) quantization, with the scheme picked for the model family.

Steps: detect the family (convolutional, transformer, recurrent, mixed) -> pick the scheme for the preset and
the target (`modelforge.quantization.schemes`) -> prepare the graph -> calibrate with bounded memory
(minmax, entropy or percentile; static schemes only) -> write the quantized model -> when the recipe has
accuracy gates, keep the most sensitive nodes in float until they are met (`quantization.fallback`).

Defaults were chosen by measurement on onnxruntime's CPU kernels (docs/quantization.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from modelforge.errors import PassError
from modelforge.model.artifact import ModelArtifact
from modelforge.passes import register
from modelforge.passes.base import Pass, PassConfig, PassContext


class QuantizeConfig(PassConfig):
    preset: Literal["auto", "cnn", "transformer"] = Field(
        "auto",
        description="Scheme family: auto detects the model (convolutional, transformer, recurrent, mixed); cnn "
        "quantizes every supported op statically; transformer quantizes only MatMul/Gemm weights.",
    )
    target: Literal["cpu", "tensorrt", "openvino", "auto"] = Field(
        "cpu",
        description="Runtime the model is for: cpu = fastest scheme on onnxruntime (uint8/int8 QDQ, dynamic for "
        "transformers); tensorrt = int8/int8 symmetric QDQ on op inputs, float bias; openvino = OpenVINO IR "
        "(model.xml/.bin) beside model.onnx, evaluated on OpenVINO ([openvino] extra); auto = measure every "
        "installed runtime x precision here and keep the fastest that meets the gates.",
    )
    precision: Literal["int8", "int4-weights", "bf16", "fp32"] = Field(
        "int8",
        description="int8, or 4-bit block-wise MatMul weights with float activations (MatMulNBits); target "
        "openvino also: bf16 (float model, bf16 compute; CPUs with AMX or AVX-512 BF16) or fp32 (float model).",
    )
    mode: Literal["auto", "static", "dynamic"] = Field(
        "auto", description="static (calibrated activation ranges) or dynamic (ranges at run time); auto: by preset."
    )
    method: Literal["minmax", "entropy", "percentile"] = Field(
        "minmax", description="How activation ranges are chosen from the calibration statistics."
    )
    percentile: float = Field(
        99.99, gt=50, le=100, description="percentile method: clip |x| at this percentile of the calibration data."
    )
    histogram_bins: int = Field(
        2048, ge=256, le=65536, description="entropy/percentile: histogram bins per tensor (a power of two)."
    )
    calibration_samples: int | None = Field(
        None, gt=0, description="Calibrate on at most this many samples (default: all given)."
    )
    calibration_batch_size: int = Field(
        8,
        gt=0,
        description="Samples per calibration batch (peak memory grows with it, not with the sample count).",
    )
    per_channel: bool = Field(True, description="One weight scale per output channel (keeps accuracy on CNNs).")
    reduce_range: bool = Field(
        False, description="7-bit weights: avoids int16 overflow on CPUs without VNNI, at some accuracy cost."
    )
    activation_type: Literal["uint8", "int8"] | None = Field(
        None, description="Activation integer type (default: uint8 for cpu, int8 for tensorrt)."
    )
    weight_type: Literal["int8", "uint8"] | None = Field(None, description="Weight integer type (default: int8).")
    activation_symmetric: bool | None = Field(
        None, description="Zero point fixed at 0 for activations (default: false for cpu, true for tensorrt)."
    )
    weight_symmetric: bool | None = Field(None, description="Zero point fixed at 0 for weights (default: true).")
    op_types: list[str] | None = Field(
        None, description="Quantize only these op types (default: those of the preset's scheme)."
    )
    exclude_nodes: list[str] = Field(default_factory=list, description="Node names to keep in float.")
    softmax_floor: bool = Field(
        True,
        description="Transformers on CPU (dynamic): floor each attention Softmax input at its row maximum - 60. "
        "Same probabilities to float32 precision; avoids onnxruntime's slow path on masked (padding) scores.",
    )
    int4_block_size: int = Field(32, ge=16, description="int4-weights: weights per scale (a power of two).")
    speed_aware: bool = Field(
        True,
        description="Measure on this machine which op groups INT8 makes slower (e.g. depthwise convolutions) and "
        "keep them in float; ship the float graph when no INT8 configuration beats it (never a slower model). "
        "false: quantize everything the scheme covers (smallest file, whatever its speed).",
    )
    speed_time_budget: float = Field(
        60.0, gt=0, description="Seconds the speed-aware search may spend measuring variants."
    )
    fallback: bool = Field(
        True,
        description="When the recipe has accuracy gates (max_accuracy_drop, min_cosine, min_agreement), keep the "
        "most sensitive nodes in float until they are met, measured on the eval data.",
    )
    fallback_max_nodes: int | None = Field(None, gt=0, description="Keep at most this many nodes in float.")
    time_budget: float | None = Field(
        None,
        gt=0,
        description="Seconds the fallback search may take; when they are up (or on Ctrl-C) the best model "
        "measured so far is kept and reported.",
    )
    sensitivity_samples: int = Field(
        64, gt=0, description="Eval samples used to rank node sensitivity (the budget is checked on all)."
    )
    debug_layers: int = Field(
        0,
        ge=0,
        description="Record the N worst layers (per-layer SQNR vs float, as `modelforge debug` prints) in the "
        "report; 0: off.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> QuantizeConfig:
        if self.histogram_bins & (self.histogram_bins - 1):
            raise ValueError("histogram_bins must be a power of two")
        if self.int4_block_size & (self.int4_block_size - 1):
            raise ValueError("int4_block_size must be a power of two")
        if self.precision in ("bf16", "fp32") and self.target != "openvino":
            raise ValueError(f"precision {self.precision} is an OpenVINO execution precision: use target openvino")
        if self.target == "auto" and self.precision != "int8":
            raise ValueError("target auto measures every precision itself: leave precision at int8")
        if self.target in ("openvino", "auto") and (self.precision == "int4-weights" or self.mode == "dynamic"):
            raise ValueError(f"target {self.target} needs static QDQ: int4-weights and mode dynamic are for target cpu")
        if self.target == "tensorrt":
            if self.precision == "int4-weights":
                raise ValueError("precision int4-weights produces onnxruntime's MatMulNBits: use target cpu")
            if self.mode == "dynamic":
                raise ValueError("TensorRT runs static QDQ models only: mode dynamic is for target cpu")
            if self.activation_type == "uint8" or self.weight_type == "uint8":
                raise ValueError("TensorRT needs int8 activations and weights")
            if self.activation_symmetric is False or self.weight_symmetric is False:
                raise ValueError("TensorRT needs symmetric quantization (zero point 0)")
        return self


@register
class QuantizeInt8(Pass):
    name = "quantize"
    description = "Post-training quantization (INT8 static/dynamic or INT4 weights), scheme picked per model family"
    accepts = ("onnx",)
    produces = "onnx"
    needs_calibration = True
    Config = QuantizeConfig

    def run(self, artifact: ModelArtifact, ctx: PassContext) -> ModelArtifact:
        """Quantize for the target; the result is labelled with the runtime and precision it is served with."""
        from modelforge.runtimes.serving import check_offered, serve_on

        cfg: QuantizeConfig = self.config
        if cfg.target == "auto":
            from modelforge.quantization.auto_target import choose_target

            return choose_target(self, artifact, ctx)
        runtime = "openvino" if cfg.target == "openvino" else "onnxruntime"
        if runtime == "openvino":
            check_offered(runtime, cfg.precision)
            if cfg.precision in ("bf16", "fp32"):  # the float model, run by OpenVINO in that precision
                ctx.record("target", {"runtime": runtime, "precision": cfg.precision, "quantized": False})
                return serve_on(artifact, runtime, cfg.precision)
        result = self.quantize(artifact, ctx)
        already_quantized = "skipped" in ctx.metrics  # a QDQ model given as input runs as INT8 too
        precision = "int8" if result.path != artifact.path or already_quantized else "fp32"
        ctx.record("target", {"runtime": runtime, "precision": precision, "quantized": precision == "int8"})
        return serve_on(result, runtime, precision)

    @property
    def runtime(self) -> tuple[str, str]:
        """(runtime, precision) quantized variants are measured on: where the target serves them."""
        return ("openvino", "int8") if self.config.target == "openvino" else ("onnxruntime", "fp32")

    def quantize(self, artifact: ModelArtifact, ctx: PassContext) -> ModelArtifact:
        """The INT8 flow (scheme, calibration, speed-aware search, accuracy fallback) for a cpu, tensorrt or
        openvino target; returns `artifact` itself when the float model is the one to ship."""
        from modelforge.model.onnx_model import is_quantized, load_onnx, onnx_artifact, opset_version
        from modelforge.quantization.families import detect_family, norm_nodes
        from modelforge.quantization.graph_fixes import MIN_QUANTIZATION_OPSET
        from modelforge.quantization.prepare import prepare_for_quantization
        from modelforge.quantization.qdq import quantizable_op_types
        from modelforge.quantization.schemes import nodes_outside_scheme, resolve_scheme

        cfg: QuantizeConfig = self.config
        if ctx.calibration is None:
            raise PassError(self.name, "needs calibration data", "pass --calibration DATA")
        source = load_onnx(artifact.path, load_external_data=False)
        if is_quantized(source):
            ctx.record("skipped", "model already contains quantized operators (QDQ or integer ops); not re-quantized")
            return artifact

        family = detect_family(source)
        del source
        scheme = resolve_scheme(cfg, family, quantizable_op_types())
        ctx.record("family", family.family)
        ctx.record("preset", scheme.preset)
        ctx.record("scheme", scheme.record())
        ctx.progress.log(f"quantize: {scheme.why}")

        prepared, prep_info = prepare_for_quantization(artifact.path, ctx.workdir, self.name)
        for key, value in prep_info.items():
            ctx.record(key, value)
        prepared_model = load_onnx(prepared, load_external_data=False)
        if scheme.per_channel and opset_version(prepared_model) < MIN_QUANTIZATION_OPSET:
            from dataclasses import replace

            scheme = replace(scheme, per_channel=False)  # per-channel DequantizeLinear needs opset 13
            ctx.record("per_channel", "off: the model could not be converted to opset 13")
        exclude = sorted({*cfg.exclude_nodes, *nodes_outside_scheme(prepared_model, scheme)})
        if scheme.mode == "static" and (norms := norm_nodes(prepared_model)):
            ctx.record("norm_nodes_float", len(norms))  # decomposed LayerNorm/RMSNorm, kept float (families.py)

        output = ctx.workdir / "model.onnx"
        if scheme.mode == "static":
            static = ctx.workdir / "model-static.onnx" if scheme.dynamic_op_types else output
            self._static(prepared, prepared_model, static, scheme, exclude, ctx)
            if scheme.dynamic_op_types:
                self._dynamic_extra(static, output, scheme, exclude)
        elif scheme.mode == "dynamic":
            from modelforge.quantization.qdq import write_dynamic_model

            floored = write_dynamic_model(prepared, output, scheme, exclude, self.name)
            if scheme.softmax_floor:
                ctx.record("softmax_floored", len(floored))
        else:
            from modelforge.quantization.qdq import write_int4_model

            write_int4_model(prepared, output, scheme, exclude, self.name)
        judge = self._latency_judge(prepared_model, ctx) if cfg.speed_aware else None
        del prepared_model

        # The static search measures the model it returns; any other model is measured against float at the end.
        measured = None
        if judge is not None and scheme.mode == "static":
            output = measured = self._speed_search(artifact.path, prepared, output, scheme, exclude, judge, ctx)

        from modelforge.quantization.fallback import Budget

        budget = Budget.from_gates(ctx.gates)
        if output != artifact.path and cfg.fallback and budget.active and ctx.evaluation is not None:
            output = self._fallback(prepared, output, scheme, exclude, budget, ctx)
        if judge is not None and output not in (artifact.path, measured):
            output = self._never_slower(artifact.path, output, judge, ctx)
        if output == artifact.path or not ctx.metrics.get("fallback", {}).get("met", True):
            from modelforge.quantization.candidates import dynamic_candidate

            output = dynamic_candidate(self, artifact.path, prepared, output, scheme, budget, judge, ctx)
        if output == artifact.path:
            return self._ship_float(artifact, ctx)

        if cfg.debug_layers:
            from modelforge.quantization.debug import compare_layers

            data = ctx.evaluation or ctx.calibration
            with ctx.task("Comparing layers", total=min(32, data.num_samples)) as advance:
                rows = compare_layers(prepared, output, data, ctx.workdir, samples=32, advance=advance)
            ctx.record("layers", [r.record() for r in rows[: cfg.debug_layers]])
        _copy_metadata(artifact, output)
        ctx.record("quantized_nodes", _count_quantized(output))
        return onnx_artifact(output)

    # ------------------------------------------------------------------------------------------ static

    def _static(self, prepared: Path, prepared_model, output: Path, scheme, exclude: list[str], ctx: PassContext):
        from modelforge.model.onnx_model import io_spec
        from modelforge.quantization.calibration import calibrate, tensors_to_calibrate
        from modelforge.quantization.qdq import write_qdq_model
        from modelforge.runtimes.onnxruntime import fixed_batch_size

        cfg: QuantizeConfig = self.config
        tensors = tensors_to_calibrate(prepared_model, set(scheme.op_types))
        data = ctx.calibration
        if cfg.calibration_samples is not None:
            data = data.window(0, min(cfg.calibration_samples, data.num_samples))
        batch = fixed_batch_size(io_spec(prepared_model)) or cfg.calibration_batch_size
        with ctx.task(f"Calibrating ({cfg.method})", total=data.num_samples) as advance:
            result = calibrate(
                prepared,
                tensors,
                data,
                method=cfg.method,
                batch_size=batch,
                percentile=cfg.percentile,
                bins=cfg.histogram_bins,
                symmetric=scheme.activation_symmetric,
                advance=advance,
                pass_name=self.name,
            )
        ctx.record("calibration_method", cfg.method)
        if cfg.method == "percentile":
            ctx.record("calibration_percentile", cfg.percentile)
        ctx.record("calibration_samples", result.samples)
        ctx.record("calibration_batch_size", batch)
        ctx.record("calibrated_tensors", len(result.ranges))
        isolated = write_qdq_model(
            prepared,
            output,
            result.ranges,
            per_channel=scheme.per_channel,
            reduce_range=scheme.reduce_range,
            activation_type=scheme.activation_type,
            weight_type=scheme.weight_type,
            activation_symmetric=scheme.activation_symmetric,
            weight_symmetric=scheme.weight_symmetric,
            op_types=list(scheme.op_types),
            exclude_nodes=exclude,
            pass_name=self.name,
            quantize_bias=scheme.quantize_bias,
            inputs_only=scheme.inputs_only,
        )
        if isolated:
            ctx.record("isolated_nodes", isolated)
            for item in isolated:
                ctx.progress.log(
                    f"quantize: onnxruntime's quantizer failed on node '{item['node']}' ({item['op_type']}): "
                    f"{item['action']}. Error: {item['error']}"
                )

    def _dynamic_extra(self, static: Path, output: Path, scheme, exclude: list[str]) -> None:
        """Mixed models: the scheme's dynamic op types (LSTM) quantized dynamically on top of the static model."""
        from dataclasses import replace

        from modelforge.quantization.qdq import write_dynamic_model

        dynamic = replace(
            scheme, mode="dynamic", op_types=scheme.dynamic_op_types, constant_weights_only=False, softmax_floor=None
        )
        write_dynamic_model(static, output, dynamic, exclude, self.name)

    # ------------------------------------------------------------------------------------- speed-aware

    def _latency_judge(self, prepared_model, ctx: PassContext):
        """Measures variants at the batch size and threads the run's latency is reported at."""
        from modelforge.evaluate.evaluator import latency_feeds
        from modelforge.model.onnx_model import io_spec
        from modelforge.quantization.speed import LatencyJudge
        from modelforge.runtimes.onnxruntime import fixed_batch_size

        data = ctx.evaluation or ctx.calibration
        if data is None or not ctx.measure_latency:
            return None
        batch = fixed_batch_size(io_spec(prepared_model)) or ctx.latency_batch_size
        runtime, precision = self.runtime
        return LatencyJudge(latency_feeds(data, batch), ctx.threads, self.name, runtime=runtime, precision=precision)

    def _speed_search(
        self, original: Path, prepared: Path, output: Path, scheme, exclude: list[str], judge, ctx
    ) -> Path:
        """Keeps in float the op groups that are faster so; returns `original` when float wins outright."""
        from modelforge.model.onnx_model import load_onnx, save_onnx
        from modelforge.quantization.qdq import keep_in_float, quantized_nodes
        from modelforge.quantization.speed import choose_fastest, node_groups

        cfg: QuantizeConfig = self.config
        static_path = ctx.workdir / "model-static.onnx" if scheme.dynamic_op_types else output
        quantized = load_onnx(static_path)
        float_model = load_onnx(prepared)
        groups = node_groups(quantized_nodes(quantized), float_model)
        dynamic_nodes = [n.name for n in float_model.graph.node if n.op_type in scheme.dynamic_op_types]
        dynamic_group = f"{'/'.join(scheme.dynamic_op_types)} dynamic int8"
        if dynamic_nodes:
            groups[dynamic_group] = dynamic_nodes
        workdir = ctx.workdir / "speed"
        workdir.mkdir(exist_ok=True)

        def build(nodes: frozenset[str], path: Path) -> Path:
            save_onnx(keep_in_float(quantized, float_model, set(nodes) - set(dynamic_nodes)), path)
            if dynamic_nodes and not set(dynamic_nodes) <= nodes:
                with_dynamic = path.with_name(path.stem + "-dynamic.onnx")
                self._dynamic_extra(path, with_dynamic, scheme, exclude)
                return with_dynamic
            return path

        with ctx.task("Measuring INT8 vs float speed, variants", total=len(groups) + 1) as advance:
            choice = choose_fastest(
                original, output, groups, build, judge, workdir,
                log=ctx.progress.log, advance=advance, time_budget=cfg.speed_time_budget,
            )  # fmt: skip
        ctx.record("speed_search", choice.record())
        return choice.model_path

    def _never_slower(self, original: Path, output: Path, judge, ctx: PassContext) -> Path:
        """The final model against the float model the pass was given, which ships unless INT8 is faster
        (the speed search's ship rule: `speed.ship_verdict`)."""
        from modelforge.quantization.speed import compare_with_float, ship_verdict

        with ctx.task("Measuring the final model against float"):
            speedup = compare_with_float(judge, original, output)
        verdict = ship_verdict(speedup, "the quantized model")
        ctx.record("speedup_vs_float", round(speedup.estimate, 3))
        record = {"speedup_vs_float": round(speedup.estimate, 3), "ship_interval": speedup.record()}
        search = ctx.metrics.setdefault("speed_search", {})
        search.update(record | {"decision": verdict.decision})
        if verdict.decision == "unclear" or verdict.shipped == "float":
            ctx.progress.log(f"quantize: {verdict.reason}")
        if verdict.shipped == "quantized":
            search.update(shipped="quantized", reason=verdict.reason)
            return output
        search.update(shipped="float", reason=verdict.reason)
        return original

    def _ship_float(self, artifact: ModelArtifact, ctx: PassContext) -> ModelArtifact:
        """INT8 did not pay on this machine: the model goes on as it came (onnxruntime optimizes it at load)."""
        ctx.record("quantized_nodes", 0)
        return artifact

    # ---------------------------------------------------------------------------------------- fallback

    def _fallback(self, prepared: Path, output: Path, scheme, exclude: list[str], budget, ctx: PassContext) -> Path:
        from modelforge.evaluate.evaluator import EVAL_BATCH
        from modelforge.model.onnx_model import io_spec, load_onnx, save_onnx
        from modelforge.quantization.fallback import OutputJudge, accuracy_aware_fallback, speed_cost
        from modelforge.quantization.qdq import keep_in_float, quantized_nodes
        from modelforge.runtimes.onnxruntime import fixed_batch_size

        cfg: QuantizeConfig = self.config
        workdir = ctx.workdir / "fallback"
        workdir.mkdir(exist_ok=True)
        prepared_model = load_onnx(prepared)
        batch = fixed_batch_size(io_spec(prepared_model)) or EVAL_BATCH

        if scheme.mode == "static":
            quantized = load_onnx(output)
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
                writer(prepared, path, scheme, sorted({*exclude, *nodes}), self.name)
                return path

        with ctx.task("Measuring the float model on the eval data", total=ctx.evaluation.num_samples) as advance:
            runtime, precision = self.runtime
            judge = OutputJudge(
                prepared, ctx.evaluation, batch, None, self.name, advance=advance, runtime=runtime, precision=precision
            )
        result = accuracy_aware_fallback(
            candidates=candidates,
            build=build,
            judge=judge,
            budget=budget,
            workdir=workdir,
            sensitivity_samples=cfg.sensitivity_samples,
            max_nodes=cfg.fallback_max_nodes,
            task=ctx.task,
            log=ctx.progress.log,
            time_budget=cfg.time_budget,
        )
        record = result.record
        record["tuned_on"] = f"the run's eval data ({ctx.evaluation.num_samples} samples), also used to judge the gates"
        if result.float_nodes and result.model_path != output:
            record["speed_cost"] = speed_cost(
                output, result.model_path, ctx.evaluation, None, self.name, runtime=runtime, precision=precision
            )
        ctx.record("fallback", record)
        ctx.record("float_nodes", [n["name"] for n in record.get("float_nodes", [])])
        if not result.met:
            ctx.progress.log(f"quantize: accuracy budget not met: {result.reason}")
        final = ctx.workdir / "model-fallback.onnx"
        if result.model_path == output:
            return output
        save_onnx(load_onnx(result.model_path), final)
        return final


def _copy_metadata(source: ModelArtifact, target) -> None:
    """Keep the original's metadata (labels, preprocessing notes) on the quantized model."""
    from modelforge.model.onnx_model import load_onnx, save_onnx

    original = load_onnx(source.path, load_external_data=False)
    model = load_onnx(Path(target))
    present = {p.key for p in model.metadata_props}
    for prop in original.metadata_props:
        if prop.key not in present:
            model.metadata_props.append(prop)
    save_onnx(model, Path(target))


def _count_quantized(path) -> int:
    """Nodes that run on quantized inputs (QDQ), or integer kernels (dynamic, MatMulNBits)."""
    from modelforge.model.onnx_model import load_onnx
    from modelforge.quantization.qdq import quantized_nodes

    model = load_onnx(path, load_external_data=False)
    integer_ops = {"MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul", "MatMulNBits", "DynamicQuantizeLSTM"}
    return len(quantized_nodes(model)) + sum(1 for n in model.graph.node if n.op_type in integer_ops)
