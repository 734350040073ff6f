"""Loading PyTorch files without running their code: .pt2 programs with every unpickling weights-only, and
TorchScript archives (programs: only with --trust-model-code, checked by the loader before this runs)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from modelforge.errors import InputError, first_line
from modelforge.optional import require
from modelforge.quiet import quiet


def import_torch():
    return require("torch", "loading a PyTorch model")


class UnsafePickleError(Exception):
    """A .pt2 archive asked for a full (code-running) unpickling."""


@contextlib.contextmanager
def _weights_only_unpickling(torch) -> Iterator[None]:
    """torch.export.load falls back to full unpickling (torch's loader with weights-only off, `pickle.loads`)
    for some archive members, e.g. when its sample inputs do not load weights-only: a crafted .pt2 would run
    code. While it loads, every torch.load is weights-only and the archive reader's pickle.loads refuses."""
    import importlib

    real_load = torch.load

    def weights_only_load(*args, **kwargs):
        kwargs["weights_only"] = True
        return real_load(*args, **kwargs)

    class _RefusingPickle:
        def __getattr__(self, name: str):
            raise UnsafePickleError(f"pickle.{name}")

    try:
        package = importlib.import_module("torch.export.pt2_archive._package")
    except ImportError:  # older torch: no such reader
        package = None
    real_pickle = getattr(package, "pickle", None)
    torch.load = weights_only_load
    if real_pickle is not None:
        package.pickle = _RefusingPickle()
    try:
        yield
    finally:
        torch.load = real_load
        if real_pickle is not None:
            package.pickle = real_pickle


def load_exported_program(torch, path: Path):
    import pickle

    from modelforge.model.formats import check_bytes

    check_bytes(path, ".pt2")  # torch logs a long traceback for a file that is no zip archive: refused first
    try:
        with _weights_only_unpickling(torch), quiet():
            return torch.export.load(str(path))
    except (UnsafePickleError, pickle.UnpicklingError):
        raise InputError(
            f"model {path}: the archive holds pickled objects that only a full unpickling could load; "
            "refused, since a pickle can run arbitrary code",
            hint="re-save it with torch.export.save from plain tensors, or export it to ONNX yourself",
        ) from None
    except Exception as exc:  # a corrupt or truncated archive, or one torch cannot read: bad input
        first = first_line(exc)
        raise InputError(f"model {path}: not a readable torch.export archive ({first})") from exc


def load_torchscript(torch, path: Path):
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # a corrupt or truncated archive: bad input, not a failed conversion
        first = first_line(exc)
        raise InputError(f"model {path}: not a readable TorchScript archive ({first})") from exc
