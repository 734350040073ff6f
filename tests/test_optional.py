"""The optional-dependency table and its gate (`require`), kept true to pyproject.toml's extras, and the one-line
`first_line` that every "X failed: why" message uses. A module is made unimportable with `sys.modules[name] = None`
(Python's own way to make an import fail), so this runs whether or not the extras are installed."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from modelforge.errors import MissingExtraError, first_line
from modelforge.optional import OPTIONAL, extras, installed, missing, require

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_every_table_row_names_an_extra_of_pyproject_that_installs_its_package():
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    for module, entry in OPTIONAL.items():
        assert entry.extra in declared, module
        names = {re.split(r"[<>=\[; ]", requirement, maxsplit=1)[0].lower() for requirement in declared[entry.extra]}
        assert entry.package.lower() in names, (module, entry.package, names)
        assert entry.purpose, module


def test_require_a_blocked_module_is_the_one_line_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    with pytest.raises(MissingExtraError) as caught:
        require("tf2onnx", "converting a TensorFlow model to ONNX")
    assert caught.value.one_line() == (
        "converting a TensorFlow model to ONNX needs tf2onnx, which is not installed "
        "(hint: pip install 'modelforge[tf]')"
    )
    assert not installed("tf2onnx")


def test_require_a_dotted_name_is_gated_by_its_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    with pytest.raises(MissingExtraError, match=r"needs ai-edge-litert") as caught:
        require("ai_edge_litert.interpreter", "running a .tflite model")
    assert caught.value.hint == "pip install 'modelforge[tf]'"


def test_a_submodule_with_its_own_row_names_its_own_extra(monkeypatch):
    """optimum.intel is its own distribution (optimum-intel, the llm-openvino extra), not optimum-onnx's."""
    monkeypatch.setitem(sys.modules, "optimum.intel", None)
    with pytest.raises(MissingExtraError, match=r"needs optimum-intel") as caught:
        require("optimum.intel", "--target openvino for a language model")
    assert caught.value.hint == "pip install 'modelforge[llm-openvino]'"
    assert missing("optimum.exporters", "x").hint == "pip install 'modelforge[hf]'"


def test_h5py_missing_names_the_tensorflow_that_brings_it():
    error = missing("h5py", "loading the Keras model m.h5")
    assert error.message == "loading the Keras model m.h5 needs tensorflow, which is not installed"


def test_require_returns_the_module():
    pytest.importorskip("safetensors", reason="the [torch] extra is not installed")
    assert installed("safetensors")
    assert require("safetensors", "reading weights") is sys.modules["safetensors"]
    with pytest.raises(KeyError):  # a module missing from the table is a programming error, not a user's
        require("numpy", "anything")


def test_extras_group_packages_once_in_table_order():
    grouped = extras()
    assert list(grouped)[:2] == ["torch", "tf"]
    assert grouped["tf"].count("tensorflow") == 1  # h5py's row names tensorflow too
    assert grouped["openvino"] == ["openvino", "nncf"]


def test_first_line():
    assert first_line(ValueError("bad shape\nmore detail")) == "bad shape"
    assert first_line(RuntimeError("  \n")) == "RuntimeError"
    assert first_line(RuntimeError("Traceback (most recent call last):\n  File 'x.py'\nKeyError: 'a'")) == (
        "KeyError: 'a'"
    )
    assert first_line(RuntimeError("x" * 500), 300) == "x" * 300
