"""The search space: prune ratios, fine-tuning modes, precisions and runtimes, narrowed by the user and by what
this machine offers. Bad axes are refused here, before anything is measured (exit 2)."""

from __future__ import annotations

from dataclasses import dataclass

from modelforge.errors import InputError

# Sources the search prunes and fine-tunes: torch.export programs (the trials and the replay rebuild the same layers).
PRUNABLE_FORMATS = ("torch-export",)
ALL_PRECISIONS = ("fp32", "bf16", "int8")


@dataclass(frozen=True)
class Form:
    """One deployable form of a pruned architecture: how much was pruned, the precision and the runtime."""

    ratio: float
    precision: str
    runtime: str

    @property
    def name(self) -> str:
        return f"p{self.ratio:.2f}-{self.precision}-{self.runtime}"


@dataclass(frozen=True)
class Space:
    prune_ratios: tuple[float, ...]  # 0.0 (the unpruned model) first, always
    fine_tune: tuple[str, ...]
    precisions: tuple[str, ...]
    runtimes: tuple[str, ...]

    @property
    def prunes(self) -> bool:
        return any(r > 0 for r in self.prune_ratios)

    def forms(self) -> list[Form]:
        """Every ratio x precision x runtime this machine can run (onnxruntime has no bf16)."""
        from modelforge.runtimes.serving import offer

        return [
            Form(ratio, precision, runtime)
            for ratio in self.prune_ratios
            for runtime in self.runtimes
            for precision in self.precisions
            if offer(runtime, precision)[0]
        ]

    def record(self) -> dict:
        return {
            "prune_ratios": list(self.prune_ratios),
            "fine_tune": list(self.fine_tune),
            "precisions": list(self.precisions),
            "runtimes": list(self.runtimes),
        }


def installed_runtimes() -> list[str]:
    from modelforge.model.artifact import RUNTIME_PRECISIONS
    from modelforge.runtimes.serving import runtime_installed

    return [r for r in RUNTIME_PRECISIONS if runtime_installed(r)]


def resolve_space(config, source_format: str, has_train: bool) -> Space:
    """The axes of `config` (recipe.schema.OptimizeConfig) checked against the model and this machine."""
    from modelforge.machine import precision_support

    installed = installed_runtimes()
    runtimes = list(dict.fromkeys(config.runtimes or installed))
    unknown = [r for r in runtimes if r not in installed]
    if unknown:
        raise InputError(
            f"runtime {unknown[0]!r} is not installed or not known; installed: {', '.join(installed)}",
            hint="narrow with --runtimes " + ",".join(installed),
        )
    if config.precisions is None:
        precisions = [p for p in ALL_PRECISIONS if precision_support(p)[0]]
    else:
        precisions = list(dict.fromkeys(config.precisions))
        for precision in precisions:
            usable, why = precision_support(precision)
            if not usable:
                raise InputError(f"precision {precision} is not offered on this CPU: {why}", hint="drop it")
    ratios = sorted({0.0, *(round(float(r), 4) for r in config.ratios)})
    space = Space(tuple(ratios), tuple(dict.fromkeys(config.fine_tune)), tuple(precisions), tuple(runtimes))
    if not space.forms():
        raise InputError(
            f"no runtime in {', '.join(runtimes)} runs a precision in {', '.join(precisions)}",
            hint="add fp32 or int8 to --precisions",
        )
    if config.prunes:
        if source_format not in PRUNABLE_FORMATS:
            what = "an ONNX model" if source_format == "onnx" else f"a {source_format} model"
            asked = [f"{r:g}" for r in ratios if r > 0] + [f"MAC target {t:g}" for t in config.mac_targets or ()]
            raise InputError(
                f"prune ratios {', '.join(asked)} need a PyTorch/Keras/Hugging Face "
                f"source; this is {what} (optimize prunes PyTorch .pt2 programs)",
                hint="give the PyTorch model, or narrow with --prune-ratios 0",
            )
        if not has_train:
            raise InputError(
                "pruning fine-tunes: pass --train-data DATA (with labels)", hint="or narrow with --prune-ratios 0"
            )
    return space


def check_early(config, model_path, has_train: bool) -> None:
    """The checks that need no loaded model, made before anything is loaded or measured (exit 2)."""
    from pathlib import Path

    installed = installed_runtimes()
    for runtime in config.runtimes or ():
        if runtime not in installed:
            raise InputError(
                f"runtime {runtime!r} is not installed or not known; installed: {', '.join(installed)}",
                hint="narrow with --runtimes " + ",".join(installed),
            )
    if config.prunes:
        from modelforge.optional import installed, missing

        if not installed("ray"):
            raise missing("ray", "fine-tuning pruned candidates (Ray Tune trials)")
        if Path(model_path).suffix.lower() == ".onnx":
            raise InputError(
                f"pruning needs a PyTorch/Keras/Hugging Face source; {model_path} is an ONNX model (optimize prunes "
                "PyTorch .pt2 programs)",
                hint="give the PyTorch model, or narrow with --prune-ratios 0",
            )
        if not has_train:
            raise InputError(
                "pruning fine-tunes: pass --train-data DATA (with labels)", hint="or narrow with --prune-ratios 0"
            )
