"""`--target openvino`, int8: modelforge's QDQ scheme and NNCF's quantization, both built, judged, the faster shipped.

Which of the two is faster depends on the CPU and the model (issue 24: NNCF 1.3x faster on an AVX-512 EPYC for
ResNet-18, level on an AMX Xeon, slower under load here), so it is measured, as everything else the flow decides:

1. modelforge: the INT8 flow (`flow.quantize_int8`: speed-aware search, accuracy fallback), which may ship the
   float model on OpenVINO when INT8 does not pay.
2. NNCF: `nncf.quantize` on the model as OpenVINO reads it (`nncf_scheme.build_nncf`), the family detection's
   float nodes in its ignored_scope, the run's calibration samples.
3. Both against the run's gates on the eval data (`fallback.OutputJudge`, on OpenVINO), then timed interleaved in
   one process (`measure.profile.batch_sweep`, the settings of `target auto`). The faster of those meeting the
   gates ships; when neither does, the modelforge candidate ships (its fallback record says what it tried) and
   the run's gates fail.

Accuracy fallback for NNCF: when its candidate misses the gates, `nncf.quantize_with_accuracy_control` rebuilds
it, scored by the run's own gates on the eval data (0 when met, below 0 by the shortfall: one score for up to
three gates), and it is judged again like the first. Measured against widening NNCF's ignored_scope by the
modelforge fallback's sensitivity ranking (digits CNN, min_cosine 0.9997; benchmarks/bench_openvino.py
--fallback): accuracy control met the gate (cosine 0.99973, one quantizer reverted, ~7 s here), while the
ranking had nothing to widen by: modelforge's QDQ met the gate itself, so its fallback ranked no node. NNCF's
quantizers sit elsewhere than the QDQ ones; ranking NNCF's own is what restores NNCF's accuracy. It is bounded
(`nncf_scheme.MAX_REVERTED_GROUPS`, `CONTROL_SECONDS`, or the run's `fallback_max_nodes` / `time_budget`):
unbounded, its re-ranking after every step that scores worse ran past 11 minutes on a MobileNetV3-small. It runs
after the timing, only when NNCF's first model is faster than every candidate meeting the gates: reverting
quantizers only slows a model, so otherwise no rebuilt one could win (`NncfRetry.worth_it`).

When NNCF wins, its IR is what ships and is evaluated (`ModelArtifact.openvino_ir`); model.onnx beside it is the
float model NNCF quantized (NNCF's INT8 exists only as IR), so the output stays loadable by onnxruntime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelforge.errors import PassError

if TYPE_CHECKING:
    from modelforge.data import BoundDataset
    from modelforge.model.artifact import ModelArtifact
    from modelforge.progress import Progress
    from modelforge.quantization.config import QuantizeConfig
    from modelforge.quantization.fallback import Budget
    from modelforge.quantization.flow import QuantizeResult
    from modelforge.quantization.nncf_control import NncfRetry
    from modelforge.quantization.state import QuantizeInputs


@dataclass
class SchemeCandidate:
    """One scheme's model on OpenVINO: the file it runs (ONNX or IR), its gate metrics and latency."""

    scheme: str  # modelforge | nncf
    path: Path
    precision: str = "int8"  # fp32: the modelforge flow shipped the float model (INT8 did not pay)
    metrics: dict[str, Any] = field(default_factory=dict)
    misses: list[str] = field(default_factory=list)
    latency: dict[str, Any] | None = None
    lost: str | None = None

    def row(self, chosen: bool) -> dict[str, Any]:
        latency = self.latency or {}

        def rounded(value: Any, digits: int) -> Any:
            return None if value is None else round(float(value), digits)

        return {
            "scheme": self.scheme,
            "precision": self.precision,
            "latency_p50_ms": rounded(latency.get("p50_ms"), 4),
            "latency_p99_ms": rounded(latency.get("p99_ms"), 4),
            "output_cosine": rounded(self.metrics.get("output_cosine"), 6),
            "top1_agreement": rounded(self.metrics.get("top1_agreement"), 4),
            "accuracy_drop_pp": rounded(self.metrics.get("accuracy_drop_pp"), 3),
            "size_bytes": _size(self.path),
            "verdict": "chosen" if chosen else "lost",
            "reason": None if chosen else self.lost,
        }


