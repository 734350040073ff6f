"""NNCF's post-training INT8 quantization of the OpenVINO model: the second scheme of `--target openvino`.

OpenVINO's own quantizer (`nncf.quantize`) works on the model as OpenVINO reads it, so it places its
FakeQuantize ops where OpenVINO's CPU plugin fuses them best; modelforge's QDQ scheme is placed for onnxruntime
first. Which is faster depends on the CPU and the model (issue 24), so the flow builds both and measures.

What stays float is the family detection's decision, as in the QDQ scheme: LayerNorms (fused or written out of
elementary ops), Softmax and the recipe's `exclude_nodes` go to NNCF's `ignored_scope`. OpenVINO keeps the ONNX
tensor names on the ops that produce them, and the ops an ONNX node is decomposed into (LayerNormalization ->
MVN, Multiply, Add) carry no tensor name of their own: an ONNX node maps to the op producing its output plus the
unnamed ops above it, up to the named tensors its inputs are (`ov_ops_for`). Op names are per-read counters for
the unnamed ops, so the mapping is made on the very `ov.Model` handed to NNCF.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelforge.errors import PassError, first_line
from modelforge.optional import installed, require

if TYPE_CHECKING:
    import onnx

    from modelforge.data import BoundDataset
    from modelforge.model.artifact import ModelArtifact
    from modelforge.quantization.config import QuantizeConfig
    from modelforge.quantization.state import QuantizeInputs

TRANSFORMER_FAMILIES = ("transformer", "mixed")  # NNCF's model_type=TRANSFORMER
FLOAT_OPS = {"Softmax", "LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization"}


def nncf_available() -> bool:
    """nncf and openvino importable (both come with the `[openvino]` extra)."""
    return installed("nncf") and installed("openvino")


def require_nncf(purpose: str = "quantize --scheme nncf") -> Any:
    return require("nncf", purpose)


@dataclass
class NncfBuild:
    """NNCF's quantized IR and how it was made (the stage record's `nncf` entry)."""

    xml: Path
    preset: str
    model_type: str | None
    subset_size: int
    float_nodes: list[str]  # ONNX node names kept float
    ignored_ops: list[str]  # the OpenVINO ops they map to (NNCF's ignored_scope)
    fake_quantize: int  # FakeQuantize ops inserted
    seconds: float
    notes: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "model_type": self.model_type or "default",
            "subset_size": self.subset_size,
            "float_nodes": len(self.float_nodes),
            "ignored_ops": len(self.ignored_ops),
            "fake_quantize": self.fake_quantize,
            "seconds": round(self.seconds, 2),
            **({"notes": self.notes} if self.notes else {}),
        }


def float_kept_nodes(model: onnx.ModelProto, exclude: list[str]) -> list[str]:
    """ONNX nodes the family detection keeps float: fused and decomposed norms, Softmax, `exclude_nodes`."""
    from modelforge.quantization.families import norm_nodes

    names = [n.name for n in model.graph.node if n.op_type in FLOAT_OPS and n.name]
    return sorted({*names, *norm_nodes(model), *exclude})


def ov_ops_for(ov_model: Any, onnx_model: onnx.ModelProto, nodes: list[str]) -> dict[str, list[str]]:
    """ONNX node name -> the OpenVINO op names it became in `ov_model` (see the module docstring); a node that
    OpenVINO folded away maps to nothing."""
    producer: dict[str, Any] = {}
    for op in ov_model.get_ops():
        for index in range(op.get_output_size()):
            for tensor in op.output(index).get_names():
                producer[tensor] = op
    by_name = {n.name: n for n in onnx_model.graph.node}
    mapped: dict[str, list[str]] = {}
    for name in nodes:
        node = by_name.get(name)
        if node is None:
            continue
        stack = [producer[t] for t in node.output if t in producer]
        seen: dict[str, Any] = {}
        while stack:
            op = stack.pop()
            if op.get_friendly_name() in seen or op.get_type_name() in ("Constant", "Parameter", "Result"):
                continue
            seen[op.get_friendly_name()] = op
            for source in op.input_values():
                above = source.get_node()
                if not source.get_names():  # unnamed: made by OpenVINO from this same ONNX node
                    stack.append(above)
        mapped[name] = sorted(seen)
    return mapped


# NNCF's accuracy control is greedy: it ranks every quantizer group (one compile + one validation each), then
# reverts the top group per step, and re-ranks ALL remaining groups whenever a step makes the score worse, which
# a noisy score (top-1 agreement on a few dozen samples) does often. On a MobileNetV3-small (79 groups) that is
# 35-75 s per ranking here, and it had not met the gates after 11 minutes. Both bounds below stop it; beyond ten
# reverted groups NNCF's speed edge, the reason to build its candidate, is mostly gone anyway.
MAX_REVERTED_GROUPS = 10  # NNCF's max_num_iterations unless fallback_max_nodes says otherwise
CONTROL_SECONDS = 300.0  # its wall time unless the run's --time-budget says otherwise


class AccuracyControlStopped(Exception):
    """NNCF's accuracy control ran past its time budget (raised from the validation function, the one place
    NNCF hands control back; NNCF's partial result is lost with it, so the first NNCF model stays)."""


