"""The export pass's work, one function per target; each writes into a bundle folder the pipeline copies
beside model.onnx in the output (writers.py), and records what it chose and measured in the stage record."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from modelforge.errors import InputError, PassError
from modelforge.model.artifact import IOSpec, ModelArtifact, TensorSpec
from modelforge.runtimes.writers import write_artifact

if TYPE_CHECKING:
    from modelforge.passes.base import PassContext
    from modelforge.passes.export import ExportConfig

# Real samples a sweep's batches are made of (repeated to fill larger batches).
SWEEP_SAMPLES = 32


def export_target(artifact: ModelArtifact, config: ExportConfig, ctx: PassContext) -> ModelArtifact:
    from modelforge.model.onnx_model import is_quantized, load_onnx

    if config.target == "tensorrt":  # what is missing is said before any work
        from modelforge.runtimes.tensorrt import require_tensorrt

        require_tensorrt("export --target tensorrt")
    model_dir, bundle = ctx.workdir / "model", ctx.workdir / "bundle"
    model_dir.mkdir()
    bundle.mkdir()
    model_path = write_artifact(artifact, model_dir)[0]
    model = load_onnx(model_path, load_external_data=False)
    quantized = is_quantized(model)
    precision, why = _precision(config, quantized, ctx.calibration is not None)
    if config.target == "jetson":  # the engine's precision decides speed and accuracy on the device: said
        ctx.progress.log(f"jetson: building {precision.upper()}: {why}")
        ctx.record("precision_choice", f"{precision}: {why}")
    if quantized and precision != "int8" and config.target != "triton":
        raise InputError(
            f"precision {precision}: the model has Q/DQ (INT8) nodes, which TensorRT builds only with int8",
            hint="use --precision int8 (or auto), or export the float model",
        )
    ctx.record("target", config.target)
    if not config.sparse_weights and _pruned_2_4(model):  # the prune pass enforced 2:4: use sparse tensor cores
        config = config.model_copy(update={"sparse_weights": True})
        ctx.record("sparse_weights", "on: the model carries the prune pass's 2:4 sparsity record")
    if config.target == "jetson":
        _jetson(model, model_path, artifact.io, config, precision, quantized, bundle, ctx)
    elif config.target == "triton":
        # A model labelled for OpenVINO (--target openvino/auto) has its IR beside model.onnx: Triton's OpenVINO
        # backend serves that IR, the files that were measured.
        ir = [model_dir / "model.xml", model_dir / "model.bin"]
        served_on = artifact.served_on
        if served_on is not None and served_on.runtime == "openvino" and ir[0].is_file():
            served = Served(ir, "openvino", served_on.precision)
        else:
            served = Served([model_path], "onnxruntime", "fp32")
    else:
        _tensorrt(model_path, artifact.io, config, precision, quantized, bundle, ctx)
    del model
    publications: tuple = ()
    if config.target == "triton":
        publications = _triton(model_path, artifact.io, config, precision, bundle, ctx, served)
    elif config.baseline_stats:
        baseline = _baseline(model_path, artifact.io, ctx)
        if baseline is not None:
            from modelforge.monitoring.baseline import BASELINE_NAME
            from modelforge.safe_files import write_text

            write_text(bundle / BASELINE_NAME, json.dumps(baseline, indent=1) + "\n")
            ctx.record("baseline_stats", BASELINE_NAME)
    return dataclasses.replace(
        artifact, path=model_path, format="onnx", side_outputs=(bundle,), publications=publications
    )


def _baseline(model_path: Path, io: IOSpec, ctx) -> dict[str, Any] | None:
    """The drift baseline (None, said in one line, when the run has no data to take it from)."""
    if ctx.calibration is None and ctx.evaluation is None:
        ctx.record("baseline_stats", None)
        ctx.progress.log("no drift baseline: no data (pass --calibration or --eval-data to record one)")
        return None
    from modelforge.monitoring.baseline import build_baseline
    from modelforge.runtimes.onnxruntime import fixed_batch_size

    with ctx.task("Recording baseline statistics for drift"):
        return build_baseline(
            model_path,
            ctx.calibration,
            ctx.evaluation,
            seed=ctx.seed,
            threads=ctx.threads,
            batch_size=fixed_batch_size(io) or 64,
        )


def _precision(config, quantized: bool, calibrated: bool) -> tuple[str, str]:
    """The engine precision and why. auto: int8 for a Q/DQ model; for a Jetson bundle of a float model, int8
    when calibration data is given (it would be ignored otherwise), fp16 without."""
    if config.precision != "auto":
        return config.precision, "--precision " + config.precision
    if quantized:
        return "int8", "the model has Q/DQ (INT8) nodes"
    if config.target == "jetson" and calibrated:
        return "int8", "calibration data given, calibrated here into calibration.cache (--precision fp16 for FP16)"
    if config.target == "jetson":
        return "fp16", "a float model and no calibration data (--calibration DATA for INT8)"
    return "fp16", "a float model"


def _pruned_2_4(model) -> bool:
    record = next((p.value for p in model.metadata_props if p.key == "modelforge.sparsity"), None)
    try:
        return record is not None and json.loads(record).get("pattern") == "2:4"
    except (ValueError, AttributeError):
        return False


def _profiles(io: IOSpec, config: ExportConfig):
    from modelforge.export.shapes import profile_shapes

    return profile_shapes(io, config.min_batch, config.opt_batch, config.max_batch, config.dims)


def _jetson(model, model_path: Path, io: IOSpec, config, precision: str, quantized: bool, bundle: Path, ctx) -> None:
    from modelforge.export.calibration_cache import calibrated_scales, qdq_scales
    from modelforge.export.jetson import EngineFlags, write_jetson_bundle
    from modelforge.export.trt_ops import check_tensorrt_ops, tensorrt_version_for

    trt_version = tensorrt_version_for(config.jetpack)
    check_tensorrt_ops(model, trt_version)  # every unsupported node at once, before anything is written
    profiles = _profiles(io, config)
    scales = None
    if precision == "int8" and quantized:
        scales = qdq_scales(model)
    elif precision == "int8":
        if ctx.calibration is None:
            raise InputError("INT8 for a float model needs calibration data", hint="pass --calibration DATA")
        with ctx.task("Calibrating for TensorRT's INT8 cache", ctx.calibration.num_samples) as advance:
            scales = calibrated_scales(model_path, ctx.calibration, ctx.threads, advance=advance)
    flags = EngineFlags(
        precision=precision,
        profiles=profiles,
        workspace_mib=config.workspace_mib,
        calibration_cache=precision == "int8" and not quantized,
        dla_core=config.dla_core,
        sparse_weights=config.sparse_weights,
    )
    inputs = ", ".join(f"{t.name} {t.dtype} {t.shape_text()}" for t in io.inputs)
    files = write_jetson_bundle(
        bundle,
        name=config.name,
        jetpack=config.jetpack,
        tensorrt_version=trt_version,
        flags=flags,
        scales=scales,
        explicit_int8=quantized,
        inputs_text=inputs,
    )
    ctx.record(
        "jetson",
        {
            "jetpack": config.jetpack,
            "tensorrt_version": trt_version,
            "precision": precision,
            "int8": "explicit (Q/DQ)"
            if quantized
            else ("implicit (calibration cache)" if precision == "int8" else None),
            "calibration_cache_tensors": len(scales or {}),
            "trtexec": flags.trtexec_args(),
            "files": files,
        },
    )


def _sample(ctx) -> dict[str, np.ndarray] | None:
    data = ctx.calibration if ctx.calibration is not None else ctx.evaluation
    if data is None:
        return None
    return next(data.window(0, min(SWEEP_SAMPLES, data.num_samples)).batches(SWEEP_SAMPLES))


class Served(NamedTuple):
    """What a Triton model serves: its files (the first is the model file), the runtime and its precision."""

    files: list[Path]
    runtime: str
    precision: str


def _repository(config, ctx) -> tuple[Path | None, Path]:
    """(the repository outside the run's output that the model is added to, or None; the folder inside the
    run's work folder where the model folder is built: a path inside the output's copy when the repository
    lives in the output, so it is written and hashed with it)."""
    out = ctx.output_dir.resolve() if ctx.output_dir is not None else None
    if config.repository is None:
        return None, Path("model_repository")
    repository = Path(config.repository).absolute()
    real = repository.resolve()
    if out is not None and (real == out or real in out.parents):
        raise InputError(
            f"--repository {config.repository}: the run's output {ctx.output_dir} would be inside the Triton "
            "repository, whose root holds only model folders",
            hint="give the run's reports a folder of their own with -o",
        )
    if out is not None and out in real.parents:  # a repository inside the output belongs to this run
        return None, real.relative_to(out)
    from modelforge.export.triton import check_repository

    check_repository(repository)
    return repository, Path("repository")


def _triton(model_path: Path, io: IOSpec, config, precision: str, bundle: Path, ctx, served: Served) -> tuple:
    """Build the model folder; returns the publications (repository additions) made after the run."""
    from modelforge.export.batching import choose_batching, measure_batches, tile_samples
    from modelforge.export.shapes import batch_is_dynamic
    from modelforge.export.triton import (
        config_text,
        model_config_pb2,
        next_version_checked,
        read_labels,
        save_replaced,
        write_model_folder,
    )
    from modelforge.runtimes.onnxruntime import default_threads

    model_config_pb2()  # the [triton] extra is checked before the sweep, not after
    external, inside = _repository(config, ctx)
    first_output = io.outputs[0].shape if io.outputs else ()
    classes = first_output[1] if len(first_output) == 2 and isinstance(first_output[1], int) else None
    labels = read_labels(config.labels, classes) if config.labels else None
    batched = batch_is_dynamic(io)
    samples = _sample(ctx)
    generated = samples is None
    if generated:  # no data: the sweep runs on inputs made from the IO spec, warm-up on Triton's own
        samples = _generated_samples(io, config.dims)
    rows: list[dict[str, Any]] = []
    threads = ctx.threads or default_threads()
    budget = int(config.memory_budget * 2**20) if config.memory_budget else None
    if batched and (ctx.measure_latency or budget is not None):
        what = "generated inputs" if generated else "data"
        with ctx.task(f"Batch sweep on {what} (latency, throughput, peak memory)", len(config.batch_sizes)) as advance:
            rows = measure_batches(
                served.files[0],
                lambda b: tile_samples(samples, b),
                config.batch_sizes,
                threads=threads,
                advance=advance,
                runtime=served.runtime,
                precision=served.precision,
            )
        batching = choose_batching(rows, budget)
        if batching["max_batch_size"] is None:
            smallest = rows[0]
            raise PassError(
                "export",
                f"no batch size fits the memory budget of {config.memory_budget:g} MiB: batch "
                f"{smallest['batch_size']} needs {(smallest['peak_memory_bytes'] or 0) / 2**20:.1f} MiB",
                hint="raise --memory-budget",
            )
        max_batch_size = batching["max_batch_size"]
    else:
        batching = None
        max_batch_size = max(config.batch_sizes) if batched else 0
    warmup = None
    if config.warmup:
        # Batched: one sample (Triton adds the batch axis); fixed shape: the model's whole first axis.
        fixed = {t.name: t.shape[0] if t.shape and isinstance(t.shape[0], int) else 1 for t in io.inputs}
        warmup = {name: values[0] if batched else values[: fixed[name]] for name, values in samples.items()}
    warmup_specs = {n: TensorSpec(n, str(v.dtype), tuple(v.shape)) for n, v in (warmup or {}).items()}
    text = config_text(
        name=config.name,
        model_suffix=served.files[0].suffix.lower(),
        io=io,
        max_batch_size=max_batch_size,
        batching=batching,
        instance_kind="KIND_GPU" if config.instance_kind == "gpu" else "KIND_CPU",
        instance_count=config.instances,
        warmup_inputs=warmup_specs,
        warmup_generated=generated,
        labels=bool(labels),
        tensorrt_accelerator=(precision if precision != "int8" else "int8") if config.tensorrt_accelerator else None,
    )
    replaced: list[str] = []
    if external is not None:
        version = next_version_checked(external, config.name, text, config.replace_config)
        if (external / config.name).is_dir():
            replaced = save_replaced(external / config.name, bundle / "replaced" / config.name)
    else:
        version = 1  # a repository inside the output is new with it (an existing output is never extended)
    build_root = ctx.workdir / "repository" if external is not None else bundle / inside
    model_dir = write_model_folder(
        build_root,
        name=config.name,
        version=version,
        model_files=served.files,
        config=text,
        warmup=None if generated else warmup,
        labels=labels,
    )
    baseline = _baseline(model_path, io, ctx) if config.baseline_stats else None
    if baseline is not None:
        from modelforge.monitoring.baseline import BASELINE_NAME
        from modelforge.safe_files import write_text

        baseline["model"] = f"{version}/{served.files[0].name}"  # the version it describes, in its model folder
        write_text(model_dir / BASELINE_NAME, json.dumps(baseline, indent=1) + "\n", build_root)
        ctx.record("baseline_stats", f"{config.name}/{BASELINE_NAME}")
    repository_text = str(external) if external is not None else f"{inside.as_posix()}/ in the output"
    ctx.record(
        "triton",
        {
            "name": config.name,
            "version": version,
            "repository": repository_text,
            "replaced": [f"replaced/{config.name}/{name}" for name in replaced],
            "max_batch_size": max_batch_size,
            "dynamic_batching": batching,
            "sweep": rows,
            "sweep_inputs": "generated from the model's input spec (no data)" if generated and rows else None,
            "warmup": None if not config.warmup else ("triton random_data/zero_data" if generated else "a sample"),
            "sweep_runtime": (
                {"runtime": served.runtime, "precision": served.precision, "device": "CPU", "threads": threads}
                if rows
                else None
            ),
            "config": f"{config.name}/config.pbtxt",
            "served_files": [f.name for f in served.files],
        },
    )
    if external is None:
        return ()
    from modelforge.model.artifact import Publication

    return (Publication(staged=model_dir, destination=external / config.name, version=version),)


def _generated_samples(io: IOSpec, dims: dict[str, int]) -> dict[str, np.ndarray]:
    """SWEEP_SAMPLES inputs made from the IO spec, seeded: floats uniform in [0, 1), integers small and
    non-negative (token ids, indices), booleans False; a dynamic axis other than the batch takes --dim."""
    from modelforge.export.shapes import profile_shapes

    shapes = profile_shapes(io, SWEEP_SAMPLES, SWEEP_SAMPLES, SWEEP_SAMPLES, dims)
    rng = np.random.default_rng(0)
    samples = {}
    for spec in io.inputs:
        shape = shapes[spec.name][0]
        dtype = np.dtype("bool" if spec.dtype == "bool" else spec.dtype)
        if dtype.kind == "f":
            samples[spec.name] = rng.random(shape, dtype=np.float32).astype(dtype)
        elif dtype.kind in "iu":
            samples[spec.name] = rng.integers(0, 2, shape).astype(dtype)
        elif dtype.kind == "b":
            samples[spec.name] = np.zeros(shape, dtype=bool)
        else:
            raise InputError(
                f"input '{spec.name}' ({spec.dtype}): no inputs can be generated for it",
                hint="pass --calibration DATA",
            )
    return samples


def _tensorrt(model_path: Path, io: IOSpec, config, precision: str, quantized: bool, bundle: Path, ctx) -> None:
    from modelforge.export.tensorrt import BuildSettings, build_engine, compare_engine

    implicit = precision == "int8" and not quantized
    if implicit and not config.implicit_int8:
        raise InputError(
            "INT8 for a float model: quantize it first (--target tensorrt) or set implicit_int8 (--implicit-int8)"
        )
    batches = None
    if implicit:
        if ctx.calibration is None:
            raise InputError("implicit INT8 needs calibration data", hint="pass --calibration DATA")
        batches = list(ctx.calibration.batches(config.opt_batch))
    settings = BuildSettings(
        precision=precision,
        profiles=_profiles(io, config),
        workspace_mib=config.workspace_mib,
        implicit_int8=implicit,
        sparse_weights=config.sparse_weights,
        dla_core=config.dla_core,
    )
    timing = bundle / "timing.cache"
    from modelforge.safe_files import copy_file

    if config.timing_cache is not None and config.timing_cache.is_file():
        copy_file(config.timing_cache, timing)
    with ctx.task("Building the TensorRT engine"):
        build = build_engine(
            model_path,
            bundle / "model.plan",
            settings,
            timing_cache=timing,
            calibration_batches=batches,
            calibration_cache=bundle / "calibration.cache" if implicit else None,
        )
    if config.timing_cache is not None:
        copy_file(timing, config.timing_cache)  # the next build reuses what this one timed (a link is refused)
    ctx.record("tensorrt", build)
    if ctx.evaluation is not None:
        with ctx.task("Measuring the engine against the ONNX model"):
            ctx.record(
                "engine_vs_onnx",
                compare_engine(model_path, bundle / "model.plan", ctx.evaluation, precision, ctx.threads),
            )
