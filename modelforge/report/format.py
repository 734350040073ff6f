"""Shared formatting of summary values for the Markdown and terminal renderings."""

from __future__ import annotations

from typing import Any


def fmt_percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}%"


def fmt_bytes(value: int | None) -> str:
    if value is None:
        return "n/a"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    return str(value)


def fmt_float(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{suffix}"


def fmt_size_ratio(value: float | None) -> str:
    """baseline size / result size, said the way it goes ("0.99x smaller" would claim the opposite)."""
    if value is None:
        return "n/a"
    return f"{value:.2f}x smaller" if value >= 1 else f"{1 / value:.2f}x larger"


def fmt_pp_change(drop_pp: float | None) -> str:
    """The accuracy change in pp from a drop (no "-0.00 pp" for no change)."""
    return "n/a" if drop_pp is None else f"{0.0 - drop_pp:+.2f} pp"


def fmt_speedup(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}x faster" if value >= 1 else f"{1 / value:.2f}x slower"


def fmt_change(baseline: float | None, result: float | None, digits: int = 4) -> str:
    """result - baseline, signed (no "-0.0000" for no change)."""
    if baseline is None or result is None:
        return "n/a"
    return f"{result - baseline + 0.0:+.{digits}f}"


# Task metric rows (summary keys of report.build.TASK_SUMMARY_KEYS): label -> (baseline key, result key).
TASK_ROWS = {
    "Macro F1": ("macro_f1_baseline", "macro_f1_result"),
    "Token F1 (macro)": ("token_f1_baseline", "token_f1_result"),
    "Pair Spearman vs gold": ("pair_spearman_baseline", "pair_spearman_result"),
    "Pair Spearman vs original": (None, "pair_spearman_vs_original"),
}


def accuracy_label(summary: dict[str, Any]) -> str:
    """A token classifier's accuracy is over tagged tokens, not top-1 over samples: say which."""
    tokens = summary.get("token_f1_result") is not None or summary.get("token_f1_baseline") is not None
    return "Token accuracy" if tokens else "Top-1 accuracy"


def task_rows(summary: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Rows of the task metrics the run measured (none of them for a run without labels or pairs)."""
    rows = []
    for label, (key_a, key_b) in TASK_ROWS.items():
        a, b = summary.get(key_a) if key_a else None, summary.get(key_b)
        if b is None and a is None:
            continue
        rows.append((label, fmt_float(a, 4) if key_a else "", fmt_float(b, 4), fmt_change(a, b) if key_a else ""))
    return rows


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(metric, baseline, result, change) rows for people."""
    s = summary
    if "perplexity_baseline" in s:
        return language_model_rows(s)
    # The same file measured twice has no speed-up or size ratio: say what shipped instead of a figure.
    same = "original shipped" if s.get("original_shipped") else None
    return [
        (
            accuracy_label(s),
            fmt_percent(s["accuracy_baseline"]),
            fmt_percent(s["accuracy_result"]),
            fmt_pp_change(s["accuracy_drop_pp"]),
        ),
        *task_rows(s),
        ("Top-1 agreement", "", fmt_percent(s["top1_agreement"]), ""),
        ("Output cosine", "", fmt_float(s["output_cosine"], 5), ""),
        (
            "Latency p50",
            fmt_float(s["latency_p50_ms_baseline"], 3, " ms"),
            fmt_float(s["latency_p50_ms_result"], 3, " ms"),
            same or fmt_speedup(s["speedup"]),
        ),
        (
            "Size",
            fmt_bytes(s["size_bytes_baseline"]),
            fmt_bytes(s["size_bytes_result"]),
            same or fmt_size_ratio(s["size_ratio"]),
        ),
    ]


def language_model_rows(s: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """A language model's rows: held-out perplexity, next-token KL and agreement, generation speed, size."""

    def ratio(a: float | None, b: float | None) -> str:
        return f"{b / a:.2f}x" if a and b else "n/a"

    def faster(a: float | None, b: float | None) -> str:
        return fmt_speedup(b / a) if a and b else "n/a"

    return [
        (
            "Perplexity (held-out)",
            fmt_float(s["perplexity_baseline"], 3),
            fmt_float(s["perplexity_result"], 3),
            ratio(s["perplexity_baseline"], s["perplexity_result"]),
        ),
        ("Next-token KL (nats)", "", fmt_float(s["token_kl"], 5), ""),
        ("Top-1 token agreement", "", fmt_percent(s["top1_agreement"]), ""),
        (
            "Prefill tokens/s",
            fmt_float(s.get("prefill_tokens_per_s_baseline"), 1),
            fmt_float(s.get("prefill_tokens_per_s_result"), 1),
            faster(s.get("prefill_tokens_per_s_baseline"), s.get("prefill_tokens_per_s_result")),
        ),
        (
            "Decode tokens/s",
            fmt_float(s.get("decode_tokens_per_s_baseline"), 1),
            fmt_float(s.get("decode_tokens_per_s_result"), 1),
            faster(s.get("decode_tokens_per_s_baseline"), s.get("decode_tokens_per_s_result")),
        ),
        (
            "Size",
            fmt_bytes(s["size_bytes_baseline"]),
            fmt_bytes(s["size_bytes_result"]),
            fmt_size_ratio(s["size_ratio"]),
        ),
        ("Weights", "float32", str(s.get("weights") or "n/a"), ""),
    ]


def verdict_notes(report: dict[str, Any]) -> list[str]:
    """Lines every rendering shows beside the gates: the original shipped unchanged (and why), and warnings."""
    notes = []
    why = (report.get("summary") or {}).get("original_shipped")
    if why:
        notes.append(f"The original model shipped unchanged: {why}. No speed-up or size figure (same file).")
    notes += [f"WARNING: {w}" for w in report.get("warnings") or []]
    return notes


def gate_rows(gates: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(name, threshold, value, verdict); a default gate's name says so."""
    rows = []
    for g in gates:
        value = "n/a" if g["value"] is None else f"{g['value']:.4g}"
        name = g["name"] + (" (default)" if g.get("default") else "")
        rows.append((name, f"{g['threshold']:g}", value, "PASSED" if g["passed"] else "FAILED"))
    return rows


def fmt_value(value: Any) -> str:
    """A stage detail for people: floats to 4 significant digits (report.json keeps them whole), the rest as is."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# What breaks a Markdown table cell: the column separator, a line break, and an unbalanced code span.
_MD_CELL_ESCAPES = str.maketrans({"|": "\\|", "`": "\\`", "\r": " ", "\n": " "})


def md_cell(value: Any) -> str:
    """One Markdown table cell: rounded (fmt_value), with `|`, backticks and newlines made harmless."""
    return fmt_value(value).translate(_MD_CELL_ESCAPES)


def md_table(header: tuple[str, ...] | list[str], rows: list[tuple[Any, ...]] | list[list[Any]]) -> list[str]:
    """Every Markdown table of every report goes through here: each cell escaped once (md_cell), so no value (a
    pass's `importance=magnitude (|w|)`, a node name with a backtick) can break a row."""
    lines = ["| " + " | ".join(map(md_cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(md_cell, row)) + " |" for row in rows]
    return lines


# How each source format is named for people (report.json keeps the format keys).
FORMAT_NAMES = {
    "onnx": "ONNX",
    "torch-export": "torch.export",
    "torchscript": "TorchScript",
    "torch-module": "PyTorch module",
    "keras": "Keras",
    "savedmodel": "SavedModel",
    "tflite": "TFLite",
    "openvino": "OpenVINO IR",
}


def model_label(record: dict[str, Any]) -> str:
    """A model's format for a report line: the format it was handed over in, and what it ran as when converted
    ("torch.export, run as ONNX"), so a .pt2 baseline is never called an ONNX model."""
    fmt = str(record.get("format", ""))
    source = record.get("source_format")
    if source and source != fmt:
        return f"{FORMAT_NAMES.get(source, source)}, run as {FORMAT_NAMES.get(fmt, fmt)}"
    return FORMAT_NAMES.get(fmt, fmt)
