"""`target: auto`: measure every installed runtime x precision on this machine, keep the fastest that meets the gates.

Candidates: onnxruntime fp32 (the original, always), onnxruntime int8, and with the `[openvino]` extra OpenVINO
fp32, bf16 (only where the CPU computes bf16 natively: `machine.precision_support`) and int8. Each INT8 candidate
is built by the INT8 flow (`flow.quantize_int8`, called as a function) for its runtime, with the run's accuracy
gates and fallback and the speed-aware search measured on that runtime; NNCF's candidate (`openvino int8-nncf`)
falls back by NNCF's accuracy control (`nncf_control`) when it misses the gates. Then every candidate is checked against
the gates on the eval data, and all are timed interleaved in one process (same input, batch, threads;
`evaluate.profile.batch_sweep`).

The winner is the fastest candidate that meets the gates and is clearly faster than the original
(MIN_WORTHWHILE_SPEEDUP, the speed-aware rule): otherwise the original ships, so auto never ships a slower
model. Each loser gets the reason it lost. The table goes to the stage record (report) and the terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelforge.errors import InputError, PassError

if TYPE_CHECKING:
    from modelforge.data import BoundDataset
    from modelforge.measure.paired import RatioInterval
    from modelforge.model.artifact import ModelArtifact
    from modelforge.progress import Progress
    from modelforge.quantization.config import QuantizeConfig
    from modelforge.quantization.flow import QuantizeResult
    from modelforge.quantization.nncf_control import NncfRetry
    from modelforge.quantization.state import QuantizeInputs

ALL_CANDIDATES = (
    ("onnxruntime", "fp32"),
    ("onnxruntime", "int8"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
    ("openvino", "int8"),
)
ORIGINAL = ("onnxruntime", "fp32")
MEASURE = {"warmup": 5, "min_runs": 30, "max_seconds": 30.0, "stable_within": 0.02, "min_seconds": 3.0}


@dataclass
class Candidate:
    """One runtime x precision: the model file it runs, and what was measured."""

    runtime: str
    precision: str
    path: Path
    notes: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)  # accuracy vs the original (output cosine, ...)
    latency: dict[str, Any] | None = None  # p50_ms, p99_ms, ...
    misses: list[str] = field(default_factory=list)  # gates it does not meet
    lost: str | None = None  # why it was not chosen
    confirmation: RatioInterval | None = None  # the paired ship comparison with the original (fastest only)
    scheme: str | None = None  # nncf: NNCF's INT8 IR (`nncf_scheme`); None: modelforge's own model
    # Rebuilds the candidate when it misses the gates (NNCF's accuracy control, `nncf_control`); returns the new
    # model file, or None when it could not (the first model stays). The flow's own candidates already fell back.
    retry: NncfRetry | None = field(default=None, repr=False)
    record: Callable[[], dict[str, Any]] | None = field(default=None, repr=False)  # its sub-record, read at the end

    @property
    def label(self) -> str:
        """The precision as tables show it: int8-nncf for NNCF's INT8 next to modelforge's int8."""
        return f"{self.precision}-{self.scheme}" if self.scheme else self.precision

    @property
    def name(self) -> str:
        return f"{self.runtime} {self.label}"

    def row(self, baseline_p50: float | None, chosen: bool) -> dict[str, Any]:
        latency = self.latency or {}
        p50 = latency.get("p50_ms")
        return {
            "runtime": self.runtime,
            "precision": self.label,
            "latency_p50_ms": _round(p50),
            "latency_p99_ms": _round(latency.get("p99_ms")),
            "speedup": _round(baseline_p50 / p50 if baseline_p50 and p50 else None, 3),
            "output_cosine": _round(self.metrics.get("output_cosine"), 6),
            "top1_agreement": _round(self.metrics.get("top1_agreement"), 4),
            "accuracy_drop_pp": _round(self.metrics.get("accuracy_drop_pp"), 3),
            "size_bytes": sum(f.stat().st_size for f in _model_files(self.path)),
            "verdict": "chosen" if chosen else "lost",
            "reason": None if chosen else self.lost,
        }


def _model_files(path: Path) -> list[Path]:
    """The files a candidate runs from: an IR is model.xml and model.bin."""
    return [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def plan_candidates(openvino: bool, flags: frozenset[str] | None = None) -> tuple[list[tuple[str, str]], list[dict]]:
    """(runtime, precision) pairs to measure on this machine, and the others with why they are left out."""
    from modelforge.runtimes.serving import offer

    usable, skipped = [], []
    for runtime, precision in ALL_CANDIDATES:
        supported, why = offer(runtime, precision, flags)
        if runtime == "openvino" and not openvino:
            skipped.append({"runtime": runtime, "precision": precision, "why": "not installed"})
        elif not supported:
            skipped.append({"runtime": runtime, "precision": precision, "why": why})
        else:
            usable.append((runtime, precision))
    return usable, skipped


def install_hint(flags: frozenset[str] | None = None) -> str | None:
    """Said once when OpenVINO is missing and this CPU has what makes it pay (VNNI/AMX INT8, native bf16)."""
    from modelforge.machine import BF16_FLAGS, FAST_INT8_FLAGS, cpu_flags

    flags = cpu_flags() if flags is None else flags
    helpful = [f for f in (*FAST_INT8_FLAGS, *BF16_FLAGS) if f in flags]
    if not helpful:
        return None
    return (
        f"OpenVINO is not installed; on this CPU ({', '.join(helpful)}) it is often faster than onnxruntime: "
        "pip install 'modelforge[openvino]' and run again to measure it"
    )


def choose_target(
    artifact: ModelArtifact, config: QuantizeConfig, inputs: QuantizeInputs, *, name: str = "quantize"
) -> QuantizeResult:
    """The quantize flow with `target: auto` (see the module docstring)."""
    from modelforge.quantization.flow import QuantizeResult
    from modelforge.runtimes.openvino import openvino_installed

    if not inputs.latency.measure:
        raise InputError("target auto measures speed: evaluate.skip_latency is set", hint="drop skip_latency")
    data = inputs.evaluation or inputs.calibration
    usable, skipped = plan_candidates(openvino_installed())
    hint = None if openvino_installed() else install_hint()
    if hint:
        inputs.progress.log(f"quantize: {hint}")

    candidates, sub_records = [], {}
    for runtime, precision in usable:
        if precision != "int8":
            candidates.append(Candidate(runtime, precision, artifact.path))
            continue
        if runtime == "openvino" and config.scheme == "nncf":
            lost = "not built: scheme nncf chosen in the recipe"
            candidates.append(Candidate(runtime, precision, artifact.path, lost=lost))
            candidates.append(_nncf_candidate(config, artifact, inputs, name))
            continue
        try:
            result = _quantized_for(config, runtime, artifact, inputs, name)
        except PassError as exc:  # e.g. a graph this runtime cannot convert: the others still compete
            candidates.append(Candidate(runtime, precision, artifact.path, lost=f"not built: {exc.message}"))
            continue
        sub_records[f"{runtime} {precision}"] = result.record
        candidate = Candidate(runtime, precision, result.artifact.path)
        if result.artifact.path == artifact.path and "skipped" not in result.record:
            reason = (result.record.get("speed_search") or {}).get("reason") or "INT8 was not faster than float"
            candidate.lost = f"not built: {reason}"
        candidates.append(candidate)
        if runtime == "openvino" and "skipped" not in result.record:
            candidates.append(_nncf_candidate(config, artifact, inputs, name))

    winner = measure_and_pick(
        [c for c in candidates if c.lost is None],
        float_path=artifact.path,
        data=data,
        budget=inputs.budget,
        batch=inputs.latency.batch_size,
        threads=inputs.latency.threads,
        progress=inputs.progress,
    )
    sub_records |= {c.name: c.record() for c in candidates if c.record is not None}  # after any accuracy control
    auto = auto_record(candidates, winner, skipped, hint)
    record: dict[str, Any] = {"auto": auto}
    if winner.precision == "int8":
        record.update({k: v for k, v in sub_records[winner.name].items() if k not in record})
    record["target"] = {"runtime": winner.runtime, "precision": winner.precision, "chosen_by": "auto"}
    inputs.progress.log(f"quantize: target auto chose {winner.name}: {auto['why']}")
    if winner.scheme == "nncf":
        record["target"]["scheme"] = "nncf"
    return QuantizeResult(shipped_artifact(winner, artifact, inputs.workdir), record)


def shipped_artifact(winner: Candidate, original: ModelArtifact, workdir: Path) -> ModelArtifact:
    """What ships for the chosen candidate, labelled with its runtime and precision. NNCF's winner is an IR (its
    .xml must not be read as ONNX): the float model it quantized ships as model.onnx with that IR beside it."""
    from modelforge.model.onnx_model import onnx_artifact
    from modelforge.runtimes.serving import serve_on

    if winner.scheme == "nncf":
        from modelforge.quantization.nncf_scheme import nncf_artifact

        chosen = nncf_artifact(original, winner.path, workdir / "auto-openvino-int8-nncf-result")
    else:
        chosen = original if winner.path == original.path else onnx_artifact(winner.path)
    return serve_on(chosen, winner.runtime, winner.precision)


def _nncf_candidate(config: QuantizeConfig, artifact: ModelArtifact, inputs: QuantizeInputs, name: str) -> Candidate:
    """openvino int8-nncf: NNCF's quantization of the model as OpenVINO reads it (`nncf_scheme.nncf_candidate`),
    judged with the others; left out (with why) when NNCF is missing, not wanted or fails."""
    from modelforge.quantization.nncf_control import nncf_accuracy_control
    from modelforge.quantization.nncf_scheme import nncf_available, nncf_candidate

    candidate = Candidate("openvino", "int8", artifact.path, scheme="nncf")
    if config.scheme == "modelforge":
        candidate.lost = "not built: scheme modelforge chosen in the recipe"
    elif not nncf_available():
        candidate.lost = "not built: NNCF is not installed (pip install 'modelforge[openvino]')"
    else:
        try:
            build = nncf_candidate(artifact.path, config, inputs, inputs.workdir / "auto-openvino-int8-nncf", name=name)
        except PassError as exc:
            candidate.lost = f"not built: {exc.message}"
        else:
            candidate.path = build.xml
            candidate.retry = nncf_accuracy_control(artifact.path, config, inputs, build, name)
            candidate.record = lambda: {"nncf": build.record(), "quantized_nodes": build.fake_quantize}
    return candidate


def _quantized_for(
    config: QuantizeConfig, runtime: str, artifact: ModelArtifact, inputs: QuantizeInputs, name: str
) -> QuantizeResult:
    """The INT8 flow for one runtime, in its own work folder, with the run's gates and data."""
    from dataclasses import replace

    from modelforge.quantization.flow import quantize_int8

    target = "openvino" if runtime == "openvino" else "cpu"
    settings = type(config).model_validate({**config.model_dump(), "target": target, "scheme": "modelforge"})
    workdir = inputs.workdir / f"auto-{runtime}-int8"
    workdir.mkdir(exist_ok=True)
    return quantize_int8(artifact, settings, replace(inputs, workdir=workdir), name=name)


