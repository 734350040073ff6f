"""`--target triton`: a model folder (config.pbtxt, the served files, labels, warm-up, drift baseline) in a new
repository inside the run's output or as the next version in an existing one, its dynamic batching chosen from
a batch sweep measured here."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from modelforge.errors import InputError, PassError
from modelforge.export.config import ExportConfig
from modelforge.export.job import ExportJob, Record, drift_baseline, write_baseline
from modelforge.model.artifact import IOSpec, Publication, TensorSpec


class Served(NamedTuple):
    """What a Triton model serves: its files (the first is the model file), the runtime and its precision."""

    files: list[Path]
    runtime: str
    precision: str


def _repository(config: ExportConfig, output_dir: Path | None) -> tuple[Path | None, Path]:
    """(the repository outside the run's output that the model is added to, or None; the folder inside the
    run's work folder where the model folder is built: a path inside the output's copy when the repository
    lives in the output, so it is written and hashed with it)."""
    out = output_dir.resolve() if output_dir is not None else None
    if config.repository is None:
        return None, Path("model_repository")
    repository = Path(config.repository).absolute()
    real = repository.resolve()
    if out is not None and (real == out or real in out.parents):
        raise InputError(
            f"--repository {config.repository}: the run's output {output_dir} would be inside the Triton "
            "repository, whose root holds only model folders",
            hint="give the run's reports a folder of their own with -o",
        )
    if out is not None and out in real.parents:  # a repository inside the output belongs to this run
        return None, real.relative_to(out)
    from modelforge.export.triton import check_repository

    check_repository(repository)
    return repository, Path("repository")


def _sweep(
    served: Served, samples: dict, config: ExportConfig, job: ExportJob, threads: int, generated: bool
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The batch sweep's rows and the dynamic batching chosen from them (PassError: no batch fits the budget)."""
    from modelforge.export.batching import choose_batching, measure_batches, tile_samples

    budget = int(config.memory_budget * 2**20) if config.memory_budget else None
    what = "generated inputs" if generated else "data"
    with job.task(f"Batch sweep on {what} (latency, throughput, peak memory)", len(config.batch_sizes)) as advance:
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
    return rows, batching


def export_triton(
    model_path: Path,
    io: IOSpec,
    config: ExportConfig,
    precision: str,
    bundle: Path,
    job: ExportJob,
    served: Served,
    record: Record,
) -> tuple[Publication, ...]:
    """Build the model folder; returns the publications (repository additions) made after the run."""
    from modelforge.export.batching import generated_samples, sweep_samples
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
    external, inside = _repository(config, job.output_dir)
    first_output = io.outputs[0].shape if io.outputs else ()
    classes = first_output[1] if len(first_output) == 2 and isinstance(first_output[1], int) else None
    labels = read_labels(config.labels, classes) if config.labels else None
    batched = batch_is_dynamic(io)
    samples = sweep_samples(job.calibration, job.evaluation)
    generated = samples is None
    if generated:  # no data: the sweep runs on inputs made from the IO spec, warm-up on Triton's own
        samples = generated_samples(io, config.dims)
    rows: list[dict[str, Any]] = []
    threads = job.threads or default_threads()
    if batched and (job.measure_latency or config.memory_budget):
        rows, batching = _sweep(served, samples, config, job, threads, generated)
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
    build_root = job.workdir / "repository" if external is not None else bundle / inside
    model_dir = write_model_folder(
        build_root,
        name=config.name,
        version=version,
        model_files=served.files,
        config=text,
        warmup=None if generated else warmup,
        labels=labels,
    )
    baseline = drift_baseline(model_path, io, job, record) if config.baseline_stats else None
    if baseline is not None:
        baseline["model"] = f"{version}/{served.files[0].name}"  # the version it describes, in its model folder
        record["baseline_stats"] = f"{config.name}/{write_baseline(baseline, model_dir, build_root)}"
    record["triton"] = {
        "name": config.name,
        "version": version,
        "repository": str(external) if external is not None else f"{inside.as_posix()}/ in the output",
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
    }
    if external is None:
        return ()
    return (Publication(staged=model_dir, destination=external / config.name, version=version),)