def _size(path: Path) -> int:
    files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    return sum(f.stat().st_size for f in files if f.is_file())


def quantize_openvino(
    artifact: ModelArtifact, config: QuantizeConfig, inputs: QuantizeInputs, *, name: str = "quantize"
) -> QuantizeResult:
    """Both schemes (or the one `config.scheme` names) for OpenVINO INT8; the result is labelled by the caller."""
    from modelforge.quantization.flow import QuantizeResult, quantize_int8
    from modelforge.quantization.nncf_control import nncf_accuracy_control
    from modelforge.quantization.nncf_scheme import nncf_artifact, nncf_available, nncf_candidate, require_nncf

    if config.scheme == "nncf":
        require_nncf()
    elif config.scheme == "modelforge" or not nncf_available() or not inputs.latency.measure:
        result = quantize_int8(artifact, config, inputs, name=name)
        if config.scheme == "modelforge":
            why = "scheme modelforge chosen in the recipe"
        elif not inputs.latency.measure:  # the faster cannot be told without timing: today's scheme
            why = "latency is not measured in this run (skip_latency): modelforge's scheme; --scheme nncf for NNCF's"
        else:
            why = _missing_note()
        result.record["openvino_scheme"] = {"chosen": "modelforge", "why": why}
        return result
    if inputs.calibration is None:
        raise PassError(name, "needs calibration data", "pass --calibration DATA")

    record: dict[str, Any] = {}
    candidates: list[SchemeCandidate] = []
    if config.scheme == "auto":
        result = quantize_int8(artifact, config, inputs, name=name)
        record.update(result.record)
        if "skipped" in result.record:  # already quantized: NNCF would quantize the quantized graph again
            result.record["openvino_scheme"] = {"chosen": "modelforge", "why": "the model is already quantized"}
            return result
        quantized = result.artifact.path != artifact.path
        candidates.append(SchemeCandidate("modelforge", result.artifact.path, "int8" if quantized else "fp32"))
    try:
        build = nncf_candidate(artifact.path, config, inputs, inputs.workdir / "nncf", name=name)
    except PassError as exc:
        if not candidates:
            raise
        record["openvino_scheme"] = {"chosen": "modelforge", "why": f"NNCF could not quantize it: {exc.message}"}
        return QuantizeResult(result.artifact, record)
    candidates.append(SchemeCandidate("nncf", build.xml))
    data = inputs.evaluation or inputs.calibration
    winner = judge_schemes(
        candidates,
        float_path=artifact.path,
        data=data,
        budget=inputs.budget,
        batch=inputs.latency.batch_size,
        threads=inputs.latency.threads,
        progress=inputs.progress,
        retry_nncf=nncf_accuracy_control(artifact.path, config, inputs, build, name),
    )
    record["nncf"] = build.record()
    record["openvino_scheme"] = scheme_record(candidates, winner)
    inputs.progress.log(f"quantize: OpenVINO scheme {winner.scheme} chosen: {record['openvino_scheme']['why']}")
    if winner.scheme == "modelforge":
        return QuantizeResult(result.artifact, record)
    record["quantized_nodes"] = build.fake_quantize
    return QuantizeResult(nncf_artifact(artifact, winner.path, inputs.workdir / "nncf-result"), record)


def _missing_note() -> str:
    return "NNCF is not installed (pip install 'modelforge[openvino]'): modelforge's scheme only"


