"""The recipe: what to optimize, with which data, which passes, how to evaluate and gate, where to write.

A recipe is YAML validated by pydantic. Every error names its YAML path
(`passes[0].config.method: expected one of 'minmax', 'entropy', 'percentile', got 'kl'`).
The shortcut commands (`modelforge quantize ...`) build the same Recipe from flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RECIPE_VERSION = 1
DEFAULT_OPSET = 17  # ONNX opset for PyTorch conversions: wide runtime support (onnxruntime, TensorRT 8.6+)


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a recipe must never be silently ignored. NaN and infinity (YAML's
    `.nan`, `.inf`) are errors too: a NaN threshold or time limit would make every comparison with it false."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class Preprocessing(StrictModel):
    """How image files become model input (image folders only)."""

    size: tuple[int, int] | None = Field(
        None, description="Final [height, width]; default: the model input's fixed spatial dims."
    )
    resize: int | None = Field(
        None, description="Resize the shorter side to this before the center crop; default size/0.875."
    )
    mean: list[float] = Field([0.0], description="Per-channel mean subtracted after scaling pixels to [0, 1].")
    std: list[float] = Field([1.0], description="Per-channel std dividing after the mean is subtracted.")
    layout: Literal["NCHW", "NHWC"] = Field("NCHW", description="Memory layout of the model input.")
    color: Literal["RGB", "BGR", "L"] = Field("RGB", description="Channel order; L is one grayscale channel.")


class DataSource(StrictModel):
    """A data set on disk: .npz, .npy or an image folder; text (.txt, .jsonl, .csv) for a Hugging Face model."""

    path: Path = Field(description="File or folder holding the samples.")
    preprocessing: Preprocessing | None = Field(None, description="Required semantics for image folders.")

    @model_validator(mode="before")
    @classmethod
    def _from_path(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str | Path) else value


class DataConfig(StrictModel):
    calibration: DataSource | None = Field(None, description="Samples used to calibrate quantization.")
    train: DataSource | None = Field(
        None, description="Labelled samples for passes that train (pruning's fine-tuning, distillation)."
    )
    eval_data: DataSource | None = Field(
        None,
        description="Samples used to compare the original and the result (labels enable accuracy). "
        "Without it, held-back calibration samples are used for agreement and cosine.",
    )
    eval_samples: int | None = Field(None, gt=0, description="Use at most this many evaluation samples.")
    text_column: str = Field("text", min_length=1, description="Text data (.jsonl, .csv): the column holding the text.")
    text_pair_column: str | None = Field(
        None,
        min_length=1,
        description="Text data: a second text. Classification encodes the pair jointly; feature extraction embeds "
        "both and compares their similarities (gold similarity: a `score` column, else the label column).",
    )
    label_column: str = Field(
        "label", min_length=1, description="Text data: the label (a name in the model's label2id, or a class id)."
    )
    max_length: int | None = Field(
        None,
        gt=0,
        description="Text data: tokens per example (padded and truncated to it); default: the tokenizer's "
        "model_max_length, at most 512.",
    )


class ModelSource(StrictModel):
    path: Path = Field(
        description="Model file: .onnx, .pt2 (torch.export), TorchScript (.pt/.ts), Keras (.keras/.h5), a "
        "SavedModel folder or a Hugging Face folder (config.json + safetensors); with `factory`, the "
        "weights (.safetensors, or a state dict read with torch.load(weights_only=True))."
    )
    format: Literal[
        "auto", "onnx", "torch-export", "torchscript", "torch-module", "keras", "savedmodel", "huggingface"
    ] = Field("auto", description="Model format; auto detects it from the file (torch-module when `factory` is set).")
    factory: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="'module:function' that builds the nn.Module (called without arguments); `path` then holds "
        "its weights. Imported from the Python path or a folder named with --code-path (never implicitly from the "
        "current folder); a recipe file's factory needs --allow-recipe-code.",
    )
    trust_model_code: bool = Field(
        False,
        description="The model is a TorchScript archive or a SavedModel, whose code runs when it loads. Takes "
        "effect only with --trust-model-code on the command line.",
    )
    opset: int = Field(DEFAULT_OPSET, ge=13, le=23, description="ONNX opset used when converting a PyTorch model.")
    task: (
        Literal[
            "text-classification",
            "token-classification",
            "feature-extraction",
            "image-classification",
            "text-generation",
        ]
        | None
    ) = Field(None, description="Hugging Face folders: the task (default: from config.json's architectures).")
    trust_remote_code: bool = Field(
        False,
        description="Hugging Face folders whose config names Python code in the folder (auto_map) or a model_type "
        "transformers does not know. Takes effect only with --trust-remote-code on the command line.",
    )
    exporter: Literal["auto", "optimum", "torch"] = Field(
        "auto",
        description="Hugging Face folders to ONNX: optimum's exporter (auto: where it supports the model) or "
        "torch.onnx.",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_path(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str | Path) else value

    @model_validator(mode="after")
    def _factory_format(self) -> ModelSource:
        if self.factory is not None and self.format == "auto":
            self.format = "torch-module"
        if (self.format == "torch-module") != (self.factory is not None):
            raise ValueError("format torch-module and a `factory` ('module:function') go together")
        return self


class PassSpec(StrictModel):
    name: str = Field(description="Registered pass name (see `modelforge passes`).")
    config: dict[str, Any] = Field(default_factory=dict, description="The pass's own options.")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class LatencyConfig(StrictModel):
    batch_size: int = Field(1, gt=0, description="Batch size of the latency measurement.")
    threads: int | None = Field(
        None, gt=0, description="Intra-op threads for both models; default: all cores of this machine."
    )
    warmup: int = Field(10, ge=0, description="Untimed runs of each model before measuring.")
    min_runs: int = Field(
        50, gt=0, description="Timed runs of each model, interleaved A/B (at least 1000 when a p99 SLO is judged)."
    )
    min_seconds: float = Field(
        1.0,
        ge=0,
        description="Measure for at least this long per batch size (all models together): a few dozen runs of a "
        "sub-millisecond model take milliseconds, and one scheduler hiccup would decide their p50.",
    )
    max_seconds: float = Field(
        30.0,
        gt=0,
        description="Time budget per batch size: stop adding runs after this long, stable or not "
        "(one block of runs of each model always completes).",
    )
    stable_within: float = Field(
        0.02,
        gt=0,
        lt=1,
        description="After min_runs, keep running until the p50 of the last half of the runs is within this "
        "fraction of the p50 of all runs (for every model), or the time budget ends.",
    )
    batch_sizes: list[int] = Field(
        default_factory=list,
        description="Extra batch sizes to sweep (latency and throughput per batch), e.g. [1, 8, 32, 64]. "
        "batch_size and the SLO's batch size are always measured; default: no others, so runs stay fast. "
        "A model with a fixed batch dimension is measured at that batch only.",
    )

    @field_validator("batch_sizes")
    @classmethod
    def _positive_batches(cls, sizes: list[int]) -> list[int]:
        if any(size <= 0 for size in sizes):
            raise ValueError(f"batch sizes must be positive, got {sizes}")
        return sorted(set(sizes))


class SLOConfig(StrictModel):
    """A latency service-level objective: the report says whether each model meets it at `batch_size`,
    and the largest measured batch size at which it still does. A limit holds when the statistic's 95% upper
    confidence bound is within it, not just the measured value (a p99 just under the limit is a coin flip)."""

    latency_p99_ms: float | None = Field(None, gt=0, description="The p99 latency must not exceed this.")
    latency_p50_ms: float | None = Field(None, gt=0, description="The p50 latency must not exceed this.")
    batch_size: int = Field(1, gt=0, description="Batch size the SLO applies to (it is added to the sweep).")
    gate: bool = Field(True, description="Also a gate: the run fails (exit 1) when the result misses the SLO.")

    @model_validator(mode="after")
    def _has_a_limit(self) -> SLOConfig:
        if self.latency_p99_ms is None and self.latency_p50_ms is None:
            raise ValueError("an SLO needs latency_p99_ms or latency_p50_ms")
        return self


CUSTOM_METRIC_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"


class EvaluateConfig(StrictModel):
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    skip_latency: bool = Field(False, description="Do not measure latency (speed-up gates then fail).")
    slo: SLOConfig | None = Field(None, description="Latency objective checked for both models, e.g. p99 <= 200 ms.")
    custom_metrics: list[str] = Field(
        default_factory=list,
        description="Extra metrics as 'module:function'; each is called once as fn(baseline_outputs, "
        "result_outputs, labels) with lists of arrays over the whole eval set (labels may be None) and returns "
        "a number or a mapping of names to numbers. A recipe file's metrics (other than modelforge's own) need "
        "--allow-recipe-code; never imported in a dry run.",
    )

    @field_validator("custom_metrics")
    @classmethod
    def _metric_specs(cls, specs: list[str]) -> list[str]:
        import re

        for spec in specs:
            if not re.match(CUSTOM_METRIC_PATTERN, spec):
                raise ValueError(f"custom metric {spec!r} is not of the form 'module:function'")
        return specs


@dataclass(frozen=True)
class GateMetric:
    """One metric gate: the GatesConfig field, the report summary figure it reads, which way it passes, and how
    its default is chosen. The one definition every user reads: run.gates (defaults, the verdict), the quantize
    fallback's budget (quantization.fallback.Budget)."""

    name: str  # the GatesConfig field, and the gate's name in report.json
    summary_key: str  # the figure of report.json's `summary` the gate is judged on
    direction: Literal["min", "max"]  # min: the value must be >= the threshold; max: <= (a missing value fails)
    # behaviour: compares the result's outputs with the original's; a default may set it (decided from the
    # model's outputs and the passes, see run.gates) and it steers the quantize fallback. speed: depends on the
    # machine, so never a default. task: a metric of the model's task that only the final evaluation measures
    # (never a default, and the quantize fallback does not aim at it).
    kind: Literal["behaviour", "speed", "task"]
    sanity_default: float | None = None  # after passes that must not change what the model computes
    training_default: float | None = None  # after prune or distill, which change it on purpose
    needs: Literal["labels", "latency", "pairs", "text"] | None = (
        None  # what the run must measure for the gate to be judged
    )

    def passes(self, value: float | None, threshold: float) -> bool:
        return value is not None and (value >= threshold if self.direction == "min" else value <= threshold)