def measure_and_pick(
    candidates: list[Candidate],
    *,
    float_path: Path,
    data: BoundDataset,
    budget: Any,
    batch: int,
    threads: int | None,
    progress: Progress,
    measure: dict[str, float] | None = None,
    opener: Callable[..., Any] | None = None,
) -> Candidate:
    """Gate metrics of each candidate vs the float model on `data`, then all timed interleaved; returns the
    winner and sets `lost` on the others. The first candidate must be the original (onnxruntime fp32). `opener`
    opens a candidate's backend for timing (`runtimes.base.open_backend`; tests hand a slowed one)."""
    from modelforge.evaluate.evaluator import EVAL_BATCH, latency_feeds
    from modelforge.model.onnx_model import io_spec, load_onnx
    from modelforge.quantization.fallback import OutputJudge
    from modelforge.quantization.speed import ship_verdict
    from modelforge.runtimes.base import open_backend
    from modelforge.runtimes.onnxruntime import default_threads, fixed_batch_size

    if not candidates or (candidates[0].runtime, candidates[0].precision) != ORIGINAL:
        raise ValueError("the first candidate must be the original model on onnxruntime fp32")
    threads = threads or default_threads()
    fixed = fixed_batch_size(io_spec(load_onnx(float_path, load_external_data=False)))
    judge = OutputJudge(float_path, data, fixed or EVAL_BATCH, threads, "quantize")
    progress.start("Checking each runtime x precision against the gates", len(candidates))
    try:
        for candidate in candidates:
            judge.runtime, judge.precision = candidate.runtime, candidate.precision
            try:
                candidate.metrics = judge.measure(candidate.path)
            except PassError as exc:  # this runtime cannot load the model (ops it lacks): it drops out
                if candidate is candidates[0]:
                    raise
                candidate.lost = f"cannot run: {exc.message}"
            candidate.misses = budget.misses(candidate.metrics) if candidate.lost is None else []
            progress.advance(1)
    finally:
        progress.stop()
    # Those that could not run keep their reason and no latency (auto_record lists them as not measured).
    candidates = [c for c in candidates if c.lost is None]

    size = fixed or batch
    feeds = latency_feeds(data, size)
    backends: dict[str, Any] = {}

    def time_all() -> None:
        backends.clear()
        for c in candidates:
            backends[c.name] = (opener or open_backend)(
                c.path, runtime=c.runtime, precision=c.precision, threads=threads, stage="quantize"
            )
        stats = time_side_by_side(backends, feeds, size, fixed, progress, measure)
        for candidate in candidates:
            candidate.latency = stats[candidate.name]

    time_all()
    # A candidate that can be rebuilt (NNCF's, by its accuracy control) and misses the gates: rebuilt where the
    # rebuilt model could still win, then judged and timed again like the first.
    for candidate in [c for c in candidates if c.misses and c.retry is not None]:
        rivals = {c.name: c.latency["p50_ms"] for c in candidates if not c.misses}
        if not candidate.retry.worth_it(candidate.latency["p50_ms"], rivals):
            continue
        judge.runtime, judge.precision = candidate.runtime, candidate.precision
        restored = candidate.retry(judge)  # None: stopped by its bounds, the first model stays
        if restored is not None:
            candidate.path = restored
            candidate.metrics = judge.measure(candidate.path)
            candidate.misses = budget.misses(candidate.metrics)
            if not candidate.misses:
                time_all()

    original = candidates[0]
    base = original.latency["p50_ms"]
    eligible = [c for c in candidates[1:] if not c.misses]
    fastest = min(eligible, key=lambda c: c.latency["p50_ms"], default=None)
    winner = original
    if fastest is not None and fastest.latency["p50_ms"] < base:
        # The sweep ranks; the ship decision is the quantize pass's: paired blocks against the original until the
        # interval clears the ship line (a load change hits both models of a pair alike).
        fastest.confirmation = confirm_speedup(backends[original.name], backends[fastest.name], feeds)
        verdict = ship_verdict(fastest.confirmation, fastest.name)
        # An unclear tie ships only a smaller (INT8) model; the same file on another runtime has no such claim.
        if verdict.shipped == "quantized" and (verdict.decision == "clear" or fastest.precision == "int8"):
            winner = fastest
        else:
            fastest.lost = f"not clearly faster than the original: {verdict.reason}"
    for candidate in candidates:
        if candidate is winner or candidate.lost is not None:
            continue
        p50 = candidate.latency["p50_ms"]
        if candidate.misses:
            candidate.lost = "misses the gates (" + "; ".join(candidate.misses) + ")"
        else:
            candidate.lost = f"slower: p50 {p50:.3f} ms vs {winner.latency['p50_ms']:.3f} ms ({winner.name})"
    return winner


