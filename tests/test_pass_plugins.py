"""The pass registry: built-in passes, and third-party passes found through the `modelforge.passes` entry points."""

from __future__ import annotations

import sys
import textwrap

import pytest
from conftest import DIGITS_EVAL, DIGITS_MODEL, FAST_LATENCY, cli_env, load_report, run_cli

import modelforge.passes as passes_module
from modelforge.errors import InputError
from modelforge.passes import Pass, available_passes, get_pass
from modelforge.recipe.load import recipe_from_dict
from modelforge.run.runner import run_recipe

PLUGIN_SOURCE = '''
"""A third-party pass: returns the model unchanged and records the note it was configured with."""

from modelforge.passes import Pass
from modelforge.passes.base import PassConfig


class IdentityConfig(PassConfig):
    note: str = "unchanged"


class IdentityPass(Pass):
    name = "identity"
    description = "returns the model unchanged"
    accepts = ("onnx",)
    produces = "onnx"
    Config = IdentityConfig

    def run(self, artifact, ctx):
        ctx.record("note", self.config.note)
        return artifact
'''


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """An installed-looking distribution `myplugin` that registers `identity` through its entry points."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "myplugin.py").write_text(textwrap.dedent(PLUGIN_SOURCE))
    dist_info = site / "myplugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[modelforge.passes]\nidentity = myplugin:IdentityPass\n")
    # The registry is module state: give this test its own copy so the plugin does not leak into others.
    monkeypatch.setattr(passes_module, "_registry", dict(passes_module._registry))
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("myplugin", None)


def test_builtin_quantize_is_registered():
    registered = available_passes()
    assert "quantize" in registered
    quantize = get_pass("quantize")
    assert issubclass(quantize, Pass)
    assert quantize.name == "quantize"
    assert "onnx" in quantize.accepts and quantize.needs_calibration
    with pytest.raises(KeyError, match="quantize"):
        get_pass("no-such-pass")


def test_entry_point_pass_is_discovered_and_runs(plugin_dir, tmp_path):
    passes_module.reload_entry_points()
    identity = get_pass("identity")
    assert identity.__module__ == "myplugin"
    assert "identity" in passes_module.pass_names()

    out = tmp_path / "out"
    recipe = recipe_from_dict(
        {
            "model": str(DIGITS_MODEL),
            "data": {"eval_data": str(DIGITS_EVAL)},
            "passes": [{"name": "identity", "config": {"note": "hello"}}],
            "evaluate": {"latency": dict(FAST_LATENCY)},
            "gates": {"max_accuracy_drop": 0.0, "min_cosine": 0.999999},
            "output": {"dir": str(out)},
        }
    )
    result = run_recipe(recipe)
    assert result.exit_code == 0
    report = load_report(out)
    assert report["passed"] is True and result.report["passed"] is True
    [stage] = report["stages"]
    assert stage["name"] == "identity"
    assert stage["metrics"]["note"] == "hello"
    assert report["summary"]["top1_agreement"] == 1.0
    assert report["summary"]["accuracy_drop_pp"] == 0.0
    assert (out / "model.onnx").read_bytes() == DIGITS_MODEL.read_bytes()


def test_entry_point_pass_config_is_validated(plugin_dir, tmp_path):
    passes_module.reload_entry_points()
    with pytest.raises(InputError, match=r"passes\[0\]\.config\.note"):
        recipe_from_dict(
            {
                "model": str(DIGITS_MODEL),
                "passes": [{"name": "identity", "config": {"note": ["not", "a", "string"]}}],
                "output": str(tmp_path / "out"),
            }
        )


def test_cli_lists_entry_point_passes(plugin_dir):
    result = run_cli("passes", env=cli_env(PYTHONPATH=str(plugin_dir)))
    assert result.returncode == 0, result.explain()
    rows = result.stdout.splitlines()
    assert any("identity" in row and "returns the model unchanged" in row for row in rows), result.stdout
    assert any("quantize" in row for row in rows)


def test_broken_entry_point_is_reported(tmp_path, monkeypatch):
    """A plugin naming something that is not a Pass is reported by name; the other passes keep working."""
    site = tmp_path / "site"
    (site / "badplugin-0.1.dist-info").mkdir(parents=True)
    (site / "badplugin.py").write_text("NotAPass = object\n")
    (site / "badplugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: badplugin\nVersion: 0.1\n")
    (site / "badplugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[modelforge.passes]\nbroken = badplugin:NotAPass\n"
    )
    monkeypatch.setattr(passes_module, "_registry", dict(passes_module._registry))
    monkeypatch.syspath_prepend(str(site))
    try:
        passes_module.reload_entry_points()
        assert "broken" not in available_passes()
        assert "quantize" in available_passes()
        assert "not a modelforge Pass subclass" in passes_module.broken_plugins()["broken"]
        with pytest.raises(KeyError, match="broken"):
            passes_module.get_pass("broken")
    finally:
        monkeypatch.undo()
        passes_module.reload_entry_points()
    assert "broken" not in passes_module.broken_plugins()
