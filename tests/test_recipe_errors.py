"""A bad recipe fails with exit 2 and one line naming the YAML path of the problem, never a traceback."""

from __future__ import annotations

import pytest
from conftest import DIGITS_CALIBRATION, DIGITS_MODEL, digits_recipe, one_error_line, run_cli, write_recipe

from modelforge.errors import InputError
from modelforge.recipe.load import load_recipe, recipe_from_dict


def _bad(tmp_path, **overrides):
    recipe = digits_recipe(tmp_path / "out", **overrides)
    return write_recipe(tmp_path / "bad.yaml", recipe)


CASES = {
    "unknown gate key": (
        {"gates": {"max_acuracy_drop": 1.0}},
        ["gates.max_acuracy_drop", "unknown key"],
    ),
    "unknown top-level key": (
        {"pases": []},
        ["pases", "unknown key"],
    ),
    "wrong type": (
        {"evaluate": {"latency": {"min_runs": "many"}}},
        ["evaluate.latency.min_runs", "integer", "'many'"],
    ),
    "out of range": (
        {"gates": {"min_agreement": 1.5}},
        ["gates.min_agreement", "1.5"],
    ),
    "bad literal in a pass config": (
        {"passes": [{"name": "quantize", "config": {"method": "kl"}}]},
        ["passes[0].config.method: expected one of 'minmax', 'entropy' or 'percentile'", "'kl'"],
    ),
    "unknown key in a pass config": (
        {"passes": [{"name": "quantize", "config": {"per_chanel": False}}]},
        ["passes[0].config.per_chanel", "unknown key"],
    ),
    "wrong type in a later pass config": (
        {"passes": ["quantize", {"name": "quantize", "config": {"calibration_samples": "all"}}]},
        ["passes[1].config.calibration_samples"],
    ),
    "unknown pass": (
        {"passes": [{"name": "quantise"}]},
        ["passes[0].name", "unknown pass 'quantise'", "quantize"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_recipe_error_names_yaml_path(tmp_path, case):
    overrides, expected = CASES[case]
    recipe_file = _bad(tmp_path, **overrides)
    result = run_cli("run", recipe_file)
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    assert str(recipe_file) in line
    for fragment in expected:
        assert fragment in line, (fragment, line)
    assert not (tmp_path / "out").exists()


def test_method_error_says_expected(tmp_path):
    recipe_file = _bad(tmp_path, passes=[{"name": "quantize", "config": {"method": "kl"}}])
    with pytest.raises(InputError) as caught:
        load_recipe(recipe_file)
    message = caught.value.one_line()
    assert "passes[0].config.method" in message
    assert "expected" in message


def test_invalid_yaml_names_line(tmp_path):
    recipe_file = tmp_path / "broken.yaml"
    recipe_file.write_text(f"model: {DIGITS_MODEL}\npasses: [quantize\ngates:\n  min_cosine: 0.9\n")
    result = run_cli("run", recipe_file)
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    assert str(recipe_file) in line
    assert "YAML" in line
    assert "line" in line


def test_top_level_must_be_a_mapping(tmp_path):
    recipe_file = tmp_path / "list.yaml"
    recipe_file.write_text("- quantize\n")
    result = run_cli("run", recipe_file)
    assert result.returncode == 2, result.explain()
    assert "mapping" in one_error_line(result)


def test_missing_recipe_file(tmp_path):
    result = run_cli("run", tmp_path / "nope.yaml")
    assert result.returncode == 2, result.explain()
    assert "nope.yaml" in one_error_line(result)


def test_flags_go_through_the_same_validation(tmp_path):
    """A shortcut command is a one-pass recipe: a bad flag value is reported like a recipe field."""
    result = run_cli("quantize", DIGITS_MODEL, "-c", DIGITS_CALIBRATION, "--method", "kl", "-o", tmp_path / "o")
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    assert "passes[0].config.method" in line and "expected" in line
    assert not (tmp_path / "o").exists()


def test_recipe_from_dict_accepts_short_forms(tmp_path):
    """Strings are accepted for model, data sources, passes and output (the documented short forms)."""
    recipe = recipe_from_dict(
        {
            "model": str(DIGITS_MODEL),
            "data": {"calibration": str(DIGITS_CALIBRATION)},
            "passes": ["quantize"],
            "output": str(tmp_path / "o"),
        }
    )
    assert recipe.passes[0].name == "quantize"
    assert recipe.passes[0].config["method"] == "minmax"
    assert recipe.data.calibration.path == DIGITS_CALIBRATION
    assert recipe.output.dir == tmp_path / "o"