@dataclass(frozen=True)
class AccuracyControl:
    """`nncf.quantize_with_accuracy_control` settings. `items`: (model inputs, labels, float outputs) per eval
    batch; `validate(compiled_model, items)` -> (score, per-item scores), the score 1 where the run's gates are
    met and below 1 by the shortfall. NNCF ranks its quantizers by the per-item scores and reverts the most
    harmful until the whole-set score is the float model's (1), at most `max_iterations` groups, until
    `deadline` (time.monotonic()) at the latest."""

    items: list[tuple[dict, Any, list]]
    validate: Callable[[Any, Iterable[tuple[dict, Any, list]]], tuple[float, list[float]]]
    max_iterations: int = MAX_REVERTED_GROUPS
    deadline: float | None = None


class _Samples:
    """The calibration data one batch at a time, iterable again for each of NNCF's passes. Held in memory up to
    KEPT_BYTES (NNCF picks items by index, each pick a pass over the data: re-reading the file each time is slow);
    larger sets are read again each pass, so memory stays bounded."""

    KEPT_BYTES = 256 << 20

    def __init__(self, data: BoundDataset, batch: int, limit: int):
        self.data, self.batch, self.limit = data, batch, limit
        self.kept: list[dict] | None = None

    def _read(self) -> Iterator[dict]:
        seen = 0
        for feeds in self.data.batches(self.batch):
            if seen >= self.limit:
                return
            yield feeds
            seen += len(next(iter(feeds.values())))

    def __iter__(self) -> Iterator[dict]:
        if self.kept is not None:
            yield from self.kept
            return
        kept: list[dict] | None = []
        size = 0
        for feeds in self._read():
            if kept is not None:
                size += sum(a.nbytes for a in feeds.values())
                kept = kept + [feeds] if size <= self.KEPT_BYTES else None
            yield feeds
        if kept is not None:
            self.kept = kept