def time_side_by_side(
    backends: dict[str, Any],
    feeds: dict[str, Any],
    size: int,
    fixed: int | None,
    progress: Progress,
    measure: dict | None,
) -> dict[str, dict[str, Any]]:
    """Latency statistics of each named open backend, all timed interleaved in one loop on the same feeds, with
    target auto's settings (MEASURE, overridden by `measure`); shared with `ov_schemes.judge_schemes`."""
    from modelforge.measure.profile import Subject, batch_sweep

    subjects = [Subject(name, backend, lambda _size, feeds=feeds: feeds, fixed) for name, backend in backends.items()]
    return batch_sweep(subjects, [size], progress=progress, **{**MEASURE, **(measure or {})})[0]["stats"]


def confirm_speedup(original: Any, candidate: Any, feeds: dict[str, Any]) -> RatioInterval:
    """How many times faster `candidate` is than `original` (two open backends), in paired blocks, with the
    quantize pass's ship line, confidence and time allowance (`quantization.speed`)."""
    from modelforge.measure.latency import paired_blocks
    from modelforge.quantization.speed import FINAL_SECONDS, SHIP_CONFIDENCE, SHIP_MIN_PAIRS, ship_answered

    def runner(backend: Any):
        mine = {k: v for k, v in feeds.items() if k in set(backend.input_names)}
        return lambda: backend.run(mine)

    return paired_blocks(
        runner(original),
        runner(candidate),
        decided=ship_answered,
        max_seconds=FINAL_SECONDS,
        confidence=SHIP_CONFIDENCE,
        min_pairs=SHIP_MIN_PAIRS,
    ).interval


