"""The flag groups of the shortcut commands, each declared once and filling its part of the recipe dict.

A shortcut command (quantize, prune, distill, export) is a one-pass recipe: its own flags make the pass's
config, and these groups make the rest (data, output, gates, seed and threads, what the command line allows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from modelforge.cli.flags import Flag, FlagGroup


def parse_floats(text: str | None, flag: str) -> list[float] | None:
    """`--mean 0.485,0.456,0.406` as numbers; None when the flag was not given."""
    from modelforge.errors import InputError

    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"{flag} {text!r}: expected comma-separated numbers, e.g. 0.485,0.456,0.406") from None


def pass_config(raw: dict[str, Any]) -> dict[str, Any]:
    """The config of the recipe's (one) pass, where the training and checkpoint groups write."""
    return raw["passes"][-1]["config"]


class PreprocessingFlags(FlagGroup):
    """How image folders become tensors; files carry their tensors as they are."""

    mean = Flag(str | None, typer.Option(help="Image folders: per-channel mean, e.g. 0.485,0.456,0.406."), None)
    std = Flag(str | None, typer.Option(help="Image folders: per-channel std, e.g. 0.229,0.224,0.225."), None)
    color = Flag(
        str | None, typer.Option(help="Image folders: channel order RGB, BGR, or L (one grayscale channel)."), None
    )

    def settings(self) -> dict[str, Any]:
        """The recipe's `preprocessing` block for the flags given (mean, std, color), checked."""
        pairs = (("mean", parse_floats(self.mean, "--mean")), ("std", parse_floats(self.std, "--std")))
        return {k: v for k, v in (*pairs, ("color", self.color)) if v is not None}


class DataFlags(FlagGroup):
    """The data files or folders: calibration, training and evaluation samples."""

    calibration = Flag(
        Path | None,
        typer.Option(
            "--calibration",
            "-c",
            help="Calibration data: .npz, .npy, an image folder, or text (.txt, .jsonl, "
            ".csv) for a Hugging Face model.",
        ),
        None,
    )
    train_data = Flag(
        Path | None,
        typer.Option("--train-data", "-t", help="Labelled training data: .npz, an image folder, or labelled text."),
        None,
    )
    eval_data = Flag(
        Path | None, typer.Option("--eval-data", "-e", help="Evaluation data (labels enable accuracy)."), None
    )

    text_column = Flag(str | None, typer.Option(help="Text data (.jsonl/.csv): the text column (default: text)."), None)
    text_pair_column = Flag(
        str | None, typer.Option(help="Text data: a second text column (sentence pairs; embeddings: compared)."), None
    )
    label_column = Flag(
        str | None, typer.Option(help="Text data: the label column, mapped through label2id (default: label)."), None
    )
    max_length = Flag(
        int | None,
        typer.Option(help="Text data: tokens per example, padded and truncated (default: the tokenizer's, <= 512)."),
        None,
    )

    RECIPE_KEYS = {"calibration": "calibration", "train_data": "train", "eval_data": "eval_data"}
    # The text flags (Hugging Face models' .txt/.jsonl/.csv data), for a command's Pick.
    TEXT = ("text_column", "text_pair_column", "label_column", "max_length")

    def fill(self, raw: dict[str, Any], preprocessing: PreprocessingFlags | None = None, files_note: str = "") -> None:
        """`data:` of the recipe; the preprocessing flags apply to the folders among the data given."""
        settings = preprocessing.settings() if preprocessing is not None else {}
        paths = {key: getattr(self, name) for name, key in self.RECIPE_KEYS.items() if self.given(name)}
        if settings and not any(path is not None and path.is_dir() for path in paths.values()):
            from modelforge.errors import InputError

            raise InputError(f"{', '.join(f'--{k}' for k in settings)} apply to image folders only{files_note}")

        def source(path: Path) -> str | dict[str, Any]:
            return {"path": str(path), "preprocessing": settings} if settings and path.is_dir() else str(path)

        raw["data"] = {key: source(path) for key, path in paths.items() if path is not None}
        raw["data"].update({name: getattr(self, name) for name in self.TEXT if getattr(self, name) is not None})


class OutputFlags(FlagGroup):
    """Where the run writes, and whether it may replace what is there."""

    output = Flag(Path, typer.Option("--output", "-o", help="Output directory."), Path("modelforge-out"))
    force = Flag(bool, typer.Option("--force", help="Replace an existing output directory."), False)

    def fill(self, raw: dict[str, Any]) -> None:
        raw["output"] = {"dir": str(self.output), "force": self.force}