# In GatesConfig's field order (the order gates are listed in report.json).
GATE_METRICS: tuple[GateMetric, ...] = (
    GateMetric("max_accuracy_drop", "accuracy_drop_pp", "max", "behaviour", training_default=5.0, needs="labels"),
    GateMetric("min_speedup", "speedup", "min", "speed", needs="latency"),
    GateMetric("min_agreement", "top1_agreement", "min", "behaviour", sanity_default=0.99, training_default=0.9),
    GateMetric("min_cosine", "output_cosine", "min", "behaviour", sanity_default=0.99, training_default=0.9),
    GateMetric("min_pair_spearman", "pair_spearman_vs_original", "min", "task", needs="pairs"),
    # Language models (weight-only quantization): held-out perplexity and next-token distributions.
    GateMetric("max_perplexity_ratio", "perplexity_ratio", "max", "task", needs="text"),
    GateMetric("max_token_kl", "token_kl", "max", "task", needs="text"),
)
GATES = {metric.name: metric for metric in GATE_METRICS}


class GatesConfig(StrictModel):
    max_accuracy_drop: float | None = Field(
        None,
        ge=0,
        description="Fail when top-1 accuracy (token accuracy for a token classifier) drops by more than this many "
        "percentage points.",
    )
    min_speedup: float | None = Field(None, gt=0, description="Fail when baseline p50 / result p50 is below this.")
    min_agreement: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Fail when the share of samples with the same top-1 class is below this.",
    )
    min_cosine: float | None = Field(
        None, ge=-1, le=1, description="Fail when the mean output cosine similarity is below this."
    )
    min_pair_spearman: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="Embedding models with sentence pairs in the eval data: fail when the Spearman correlation of "
        "the result's pair similarities with the original's is below this.",
    )
    max_perplexity_ratio: float | None = Field(
        None,
        ge=1,
        description="Language models: fail when the result's perplexity on the held-out text is more than this "
        "many times the original's (default 1.25 for weight-only quantization).",
    )
    max_token_kl: float | None = Field(
        None,
        ge=0,
        description="Language models: fail when the mean KL divergence (nats) of the result's next-token "
        "distribution from the original's, over the held-out text, is above this (default 0.1).",
    )
    default_gates: bool = Field(
        True,
        description=f"Add the default gates where no gate of that metric is set: top-1 agreement >= "
        f"{GATES['min_agreement'].sanity_default:g} for classifier-like outputs, output cosine >= "
        f"{GATES['min_cosine'].sanity_default:g} otherwise; after prune or distill, accuracy drop <= "
        f"{GATES['max_accuracy_drop'].training_default:g} pp (agreement >= {GATES['min_agreement'].training_default:g}"
        f" / cosine >= {GATES['min_cosine'].training_default:g} without labels). They steer the quantize fallback "
        "as user gates do.",
    )