def auto_record(candidates: list[Candidate], winner: Candidate, skipped: list[dict], hint: str | None) -> dict:
    """The table for the report: every candidate measured, the ones left out and why, the choice."""
    base = next(c for c in candidates if (c.runtime, c.precision) == ORIGINAL).latency["p50_ms"]
    speedup = base / winner.latency["p50_ms"]
    why = (
        "no candidate meeting the gates was clearly faster than the original: the original ships on onnxruntime"
        if (winner.runtime, winner.precision) == ORIGINAL
        else f"fastest candidate that meets the gates ({speedup:.2f}x the original's p50; paired blocks: "
        f"{winner.confirmation.describe() if winner.confirmation else 'not measured'})"
    )
    record: dict[str, Any] = {
        "chosen": {
            "runtime": winner.runtime,
            "precision": winner.precision,
            **({"scheme": "nncf"} if winner.scheme else {}),
        },
        "why": why,
        "candidates": [c.row(base, c is winner) for c in candidates if c.latency is not None],
        # The fastest candidate against the original, in paired blocks: what the choice rests on.
        "ship_comparison": next(
            ({"candidate": c.name, **c.confirmation.record()} for c in candidates if c.confirmation), None
        ),
        "not_measured": [
            *({"runtime": c.runtime, "precision": c.label, "why": c.lost} for c in candidates if c.latency is None),
            *skipped,
        ],
        "method": "each candidate's gate metrics on the eval data; all timed interleaved in one process "
        f"(blocks, spinning off), same input, batch and threads; {MEASURE['min_runs']}+ runs each",
    }
    if hint:
        record["install_hint"] = hint
    return record