def build_nncf(
    onnx_path: Path,
    calibration: BoundDataset,
    out_dir: Path,
    *,
    transformer: bool,
    float_nodes: list[str],
    samples: int,
    batch: int = 1,
    stage: str = "quantize",
    control: AccuracyControl | None = None,
) -> NncfBuild:
    """`nncf.quantize` on the model as OpenVINO reads it, with the float nodes in `ignored_scope` (with `control`:
    `nncf.quantize_with_accuracy_control`); the IR is written to `out_dir/model.xml` (+ .bin), weights exact."""
    from modelforge.model.onnx_model import load_onnx
    from modelforge.quiet import quiet

    nncf = require_nncf()
    ov = require("openvino", "quantize --scheme nncf")
    started = time.perf_counter()
    onnx_model = load_onnx(onnx_path, load_external_data=False)
    try:
        model = ov.Core().read_model(str(onnx_path))
    except Exception as exc:
        raise PassError(stage, f"OpenVINO cannot read the model: {first_line(exc, 300)}") from exc
    ignored = sorted({op for ops in ov_ops_for(model, onnx_model, float_nodes).values() for op in ops})
    preset = nncf.QuantizationPreset.MIXED if transformer else nncf.QuantizationPreset.PERFORMANCE
    model_type = nncf.ModelType.TRANSFORMER if transformer else None
    subset = min(samples, calibration.num_samples)
    dataset = nncf.Dataset(_Samples(calibration, batch, subset))
    settings = {
        "preset": preset,
        "model_type": model_type,
        "subset_size": max(1, subset // batch),
        "ignored_scope": nncf.IgnoredScope(names=ignored, validate=False),
    }
    out_of_time: list[float] = []

    def validate(compiled: Any, items: Any) -> tuple[float, list[float]]:
        assert control is not None
        if control.deadline is not None and time.monotonic() > control.deadline:
            out_of_time.append(time.perf_counter() - started)
            raise AccuracyControlStopped(f"time budget used up after {out_of_time[0]:.0f} s")
        return control.validate(compiled, items)

    try:
        with quiet():  # NNCF's progress bars and INFO lines are not ours to print (the flow shows a task)
            if control is None:
                quantized = nncf.quantize(model, dataset, **settings)
            else:
                restorer = nncf.quantization.advanced_parameters.AdvancedAccuracyRestorerParameters(
                    max_num_iterations=control.max_iterations
                )
                quantized = nncf.quantize_with_accuracy_control(
                    model,
                    dataset,
                    nncf.Dataset(control.items, lambda item: item[0]),
                    validation_fn=validate,
                    max_drop=0.0,  # the score is 1 for the float model and for any model that meets the gates
                    drop_type=nncf.DropType.ABSOLUTE,
                    advanced_accuracy_restorer_parameters=restorer,
                    **settings,
                )
    except Exception as exc:  # NNCF raises its own error types, often multi-line
        if out_of_time:  # NNCF may wrap what the validation function raised
            raise AccuracyControlStopped(f"time budget used up after {out_of_time[0]:.0f} s") from exc
        raise PassError(stage, f"NNCF cannot quantize the model: {first_line(exc, 300)}") from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    xml = out_dir / "model.xml"
    ov.save_model(quantized, str(xml), compress_to_fp16=False)
    fake_quantize = sum(1 for op in quantized.get_ops() if op.get_type_name() == "FakeQuantize")
    return NncfBuild(
        xml=xml,
        preset=preset.value if hasattr(preset, "value") else str(preset),
        model_type="transformer" if transformer else None,
        subset_size=subset,
        float_nodes=float_nodes,
        ignored_ops=ignored,
        fake_quantize=fake_quantize,
        seconds=time.perf_counter() - started,
    )


def quantized_ops(xml: Path) -> dict[str, list[str]]:
    """op name -> its input-producing FakeQuantize names, for ops fed by a FakeQuantize (tests, debugging)."""
    ov = require("openvino", "reading OpenVINO IR")
    model = ov.Core().read_model(str(xml))
    fed: dict[str, list[str]] = {}
    for op in model.get_ops():
        for source in op.input_values():
            above = source.get_node()
            if above.get_type_name() == "FakeQuantize":
                fed.setdefault(op.get_friendly_name(), []).append(above.get_friendly_name())
    return fed


def nncf_candidate(
    original: Path, config: QuantizeConfig, inputs: QuantizeInputs, out_dir: Path, *, name: str = "quantize",
    control: AccuracyControl | None = None,
) -> NncfBuild:  # fmt: skip
    """NNCF's IR of `original` (the second scheme of `--target openvino`, and `target auto`'s int8-nncf), with
    the run's calibration samples and the family detection's float nodes."""
    from modelforge.model.onnx_model import io_spec, load_onnx
    from modelforge.quantization.families import detect_family
    from modelforge.quantization.nncf_scheme import build_nncf, float_kept_nodes
    from modelforge.runtimes.onnxruntime import fixed_batch_size

    model = load_onnx(original, load_external_data=False)
    family = detect_family(model)
    transformer = config.preset == "transformer" or (config.preset == "auto" and family.family in TRANSFORMER_FAMILIES)
    float_nodes = float_kept_nodes(model, config.exclude_nodes)
    calibration = inputs.calibration
    samples = config.calibration_samples or calibration.num_samples
    batch = fixed_batch_size(io_spec(model)) or 1
    del model
    with inputs.progress.task("NNCF: quantizing the OpenVINO model"):
        return build_nncf(
            original, calibration, out_dir, transformer=transformer, float_nodes=float_nodes, samples=samples,
            batch=batch, stage=name, control=control,
        )  # fmt: skip


def nncf_artifact(original: ModelArtifact, xml: Path, folder: Path) -> ModelArtifact:
    """The shipped NNCF result: the float model NNCF quantized as model.onnx, its IR beside it (`openvino_ir`)."""
    import dataclasses
    import shutil

    from modelforge.model.external_data import external_data_files
    from modelforge.model.onnx_model import load_onnx, onnx_artifact, save_onnx

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "model.onnx"
    if external_data_files(original.path):
        save_onnx(load_onnx(original.path), target)
    else:
        shutil.copyfile(original.path, target)
    for source in (xml, xml.with_suffix(".bin")):
        shutil.copyfile(source, folder / source.name)
    shipped = onnx_artifact(target)
    return dataclasses.replace(
        shipped, openvino_ir=folder / xml.name, model_metadata=original.model_metadata, huggingface=original.huggingface
    )
