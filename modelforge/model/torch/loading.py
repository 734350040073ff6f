"""Where PyTorch models come from: a `torch.export` program (.pt2, rebuilt into real nn layers) or user code
(`module:function` plus weights as safetensors or a state dict read weights-only). A module is never unpickled.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from modelforge.errors import InputError, first_line
from modelforge.model.artifact import ModelArtifact
from modelforge.model.torch.safe_load import import_torch
from modelforge.optional import require


def call_factory(spec: str) -> Any:
    """Import `module:function` and call it. Only from the Python path and the folders named with --code-path:
    never implicitly from the current folder, where a checked-out pull request could plant a module."""
    torch = import_torch()
    module_name, _, function_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise InputError(
            f"model factory {spec}: cannot import {module_name} ({type(exc).__name__}: {exc})",
            hint="name the folder that holds it with --code-path DIR",
        ) from None
    factory = getattr(module, function_name, None)
    if not callable(factory):
        raise InputError(f"model factory {spec}: {module_name} has no function {function_name}")
    try:
        model = factory()
    except Exception as exc:
        raise InputError(f"model factory {spec} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"model factory {spec} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def read_state_dict(path: Path) -> dict[str, Any]:
    """Weights from .safetensors, or a state dict read with torch.load(weights_only=True)."""
    torch = import_torch()
    if not path.is_file():
        raise InputError(f"weights {path} not found")
    if path.suffix.lower() == ".safetensors":
        safetensors_torch = require("safetensors.torch", "reading .safetensors weights")
        try:
            return safetensors_torch.load_file(str(path))
        except Exception as exc:
            raise InputError(f"weights {path}: not a readable safetensors file ({exc})") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(
            f"weights {path}: not a state dict that loads weights-only ({first_line(exc)})",
            hint="save model.state_dict() with torch.save or safetensors; whole pickled modules are refused",
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"weights {path}: expected a mapping of parameter names to tensors")
    return state


def build_from_factory(spec: str, weights: Path) -> Any:
    model = call_factory(spec)
    state = read_state_dict(weights)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).split("\n\t")[0:2]
        raise InputError(f"weights {weights} do not fit {spec}: {' '.join(s.strip() for s in first)}") from None
    return model


def load_program(path: Path):
    """A .pt2 loaded with every unpickling weights-only (see modelforge.model.torch.safe_load)."""
    from modelforge.model.torch.safe_load import load_exported_program

    return load_exported_program(import_torch(), path)


def load_module(artifact: ModelArtifact):
    """A trainable nn.Module for a PyTorch-form artifact."""
    if artifact.format == "torch-module":
        return build_from_factory(artifact.factory, artifact.path)
    if artifact.format == "torch-export":
        from modelforge.model.torch.rebuild import rebuild_modules

        program = load_program(artifact.path)
        try:
            return rebuild_modules(program)
        except (ValueError, AttributeError, RuntimeError) as exc:
            raise InputError(f"model {artifact.path}: its layers cannot be rebuilt as nn modules ({exc})") from None
    raise InputError(f"model {artifact.path}: {artifact.format} models cannot be trained here", hint="use a .pt2")
