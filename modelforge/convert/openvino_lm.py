"""A decoder language model folder to a stateful OpenVINO IR with a KV cache, by optimum-intel's exporter.

The export runs in a child process (`python -m modelforge.convert.openvino_lm FOLDER OUT`): optimum-intel imports
torch, transformers and patches them while tracing, and the parent should not keep that memory or those patches.
It runs offline (local files only, no remote code) in float32, with optimum-intel's size-based INT8 compression off:
modelforge compresses the weights itself afterwards (quantization.ov_weight_only), so its settings and gates apply.
The result is a folder OVModelForCausalLM and openvino_genai.LLMPipeline run as they are: openvino_model.xml/.bin,
openvino_tokenizer/detokenizer.xml (openvino_tokenizers), config.json, generation_config.json and the tokenizer.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from modelforge.errors import PassError

EXPORT_TIMEOUT_S = 3600
IR = "openvino_model.xml"
# The child's own one-line failure, told apart from the warnings tracing prints on stderr.
MARK = "modelforge-export-error: "


def export_openvino_lm(folder: Path, out: Path) -> Path:
    """Export `folder` to `out`; returns out/openvino_model.xml. An exporter failure is a pass failure (exit 3)."""
    from modelforge.model.huggingface.offline import HF_ENVIRONMENT
    from modelforge.optional import require

    for module in ("openvino", "optimum.intel", "openvino_tokenizers"):
        require(module, "exporting language models to OpenVINO (--target openvino)")
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "modelforge.convert.openvino_lm", str(folder), str(out)]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env={**os.environ, **HF_ENVIRONMENT},
            timeout=EXPORT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PassError("export", f"optimum-intel's OpenVINO export took over {EXPORT_TIMEOUT_S} s") from None
    model = out / IR
    if done.returncode != 0 or not model.is_file() or not (out / "openvino_tokenizer.xml").is_file():
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        marked = [line.removeprefix(MARK) for line in lines if line.startswith(MARK)]
        said = marked[-1] if marked else lines[-1] if lines else done.returncode
        raise PassError("export", f"optimum-intel's OpenVINO export failed: {said}")
    return model


def main(folder: str, out: str) -> None:
    """The child: optimum-intel's main_export, offline, float32, stateful, with the tokenizer converted."""
    from modelforge.model.huggingface.offline import import_transformers

    import_transformers()  # the offline environment, before optimum imports transformers
    from optimum.exporters.openvino import main_export
    from optimum.intel import OVConfig

    main_export(
        folder,
        out,
        task="text-generation-with-past",
        trust_remote_code=False,
        local_files_only=True,
        ov_config=OVConfig(dtype="fp32"),  # a config turns off the INT8 compression of models over 1B parameters
        stateful=True,
        convert_tokenizer=True,
    )
    if not (Path(out) / "openvino_tokenizer.xml").is_file():
        _convert_tokenizer(folder, Path(out))


def _convert_tokenizer(folder: str, out: Path) -> None:
    """optimum-intel only logs a tokenizer it could not convert; converting again here surfaces why."""
    from openvino import save_model
    from openvino_tokenizers import convert_tokenizer
    from transformers import AutoTokenizer

    from modelforge.errors import first_line

    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False, local_files_only=True)
    tokenizer.padding_side = tokenizer.truncation_side = "left"  # as optimum-intel sets it for text generation
    try:
        encoder, decoder = convert_tokenizer(tokenizer, with_detokenizer=True)
    except Exception as exc:  # noqa: BLE001 (any converter failure is reported as one line)
        print(f"{MARK}openvino_tokenizers could not convert the tokenizer: {first_line(exc)}", file=sys.stderr)
        sys.exit(1)
    save_model(encoder, str(out / "openvino_tokenizer.xml"))
    save_model(decoder, str(out / "openvino_detokenizer.xml"))


if __name__ == "__main__":
    main(*sys.argv[1:3])