class TrainingFlags(FlagGroup):
    """The training loop's settings shared by the commands that train; epochs, batch size and learning rate
    stay each command's own (their defaults and meaning differ: fine-tuning vs training from the teacher)."""

    optimizer = Flag(str, typer.Option(help="sgd, adam or adamw."), "adamw")
    schedule = Flag(str, typer.Option(help="constant, cosine or step."), "cosine")
    early_stopping = Flag(int | None, typer.Option(help="Stop after N epochs without improvement."), None)
    hflip = Flag(bool, typer.Option("--hflip", help="Augment: random horizontal flips."), False)
    crop_padding = Flag(int, typer.Option(help="Augment: random crops after zero-padding by N pixels."), 0)

    def fill(self, raw: dict[str, Any]) -> None:
        """Adds to the pass config's `train` block (which holds the command's epochs, batch size and lr)."""
        train = pass_config(raw).setdefault("train", {})
        train["optimizer"] = self.optimizer
        if self.given("schedule"):
            train["schedule"] = self.schedule
        train.update(hflip=self.hflip, crop_padding=self.crop_padding)
        if self.early_stopping is not None:
            train["early_stopping"] = self.early_stopping


class CheckpointFlags(FlagGroup):
    """Where training keeps its checkpoints, and resuming from them (which bypasses the stage cache)."""

    checkpoint_dir = Flag(
        Path | None,
        typer.Option(
            help="Checkpoint folder, kept (default: in the cache until the pass is done; OUTPUT/checkpoints/ keeps "
            "the final best.pt and last.pt)."
        ),
        None,
    )
    resume = Flag(
        bool,
        typer.Option("--resume", help="Continue an interrupted run from its checkpoints (same -o, same flags)."),
        False,
    )

    def fill(self, raw: dict[str, Any]) -> None:
        """After RuntimeFlags: a resumed run never takes a cached result."""
        config = pass_config(raw)
        config["resume"] = self.resume
        config["checkpoint_dir"] = str(self.checkpoint_dir.resolve()) if self.checkpoint_dir is not None else None
        if self.resume:
            raw["cache"] = False


class GateFlags(FlagGroup):
    """The pass/fail checks a CI job reads from the exit code (1: a gate failed)."""

    max_accuracy_drop = Flag(
        float | None,
        typer.Option(help="Gate: fail (exit 1) if top-1 accuracy (token accuracy: taggers) drops more than PP points."),
        None,
    )
    min_speedup = Flag(float | None, typer.Option(help="Gate: fail if baseline p50 / result p50 < X."), None)
    min_agreement = Flag(float | None, typer.Option(help="Gate: fail if top-1 agreement < F (0..1)."), None)
    min_cosine = Flag(float | None, typer.Option(help="Gate: fail if mean output cosine < F."), None)
    min_pair_spearman = Flag(
        float | None,
        typer.Option(help="Gate: fail if the Spearman of the sentence-pair similarities vs the original's < F."),
        None,
    )
    max_perplexity_ratio = Flag(
        float | None,
        typer.Option(help="Gate, language models: fail if held-out perplexity / the original's > R (default 1.25)."),
        None,
    )
    max_token_kl = Flag(
        float | None,
        typer.Option(help="Gate, language models: fail if the mean next-token KL vs the original > X (default 0.1)."),
        None,
    )
    default_gates = Flag(
        bool,
        typer.Option(
            "--default-gates/--no-default-gates",
            help="Default gates where none of that metric is set: top-1 agreement >= 0.99 (classifier outputs) or "
            "output cosine >= 0.99; after prune/distill, accuracy drop <= 5 pp (agreement/cosine >= 0.9 unlabelled).",
        ),
        True,
    )

    def fill(self, raw: dict[str, Any]) -> None:
        names = ("max_accuracy_drop", "min_speedup", "min_agreement", "min_cosine", "min_pair_spearman")
        names += ("max_perplexity_ratio", "max_token_kl")
        gates = {name: getattr(self, name) for name in names}
        gates["default_gates"] = None if self.default_gates else False  # None: the recipe's default (on)
        raw["gates"] = {k: v for k, v in gates.items() if v is not None}