class OutputConfig(StrictModel):
    dir: Path = Field(Path("modelforge-out"), description="Output directory (written atomically).")
    force: bool = Field(
        False, description="Replace an existing output directory (in a recipe file: only with --force as well)."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_path(cls, value: Any) -> Any:
        return {"dir": value} if isinstance(value, str | Path) else value


class OptimizeConfig(StrictModel):
    """What `modelforge optimize` searches (prune ratio x fine-tuning x precision x runtime) and what the winner
    must meet: the chain is chosen by the search, so a recipe with this section has no `passes`."""

    latency_p99_ms: float | None = Field(
        None, gt=0, description="The winner's p99 latency (ms) at evaluate.latency.batch_size and threads."
    )
    speedup: float | None = Field(None, gt=0, description="Instead of (or with) an SLO: original p50 / winner p50.")
    max_accuracy_drop: float | None = Field(
        1.0, ge=0, description="Accuracy the winner may lose against the original, in percentage points."
    )
    objective: Literal["accuracy", "latency", "size"] = Field(
        "accuracy", description="What decides among the candidates that meet every constraint."
    )
    prune_ratios: list[float] = Field(
        [0.3, 0.5, 0.7],
        description="Structured prune ratios (share of channels removed per layer); 0 alone: no pruning. The "
        "unpruned model is always a candidate.",
    )
    mac_targets: list[float] | None = Field(
        None,
        description="Instead of (or with) prune_ratios: shares of the original's multiply-accumulates to keep, e.g. "
        "[0.5, 0.25]; each becomes the smallest prune ratio that brings the MACs within it. Given alone, these "
        "replace the default prune_ratios.",
    )
    fine_tune: list[Literal["kd", "labels"]] = Field(
        ["kd", "labels"], description="How a pruned model is fine-tuned: kd (the original as teacher) or labels."
    )
    precisions: list[Literal["fp32", "bf16", "int8"]] | None = Field(
        None, description="Precisions to try (default: fp32, int8, and bf16 where this CPU computes it)."
    )
    runtimes: list[str] | None = Field(None, description="Runtimes to try (default: every installed one).")
    epochs: int = Field(3, ge=1, description="Most fine-tuning epochs a trial gets (ASHA stops the weak earlier).")
    batch_size: int = Field(64, gt=0, description="Fine-tuning batch size.")
    lr: float = Field(1e-3, gt=0, description="Fine-tuning learning rate.")
    reduction_factor: int = Field(2, ge=2, description="ASHA: keep 1 in this many trials at each rung.")
    time_budget: float | None = Field(
        None, gt=0, description="Seconds the whole search may take; the best found so far is kept."
    )
    ray_address: str | None = Field(
        None, description="A Ray cluster to run the trials on (default: a local Ray started for the run)."
    )

    @model_validator(mode="after")
    def _check(self) -> OptimizeConfig:
        if self.latency_p99_ms is None and self.speedup is None:
            raise ValueError("give latency_p99_ms or speedup: the search needs a latency goal")
        if not self.prune_ratios or any(not 0 <= r < 1 for r in self.prune_ratios):
            raise ValueError(f"prune_ratios must be in [0, 1), got {self.prune_ratios}")
        if self.mac_targets is not None and (not self.mac_targets or any(not 0 < t < 1 for t in self.mac_targets)):
            raise ValueError(f"mac_targets must be shares in (0, 1), got {self.mac_targets}")
        if not self.fine_tune:
            raise ValueError("fine_tune needs kd, labels or both")
        if self.precisions is not None and not self.precisions:
            raise ValueError("precisions must name at least one")
        if self.runtimes is not None and not self.runtimes:
            raise ValueError("runtimes must name at least one")
        return self

    @property
    def ratios(self) -> list[float]:
        """The prune ratios named as ratios: `prune_ratios`, unless MAC targets were given and no ratios were."""
        return [0.0] if self.mac_targets and "prune_ratios" not in self.model_fields_set else self.prune_ratios

    @property
    def prunes(self) -> bool:
        return bool(self.mac_targets) or any(r > 0 for r in self.ratios)


class Recipe(StrictModel):
    version: Literal[1] = Field(RECIPE_VERSION, description="Recipe schema version.")
    model: ModelSource
    data: DataConfig = Field(default_factory=DataConfig)
    passes: list[PassSpec] = Field(default_factory=list, description="Ordered passes to apply.")
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    gates: GatesConfig = Field(default_factory=GatesConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    seed: int = Field(0, description="Seeds every random choice, so a recipe reproduces its artifact.")
    cache: bool = Field(
        True, description="Reuse a stage's stored result when its input bytes, config, data and versions match."
    )
    optimize: OptimizeConfig | None = Field(
        None, description="Search the pass chain that meets a latency goal at the least accuracy cost (no passes)."
    )

    @model_validator(mode="after")
    def _optimize_alone(self) -> Recipe:
        if self.optimize is not None and self.passes:
            raise ValueError("a recipe with `optimize` has no `passes`: the search chooses the chain")
        return self

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
