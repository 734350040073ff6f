"""Language models: `modelforge quantize` on a decoder LM folder (weight-only INT4 with perplexity/KL gates).

The model is a Llama of ~0.3M parameters built from a LlamaConfig, with a byte-level BPE tokenizer trained here on
Python standard-library docstrings (the same text on every machine with this Python), trained for a few seconds
so its perplexity means something. It tests the plumbing (export with a KV cache, quantization, gates, the
genai folder), not INT4 quality: the benchmark (benchmarks/bench_llm.py) does that on SmolLM2-135M.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest

from modelforge.optional import installed
from tests.conftest import cli_env, run_cli, write_recipe

# Not imported here: transformers is imported offline and without TensorFlow (model.huggingface.offline) only.
pytestmark = pytest.mark.skipif(
    not all(installed(m) for m in ("transformers", "onnxruntime_genai", "tokenizers")),
    reason="needs the llm extra (transformers, onnxruntime-genai)",
)

MODULES = ("json", "pathlib", "collections", "functools", "textwrap", "string", "argparse", "random", "fractions")


def _docstrings() -> list[str]:
    import importlib

    texts = []
    for name in MODULES:
        module = importlib.import_module(name)
        for _, obj in sorted(inspect.getmembers(module), key=lambda item: item[0]):
            if inspect.isfunction(obj) or inspect.isclass(obj):
                doc = inspect.getdoc(obj)
                if doc:
                    texts.append(doc)
    return texts


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory) -> Path:
    """A small Llama (hidden 64, 2 layers, vocab 384) trained for a few seconds on docstrings, as a HF folder,
    with held-out text (the last tenth of the corpus) beside it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from modelforge.model.huggingface.offline import import_transformers

    transformers = import_transformers()
    texts = _docstrings()
    split = len(texts) * 9 // 10
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(texts[:split], trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>"
    )
    config = transformers.LlamaConfig(
        vocab_size=384,
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    ids = torch.tensor(tokenizer.encode("\n\n".join(texts[:split])).ids)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(25):
        starts = torch.randint(0, len(ids) - 65, (8,), generator=generator)
        batch = torch.stack([ids[s : s + 64] for s in starts])
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    folder = tmp_path_factory.mktemp("lm") / "tiny-llama"
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    (folder.parent / "heldout.txt").write_text("\n\n".join(texts[split:])[:6000], encoding="utf-8")
    (folder.parent / "calibration.txt").write_text("\n\n".join(texts[:split])[:3000], encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def quantized(lm_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("lm-out") / "int4"
    result = run_cli(
        "quantize", lm_folder, "--weights", "int4", "--eval-data", lm_folder.parent / "heldout.txt", "-o", out, "--json"
    )
    return result, out


def test_int4_end_to_end_passes_the_gates(quantized):
    result, out = quantized
    assert result.returncode == 0, result.explain()[-3000:]
    report = json.loads((out / "report.json").read_text())
    summary = report["summary"]
    assert 0.9 < summary["perplexity_ratio"] <= 1.25
    assert summary["perplexity_baseline"] > 1 and summary["perplexity_result"] > 1
    assert 0 <= summary["token_kl"] <= 0.1 and summary["top1_agreement"] > 0.8
    assert summary["decode_tokens_per_s_baseline"] > 0 and summary["decode_tokens_per_s_result"] > 0
    assert summary["prefill_tokens_per_s_result"] > 0
    assert summary["size_ratio"] > 1.5  # 4-bit weights (the embedding and the float lm_head stay fp32)
    gates = {g["name"]: g for g in report["gates"]}
    assert gates["max_perplexity_ratio"]["default"] and gates["max_perplexity_ratio"]["threshold"] == 1.25
    assert gates["max_token_kl"]["passed"]
    quant = report["stages"][-1]["metrics"]
    assert quant["weights"] == "int4" and quant["float_layers"] == ["/lm_head/MatMul"]
    import onnx

    ops = [n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node]
    assert ops.count("MatMulNBits") == 10 and ops.count("MatMul") == 1  # 2 layers x 5 MatMuls; lm_head float
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {f["path"] for f in manifest["files"]}
    assert {"model.onnx", "genai_config.json", "config.json", "tokenizer.json", "generation_config.json"} <= listed
    assert "perplexity" in (out / "report.md").read_text().lower()


def test_the_output_folder_runs_in_onnxruntime_genai(quantized):
    import onnxruntime_genai as og

    _, out = quantized
    model = og.Model(str(out))
    tokenizer = og.Tokenizer(model)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=24, do_sample=False)
    generator = og.Generator(model, params)
    prompt = tokenizer.encode("Return the")
    generator.append_tokens(prompt)
    while not generator.is_done():
        generator.generate_next_token()
    tokens = np.asarray(generator.get_sequence(0))
    assert len(tokens) == 24 and list(tokens[: len(prompt)]) == list(prompt)
    assert isinstance(tokenizer.decode(tokens), str)


def test_a_broken_quantizer_fails_the_gates(lm_folder, tmp_path):
    """Negative control: the quantizer's scales shuffled (a test seam) must fail the perplexity and KL gates.
    Run from a recipe (the same fields as the flags: GPTQ on the calibration text, asymmetric), the fallback off
    and latency skipped (quality only)."""
    out = tmp_path / "broken"
    recipe = {
        "version": 1,
        "model": str(lm_folder),
        "data": {
            "eval_data": str(lm_folder.parent / "heldout.txt"),
            "calibration": str(lm_folder.parent / "calibration.txt"),
        },
        "passes": [
            {
                "name": "quantize",
                "config": {"weights": "int4", "group_size": 32, "symmetric": False, "algo": "gptq", "fallback": False},
            }
        ],
        "evaluate": {"skip_latency": True},
        "output": str(out),
    }
    env = {**cli_env(), "MODELFORGE_TEST_CORRUPT_WEIGHT_SCALES": "1"}
    recipe_file = write_recipe(tmp_path / "recipe.yaml", recipe)
    result = run_cli("run", recipe_file, "--json", "--allow-paths", lm_folder.parent, env=env)
    assert result.returncode == 1, result.explain()[-3000:]
    report = json.loads((out / "report.json").read_text())
    failed = {g["name"] for g in report["gates"] if not g["passed"]}
    assert {"max_perplexity_ratio", "max_token_kl"} <= failed, [(g["name"], g["value"]) for g in report["gates"]]
    quant = report["stages"][-1]["metrics"]
    assert quant["algo"] == "gptq" and quant["symmetric"] is False
    assert set(json.loads((out / "manifest.json").read_text())["data_sha256"]) == {"eval_data", "calibration"}


def test_a_folder_without_weights_is_refused(lm_folder, tmp_path):
    folder = tmp_path / "no-weights"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((lm_folder / name).read_bytes())
    result = run_cli("quantize", folder, "--eval-data", lm_folder.parent / "heldout.txt", "-o", tmp_path / "o")
    assert result.returncode == 2 and "no model.safetensors" in result.stderr
    assert not (tmp_path / "o").exists()


def invoke(*args) -> tuple[int, str]:
    """The command in this process (transformers is already imported by the fixture: seconds saved per case);
    the error the entry point (modelforge.cli.app.main) would print, with its exit code."""
    from typer.testing import CliRunner

    from modelforge.cli.app import app
    from modelforge.errors import ModelforgeError

    result = CliRunner().invoke(app, [str(a) for a in args])
    if isinstance(result.exception, ModelforgeError):
        return result.exception.exit_code, str(result.exception)
    return result.exit_code, result.output


def test_an_unsupported_architecture_names_the_supported_ones(lm_folder, tmp_path):
    folder = tmp_path / "gpt2-like"
    folder.mkdir()
    for item in lm_folder.iterdir():
        (folder / item.name).write_bytes(item.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["GPT2LMHeadForCausalLM"]
    (folder / "config.json").write_text(json.dumps(config))
    code, said = invoke("quantize", folder, "--eval-data", lm_folder.parent / "heldout.txt", "-o", tmp_path / "o")
    assert code == 2, said
    assert "GPT2LMHeadForCausalLM" in said and "LlamaForCausalLM" in said


@pytest.mark.parametrize(
    ("group", "said"),
    [(128, "does not divide the input width 192"), (512, "no MatMul weight is large enough")],
)
def test_bad_group_sizes_are_refused_before_the_export(lm_folder, tmp_path, group, said):
    args = ("--group-size", group, "--eval-data", lm_folder.parent / "heldout.txt", "-o", tmp_path / "o")
    code, output = invoke("quantize", lm_folder, *args)
    assert code == 2 and said in output, output
    assert len([line for line in output.splitlines() if line.strip()]) <= 2  # one line (+ a hint)
    assert not (tmp_path / "o").exists()


def test_a_failed_gate_keeps_the_most_sensitive_layers_at_int8(lm_folder, quantized, tmp_path):
    """The fallback: a KL gate at half what plain INT4 gives is met by moving the layers that the sensitivity
    ranking puts first to INT8 (the threshold is relative to this machine's own INT4 figure)."""
    plain = json.loads((quantized[1] / "report.json").read_text())["summary"]["token_kl"]
    out = tmp_path / "fallback"
    recipe = {
        "version": 1,
        "model": str(lm_folder),
        "data": {"eval_data": str(lm_folder.parent / "heldout.txt")},
        "passes": [{"name": "quantize", "config": {"weights": "int4"}}],
        "evaluate": {"skip_latency": True},
        "gates": {"max_token_kl": plain / 2},
        "output": str(out),
    }
    recipe_file = write_recipe(tmp_path / "recipe.yaml", recipe)
    result = run_cli("run", recipe_file, "--json", "--allow-paths", lm_folder.parent)
    assert result.returncode == 0, result.explain()[-3000:]
    report = json.loads((out / "report.json").read_text())
    quant = report["stages"][-1]["metrics"]
    assert quant["int8_layers"] and quant["fallback_steps"]
    assert quant["int8_layers"][0] in quant["sensitivity_kl"]
    ranked = list(quant["sensitivity_kl"])
    assert set(quant["fallback_steps"][0]["moved"]) == set(ranked[: len(quant["fallback_steps"][0]["moved"])])
    assert report["summary"]["token_kl"] <= plain / 2 and 0 < quant["low_bit_share"] < 1


def test_dry_run_plans_a_language_model_without_writing(lm_folder, tmp_path):
    out = tmp_path / "planned"
    args = ("--weights", "int8", "--group-size", "64", "--asymmetric", "--algo", "hqq")
    result = run_cli(
        "quantize", lm_folder, *args, "--eval-data", lm_folder.parent / "heldout.txt", "-o", out, "--dry-run"
    )
    assert result.returncode == 0, result.explain()
    assert "LlamaForCausalLM" in result.stderr and "weights int8, hqq, group 64, asymmetric" in result.stderr
    assert "'max_perplexity_ratio (default)': 1.25" in result.stderr
    assert "weights: int8" in result.stdout and not out.exists()


def test_language_model_gates_are_refused_on_other_models(tmp_path):
    from tests.conftest import DIGITS_CALIBRATION, DIGITS_EVAL, DIGITS_MODEL

    result = run_cli(
        "quantize",
        DIGITS_MODEL,
        "-c",
        DIGITS_CALIBRATION,
        "-e",
        DIGITS_EVAL,
        "--max-perplexity-ratio",
        "1.2",
        "-o",
        tmp_path / "o",
    )
    assert result.returncode == 2 and "gate max_perplexity_ratio is for language models" in result.stderr


@pytest.mark.parametrize("target", ["cpu", "openvino"])
def test_weight_only_flags_are_refused_on_other_models(tmp_path, target):
    from tests.conftest import DIGITS_CALIBRATION, DIGITS_EVAL, DIGITS_MODEL

    out = tmp_path / "o"
    args = ("-c", DIGITS_CALIBRATION, "-e", DIGITS_EVAL, "--weights", "int4", "--target", target, "-o", out)
    result = run_cli("quantize", DIGITS_MODEL, *args)
    assert result.returncode == 2, result.explain()
    assert "is weight-only quantization of a language model" in result.stderr and not out.exists()


# OpenVINO (--target openvino / auto): optimum-intel's stateful export and NNCF's compress_weights.
needs_openvino_lm = pytest.mark.skipif(
    not all(installed(m) for m in ("openvino", "nncf", "optimum.intel", "openvino_genai", "openvino_tokenizers")),
    reason="needs the llm-openvino extra (optimum-intel, openvino-genai, openvino-tokenizers)",
)


@pytest.fixture(scope="module")
def ov_awq(lm_folder, tmp_path_factory):
    """INT4 on OpenVINO with AWQ + scale estimation on the calibration text, groups of 64, one thread."""
    out = tmp_path_factory.mktemp("lm-ov") / "int4-awq"
    args = ("--target", "openvino", "--algo", "awq", "--group-size", "64", "--threads", "1")
    texts = ("-c", lm_folder.parent / "calibration.txt", "--eval-data", lm_folder.parent / "heldout.txt")
    return run_cli("quantize", lm_folder, "--weights", "int4", *args, *texts, "-o", out, "--json"), out


@needs_openvino_lm
def test_openvino_int4_awq_end_to_end(ov_awq):
    result, out = ov_awq
    assert result.returncode == 0, result.explain()[-3000:]
    assert json.loads(result.stdout)["summary"]["weights"].startswith("int4")  # NNCF's tables stay off stdout
    report = json.loads((out / "report.json").read_text())
    summary = report["summary"]
    assert 0.9 < summary["perplexity_ratio"] <= 1.25 and 0 <= summary["token_kl"] <= 0.1
    assert summary["top1_agreement"] > 0.8 and summary["size_ratio"] > 1.5
    assert summary["decode_tokens_per_s_result"] > 0 and summary["prefill_tokens_per_s_baseline"] > 0
    assert report["models"]["result"]["format"] == "openvino"
    assert report["evaluation"]["language_model"]["speed_settings"]["threads"] == 1
    assert report["stages"][-1]["metrics"]["inference_precision"] in ("f32", "bf16", "f16")
    nncf = report["stages"][-1]["metrics"]["nncf"]
    assert nncf["nncf_mode"] == "int4_sym" and nncf["group_size"] == 64
    assert nncf["awq"] and nncf["scale_estimation"] and nncf["data_aware"] and nncf["calibration_windows"] > 0
    assert nncf["lm_head_precision"] == "float" and "lm_head" in nncf["lm_head"]
    assert nncf["embedding_precision"] == "int8"  # NNCF's backup precision for the first layer
    listed = {f["path"] for f in json.loads((out / "manifest.json").read_text())["files"]}
    assert {"openvino_model.xml", "openvino_model.bin", "openvino_tokenizer.xml", "openvino_detokenizer.xml"} <= listed
    assert {"config.json", "generation_config.json", "tokenizer.json"} <= listed
    import openvino as ov

    ops = ov.Core().read_model(str(out / "openvino_model.xml")).get_ops()
    assert "ReadValue" in {op.get_type_name() for op in ops}  # stateful: the KV cache is the model's state
    int4 = [op for op in ops if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i4]
    assert len(int4) == 14  # 2 layers x 7 linear layers; the lm_head float, the embedding int8


@needs_openvino_lm
def test_the_openvino_folder_runs_in_genai_and_optimum(ov_awq):
    import openvino_genai

    _, out = ov_awq
    pipeline = openvino_genai.LLMPipeline(str(out), "CPU")
    config = openvino_genai.GenerationConfig()
    config.max_new_tokens = config.min_new_tokens = 4
    config.ignore_eos = True
    assert isinstance(pipeline.generate("Return the", config), str)
    del pipeline
    from modelforge.model.huggingface.offline import import_transformers

    transformers = import_transformers()
    from optimum.intel import OVModelForCausalLM

    model = OVModelForCausalLM.from_pretrained(out, local_files_only=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    prompt = tokenizer("Return the", return_tensors="pt")
    tokens = model.generate(**prompt, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert tokens.shape[1] == prompt["input_ids"].shape[1] + 4


@needs_openvino_lm
@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--target", "openvino", "--algo", "hqq"), "NNCF's compress_weights supports rtn, awq, gptq"),
        (
            ("--algo", "awq", "-c", "{cal}"),
            "onnxruntime has no CPU AWQ; NNCF's AWQ + scale estimation runs with --target openvino",
        ),
        (("--target", "openvino", "--algo", "awq"), "algo awq needs calibration text"),
    ],
)
def test_algorithms_a_runtime_lacks_are_refused(lm_folder, tmp_path, args, said):
    args = tuple(str(a).format(cal=lm_folder.parent / "calibration.txt") for a in args)
    code, output = invoke(
        "quantize", lm_folder, *args, "--eval-data", lm_folder.parent / "heldout.txt", "-o", tmp_path / "o"
    )
    assert code == 2 and said in output, output
    assert not (tmp_path / "o").exists()


@needs_openvino_lm
def test_target_auto_ships_the_faster_candidate_that_meets_the_gates(lm_folder, tmp_path):
    out = tmp_path / "auto"
    texts = ("--eval-data", lm_folder.parent / "heldout.txt", "-o", out, "--json")
    result = run_cli("quantize", lm_folder, "--weights", "int4", "--target", "auto", "--threads", "1", *texts)
    assert result.returncode == 0, result.explain()[-3000:]
    report = json.loads((out / "report.json").read_text())
    auto = report["stages"][-1]["metrics"]["target_auto"]
    rows = {row["runtime"]: row for row in auto["candidates"]}
    assert set(rows) == {"onnxruntime", "openvino"} and all(r["meets_gates"] for r in rows.values())
    winner = auto["chosen"]["runtime"]
    assert rows[winner]["verdict"] == "chosen" and rows[winner]["decode_tokens_per_s"] == max(
        r["decode_tokens_per_s"] for r in rows.values()
    )
    assert report["summary"]["decode_tokens_per_s_result"] == rows[winner]["decode_tokens_per_s"]
    shipped = "openvino_model.xml" if winner == "openvino" else "model.onnx"
    assert (out / shipped).is_file() and report["models"]["result"]["path"].endswith(shipped)