class RuntimeFlags(FlagGroup):
    """How the run measures and repeats: latency threads, the seed, the stage cache."""

    threads = Flag(int | None, typer.Option(help="Intra-op threads for latency (default: all cores)."), None)
    seed = Flag(int, typer.Option(help="Seed for every random choice."), 0)
    cache = Flag(bool, typer.Option("--cache/--no-cache", help="Reuse cached stage results (content-keyed)."), True)

    def fill(self, raw: dict[str, Any]) -> None:
        raw["seed"] = self.seed
        raw["cache"] = self.cache
        if self.threads is not None:
            raw.setdefault("evaluate", {})["latency"] = {"threads": self.threads}


class RecipeFileFlags(FlagGroup):
    """The recipe these flags make: saved for `modelforge run`, or only validated and shown (dry run)."""

    save_recipe = Flag(
        Path | None,
        typer.Option(help="Also write the recipe these flags make, to replay with `modelforge run`."),
        None,
    )
    dry_run = Flag(bool, typer.Option("--dry-run", help="Validate and print the resolved recipe; run nothing."), False)


class GrantFlags(FlagGroup):
    """What only the command line can allow (README "Security"): code that runs, files outside the recipe's folder."""

    trust_model_code = Flag(
        bool,
        typer.Option(
            "--trust-model-code",
            help="Load TorchScript archives and SavedModels, whose code runs when they load (refused by default; "
            "safer: a torch.export .pt2, or a Keras .keras file).",
        ),
        False,
    )
    trust_remote_code = Flag(
        bool,
        typer.Option(
            "--trust-remote-code",
            help="Load Hugging Face folders whose config names Python code shipped in the folder (auto_map) or "
            "an architecture transformers does not know; that code runs (refused by default).",
        ),
        False,
    )
    allow_recipe_code = Flag(
        bool,
        typer.Option(
            "--allow-recipe-code",
            help="Let the recipe import code it names (model.factory, evaluate.custom_metrics, *_factory).",
        ),
        False,
    )
    allow_paths = Flag(
        list[Path] | None,
        typer.Option(
            "--allow-paths",
            metavar="DIR",
            help="Let the recipe name files under DIR too (default: only its own folder and the current one). "
            "Repeatable.",
        ),
        None,
    )
    code_path = Flag(
        list[Path] | None,
        typer.Option(
            "--code-path",
            metavar="DIR",
            help="Import factories and custom metrics from DIR too (the current folder is never searched "
            "implicitly). Repeatable.",
        ),
        None,
    )

    def fill(self, raw: dict[str, Any]) -> None:
        """`--trust-model-code` (and `--trust-remote-code`) into the model source; `--code-path` folders onto the
        import path, now."""
        from modelforge.run.grants import add_code_paths

        if self.trust_model_code:
            raw["model"]["trust_model_code"] = True
        if self.trust_remote_code:
            raw["model"]["trust_remote_code"] = True
        add_code_paths(self.code_path)  # where --model-factory / --*-factory modules are imported from


class HFModelFlags(FlagGroup):
    """Hugging Face folders: the task, and which exporter makes the ONNX form."""

    task = Flag(
        str | None,
        typer.Option(
            help="Hugging Face folders: text-classification, token-classification, feature-extraction or "
            "image-classification (default: from config.json).",
        ),
        None,
    )
    exporter = Flag(
        str,
        typer.Option(help="Hugging Face folders to ONNX: auto (optimum where it supports the model), optimum, torch."),
        "auto",
    )

    def fill(self, raw: dict[str, Any]) -> None:
        if self.task is not None:
            raw["model"]["task"] = self.task
        if self.given("exporter"):
            raw["model"]["exporter"] = self.exporter


class ReportFlags(FlagGroup):
    """How the result is shown: progress and tables, JSON, and the files a CI job reads."""

    quiet = Flag(bool, typer.Option("--quiet", "-q", help="No progress bars or tables."), False)
    as_json = Flag(bool, typer.Option("--json", help="Print the summary as JSON on stdout."), False)
    summary_file = Flag(
        Path | None,
        typer.Option(
            "--summary-file",
            envvar="MODELFORGE_SUMMARY_FILE",
            help="Append a Markdown summary to this file (e.g. $GITHUB_STEP_SUMMARY).",
        ),
        None,
    )
    junit = Flag(
        Path | None, typer.Option("--junit", help="Write the gates as JUnit XML here (for CI test-result views)."), None
    )
