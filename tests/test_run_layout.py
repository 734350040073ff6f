"""The run/ layer's own promises: gates are defined once (one table every user reads), and a run opens and
hashes each data file once."""

from __future__ import annotations

import json
from collections import Counter

from conftest import DIGITS_CALIBRATION, DIGITS_EVAL, digits_recipe, sha256

from modelforge.recipe.schema import GATE_METRICS, GatesConfig


def test_the_gate_table_is_the_gates_config():
    """Every GatesConfig threshold has a row (in field order: the order report.json lists gates) and back."""
    fields = [name for name in GatesConfig.model_fields if name != "default_gates"]
    assert [m.name for m in GATE_METRICS] == fields


def test_the_fallback_budget_and_the_verdict_read_the_same_gates():
    from modelforge.quantization.fallback import Budget
    from modelforge.run.gates import evaluate_gates

    gates = GatesConfig(max_accuracy_drop=1.0, min_speedup=1.5, min_agreement=0.98, min_cosine=0.97)
    assert Budget.from_gates(gates) == Budget(max_accuracy_drop=1.0, min_cosine=0.97, min_agreement=0.98)
    summary = {"accuracy_drop_pp": 1.0, "speedup": 1.4, "top1_agreement": 0.99, "output_cosine": None}
    verdicts = {g["name"]: (g["metric"], g["passed"]) for g in evaluate_gates(gates, summary)}
    assert verdicts == {
        "max_accuracy_drop": ("accuracy_drop_pp", True),  # at the threshold passes
        "min_speedup": ("speedup", False),
        "min_agreement": ("top1_agreement", True),
        "min_cosine": ("output_cosine", False),  # unmeasured fails
    }
    # What the budget misses is what the verdict fails (the speed gate is never part of the budget).
    misses = Budget.from_gates(gates).misses(summary)
    assert len(misses) == 1 and misses[0].startswith("output cosine"), misses


def test_a_run_opens_and_hashes_each_data_file_once(tmp_path, monkeypatch):
    import modelforge.manifest
    import modelforge.run.inputs
    from modelforge.recipe.load import recipe_from_dict
    from modelforge.run.runner import run_recipe

    opened, hashed = Counter(), Counter()
    open_dataset, data_sha256 = modelforge.run.inputs.open_dataset, modelforge.manifest.data_sha256

    def counting_open(source, *args):
        opened[source.path] += 1
        return open_dataset(source, *args)

    def counting_sha256(path):
        hashed[path] += 1
        return data_sha256(path)

    monkeypatch.setattr(modelforge.run.inputs, "open_dataset", counting_open)
    monkeypatch.setattr(modelforge.manifest, "data_sha256", counting_sha256)
    out = tmp_path / "out"
    result = run_recipe(recipe_from_dict(digits_recipe(out)))

    assert result.exit_code == 0, result.report["gates"]
    assert opened == Counter({DIGITS_CALIBRATION: 1, DIGITS_EVAL: 1})
    # The stage's cache key and the manifest both need the hashes: each file is read for them once.
    assert hashed == Counter({DIGITS_CALIBRATION: 1, DIGITS_EVAL: 1})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data_sha256"] == {"calibration": sha256(DIGITS_CALIBRATION), "eval_data": sha256(DIGITS_EVAL)}
    assert result.report["stages"][0]["metrics"]["cache"] == "miss"