def judge_schemes(
    candidates: list[SchemeCandidate],
    *,
    float_path: Path,
    data: BoundDataset,
    budget: Budget,
    batch: int,
    threads: int | None,
    progress: Progress,
    retry_nncf: NncfRetry | None = None,
    opener: Callable[..., Any] | None = None,
    measure: dict[str, float] | None = None,
) -> SchemeCandidate:
    """Gate metrics of each candidate vs the float model on `data`, all timed interleaved on OpenVINO; the faster
    that meets the gates wins (else the first, modelforge's). `opener` opens a candidate's backend for timing
    (`runtimes.base.open_backend`; tests hand a slowed one to check the choice follows the measurement)."""
    from modelforge.evaluate.evaluator import EVAL_BATCH, latency_feeds
    from modelforge.model.onnx_model import io_spec, load_onnx
    from modelforge.quantization.auto_target import time_side_by_side
    from modelforge.quantization.fallback import OutputJudge
    from modelforge.runtimes.base import open_backend
    from modelforge.runtimes.onnxruntime import default_threads, fixed_batch_size

    opener = opener or open_backend
    threads = threads or default_threads()
    fixed = fixed_batch_size(io_spec(load_onnx(float_path, load_external_data=False)))
    judge = OutputJudge(float_path, data, fixed or EVAL_BATCH, threads, "quantize", runtime="openvino")

    def check(candidate: SchemeCandidate) -> None:
        judge.precision = candidate.precision
        candidate.metrics = judge.measure(candidate.path)
        candidate.misses = budget.misses(candidate.metrics)

    size = fixed or batch
    feeds = latency_feeds(data, size)

    def time_all() -> None:
        backends = {
            c.scheme: opener(c.path, runtime="openvino", precision=c.precision, threads=threads, stage="quantize")
            for c in candidates
        }
        stats = time_side_by_side(backends, feeds, size, fixed, progress, measure)
        for candidate in candidates:
            candidate.latency = stats[candidate.scheme]

    with progress.task("Checking each OpenVINO scheme against the gates", total=len(candidates)) as advance:
        for candidate in candidates:
            check(candidate)
            advance(1)
    time_all()
    # NNCF missing the gates: its accuracy control, where a rebuilt model could still win; then judged and
    # timed again like the first.
    nncf = next((c for c in candidates if c.scheme == "nncf" and c.misses), None)
    if nncf is not None and retry_nncf is not None:
        rivals = {c.scheme: c.latency["p50_ms"] for c in candidates if c is not nncf and not c.misses}
        restored = retry_nncf(judge) if retry_nncf.worth_it(nncf.latency["p50_ms"], rivals) else None
        if restored is not None:  # None: skipped, or stopped by its time budget; the first model stays
            nncf.path = restored
            check(nncf)
            if not nncf.misses:
                time_all()

    eligible = [c for c in candidates if not c.misses]
    winner = min(eligible, key=lambda c: c.latency["p50_ms"]) if eligible else candidates[0]
    for candidate in candidates:
        if candidate is winner:
            continue
        if candidate.misses:
            candidate.lost = "misses the gates (" + "; ".join(candidate.misses) + ")"
        else:
            p50, best = candidate.latency["p50_ms"], winner.latency["p50_ms"]
            candidate.lost = f"slower: p50 {p50:.3f} ms vs {best:.3f} ms ({winner.scheme})"
    return winner


def scheme_record(candidates: list[SchemeCandidate], winner: SchemeCandidate) -> dict[str, Any]:
    """The stage record's `openvino_scheme`: the choice, why, and both candidates' figures."""
    if winner.misses:
        why = "neither scheme meets the gates: modelforge's (with its fallback record) ships and the gates fail"
    else:
        others = [c for c in candidates if c is not winner and c.latency]
        versus = "; ".join(
            f"{c.scheme} {c.latency['p50_ms']:.3f} ms"
            + (" (misses the gates)" if c.misses else f", {c.latency['p50_ms'] / winner.latency['p50_ms']:.2f}x")
            for c in others
        )
        why = f"fastest that meets the gates: p50 {winner.latency['p50_ms']:.3f} ms"
        why += f" vs {versus}" if versus else ""
    return {
        "chosen": winner.scheme,
        "why": why,
        "candidates": [c.row(c is winner) for c in candidates],
        "method": "each candidate's gate metrics on the eval data on OpenVINO; both timed interleaved in one process, "
        "same input, batch and threads",
    }
