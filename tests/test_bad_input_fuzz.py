"""Malformed recipes, data files, model files and output paths, generated here: every one must give exit 2,
a single error line (no traceback), no output folder, and nothing written into the current directory or
left in the temporary folder.

The valid base is the bundled digits CNN with its calibration and eval data; each case breaks one thing.
The CLI's own entry point (`modelforge.cli.app.main`) runs in this process, so the many cases stay fast;
tests/test_bad_input.py runs the headline cases through a real `python -m modelforge` process.
"""

from __future__ import annotations

import io
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import DIGITS_CALIBRATION, DIGITS_EVAL, DIGITS_MODEL, digits_recipe, leftovers, snapshot

RNG_SEED = 8


def _npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _digits(n: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    with np.load(DIGITS_EVAL) as data:
        images = data["image"][:n].copy()
        labels = data["labels"][:n].copy() if "labels" in data else None
    return images, labels


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as z:
        for name, payload in members.items():
            z.writestr(name, payload)
    return buffer.getvalue()


def _corrupt_member_data(stored_zip: bytes, member: str) -> bytes:
    """Flip bytes inside a member's data (after its local header): the zip opens, reading it fails."""
    with zipfile.ZipFile(io.BytesIO(stored_zip)) as z:
        info = z.getinfo(member)
    data = bytearray(stored_zip)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for offset in range(start + 200, start + 260):
        data[offset] ^= 0x5A
    return bytes(data)


# ------------------------------------------------------------------------------------------ data files


def data_cases() -> dict[str, Callable[[], tuple[str, bytes]]]:
    """name -> (file name, bytes); each replaces the calibration data."""
    images, labels = _digits(64)
    nan_all = images.copy()
    nan_all[:] = np.nan
    nan_one = images.copy()
    nan_one[5, 0, 3, 3] = np.nan
    inf = images.copy()
    inf[7, 0, 0, 0] = np.inf
    neg_inf = images.copy()
    neg_inf[0, 0, 0, 0] = -np.inf
    half_nan = images.astype(np.float16)
    half_nan[1, 0, 1, 1] = np.nan
    valid = _npz_bytes(image=images, labels=labels)
    stored = _zip({"image.npy": _npy_bytes(images), "labels.npy": _npy_bytes(labels)})
    deflated = _zip({"image.npy": _npy_bytes(images)}, zipfile.ZIP_DEFLATED)
    truncated_member = _npy_bytes(images)[:-1000]
    rng = np.random.default_rng(RNG_SEED)
    return {
        "empty-file": lambda: ("cal.npz", b""),
        "random-bytes": lambda: ("cal.npz", rng.bytes(4096)),
        "text": lambda: ("cal.npz", b"image,label\n0.1,3\n"),
        "truncated-half": lambda: ("cal.npz", valid[: len(valid) // 2]),
        "truncated-tail": lambda: ("cal.npz", valid[:-12]),
        "zip-without-arrays": lambda: ("cal.npz", _zip({"readme.txt": b"hello"})),
        "only-labels": lambda: ("cal.npz", _npz_bytes(labels=labels)),
        "object-array": lambda: ("cal.npz", _npz_bytes(image=np.array([{"a": 1}] * 4, dtype=object))),
        "structured-dtype": lambda: ("cal.npz", _npz_bytes(image=np.zeros((4, 1, 8, 8), dtype=[("a", "f4")]))),
        "string-dtype": lambda: ("cal.npz", _npz_bytes(image=np.full((4, 1, 8, 8), "x"))),
        "bool-dtype": lambda: ("cal.npz", _npz_bytes(image=images > 0.5)),
        "complex-dtype": lambda: ("cal.npz", _npz_bytes(image=images.astype(np.complex64))),
        "int-dtype": lambda: ("cal.npz", _npz_bytes(image=(images * 16).astype(np.int64))),
        "wrong-shape": lambda: ("cal.npz", _npz_bytes(image=images[:, :, :, :7])),
        "wrong-rank": lambda: ("cal.npz", _npz_bytes(image=images.reshape(64, 64))),
        "scalar": lambda: ("cal.npz", _npz_bytes(image=np.float32(1.0))),
        "zero-samples": lambda: ("cal.npz", _npz_bytes(image=images[:0])),
        "empty-samples": lambda: ("cal.npz", _npz_bytes(image=np.zeros((8, 1, 0, 8), np.float32))),
        "nan-everywhere": lambda: ("cal.npz", _npz_bytes(image=nan_all)),
        "nan-in-one-sample": lambda: ("cal.npz", _npz_bytes(image=nan_one, labels=labels)),
        "inf": lambda: ("cal.npz", _npz_bytes(image=inf)),
        "minus-inf": lambda: ("cal.npz", _npz_bytes(image=neg_inf)),
        "float16-nan": lambda: ("cal.npz", _npz_bytes(image=half_nan)),
        "sample-count-mismatch": lambda: ("cal.npz", _npz_bytes(image=images, labels=labels[:-1])),
        "float-labels": lambda: ("cal.npz", _npz_bytes(image=images, labels=labels.astype(np.float32))),
        "2d-labels": lambda: ("cal.npz", _npz_bytes(image=images, labels=np.stack([labels, labels], axis=1))),
        "negative-label": lambda: ("cal.npz", _npz_bytes(image=images, labels=np.full(64, -1))),
        "label-out-of-range": lambda: ("cal.npz", _npz_bytes(image=images, labels=np.full(64, 99))),
        "truncated-member": lambda: ("cal.npz", _zip({"image.npy": truncated_member})),
        "corrupt-stored-member": lambda: ("cal.npz", _corrupt_member_data(stored, "image.npy")),
        "corrupt-deflated-member": lambda: ("cal.npz", _corrupt_member_data(deflated, "image.npy")),
        "fortran-order": lambda: ("cal.npz", _npz_bytes(image=np.asfortranarray(images))),
        "bad-npy-header": lambda: ("cal.npz", _zip({"image.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': <f4, }"})),
        "random-npy-member": lambda: ("cal.npz", _zip({"image.npy": rng.bytes(2000)})),
        "npy-truncated": lambda: ("cal.npy", _npy_bytes(images)[:-100]),
        "npy-nan": lambda: ("cal.npy", _npy_bytes(nan_one)),
        "npy-random": lambda: ("cal.npy", rng.bytes(500)),
        "unknown-suffix": lambda: ("cal.csv", b"0.1,0.2\n"),
    }


# ------------------------------------------------------------------------------------------ model files


def model_cases() -> dict[str, Callable[[Path], tuple[str, bytes]]]:
    """name -> (file name, bytes), given the case's folder (for files a model refers to)."""
    import onnx

    raw = DIGITS_MODEL.read_bytes()
    rng = np.random.default_rng(RNG_SEED)

    def edited(edit: Callable[[onnx.ModelProto], None]) -> Callable[[Path], tuple[str, bytes]]:
        def build(_: Path) -> tuple[str, bytes]:
            model = onnx.load(DIGITS_MODEL)
            edit(model)
            return "model.onnx", model.SerializeToString()

        return build

    def external(location: str) -> Callable[[onnx.ModelProto], None]:
        def edit(model: onnx.ModelProto) -> None:
            tensor = model.graph.initializer[0]
            tensor.ClearField("raw_data")
            tensor.data_location = onnx.TensorProto.EXTERNAL
            entry = tensor.external_data.add()
            entry.key, entry.value = "location", location

        return edit

    def first_input_renamed(model: onnx.ModelProto) -> None:
        model.graph.node[0].input[0] = "nowhere"

    def short_weights(model: onnx.ModelProto) -> None:
        model.graph.initializer[0].raw_data = model.graph.initializer[0].raw_data[:8]

    def integer_bias(model: onnx.ModelProto) -> None:  # float + int64: a type error
        from onnx import helper, numpy_helper

        model.graph.initializer.append(numpy_helper.from_array(np.ones(1, np.int64), "int_bias"))
        last = model.graph.node[-1]
        out = last.output[0]
        last.output[0] = out + "_pre"
        model.graph.node.append(helper.make_node("Add", [out + "_pre", "int_bias"], [out], name="bad_add"))

    def pickle_pt(_: Path) -> tuple[str, bytes]:
        return "model.pt", _zip({"archive/data.pkl": b"\x80\x04K\x01."})

    return {
        "empty": lambda _: ("model.onnx", b""),
        "random-bytes": lambda _: ("model.onnx", rng.bytes(5000)),
        "text": lambda _: ("model.onnx", b"this is not a model\n"),
        "truncated-10-bytes": lambda _: ("model.onnx", raw[:10]),
        "truncated-half": lambda _: ("model.onnx", raw[: len(raw) // 2]),
        "truncated-last-byte": lambda _: ("model.onnx", raw[:-1]),
        "npz-as-onnx": lambda _: ("model.onnx", DIGITS_CALIBRATION.read_bytes()),
        "no-graph": edited(lambda m: m.ClearField("graph")),
        "no-nodes": edited(lambda m: m.graph.ClearField("node")),
        "no-inputs": edited(lambda m: m.graph.ClearField("input")),
        "no-outputs": edited(lambda m: m.graph.ClearField("output")),
        "no-opset": edited(lambda m: m.ClearField("opset_import")),
        "dangling-input": edited(first_input_renamed),
        "short-weights": edited(short_weights),
        "type-error": edited(integer_bias),
        "future-ir-version": edited(lambda m: setattr(m, "ir_version", 99)),
        "external-data-outside": edited(external("../" * 30 + "etc/passwd")),
        "external-data-absolute": edited(external("/etc/passwd")),
        "external-data-missing": edited(external("weights.bin")),
        "unknown-suffix": lambda _: ("model.txt", raw),
        "pt2-not-a-zip": lambda _: ("model.pt2", rng.bytes(3000)),
        "pickled-module": pickle_pt,
    }


# ------------------------------------------------------------------------------------------- recipes


def _laughs(levels: int = 9) -> str:
    text = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for level in range(1, levels + 1):
        name, previous = chr(ord("a") + level), chr(ord("a") + level - 1)
        text += f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    return text


def recipe_cases(out: Path, folder: Path) -> dict[str, bytes]:
    def recipe(**overrides) -> bytes:
        return yaml.safe_dump(digits_recipe(out, **overrides), sort_keys=False).encode()

    quantize = digits_recipe(out)["passes"][0]
    inf = float("inf")
    deep_map = "".join("  " * i + f"k{i}:\n" for i in range(400)) + "  " * 400 + "v: 1\n"
    blocker = folder / "a-file"  # the test makes it a regular file
    return {
        "empty": b"",
        "whitespace": b"   \n\n\t\n",
        "comment-only": b"# nothing here\n",
        "latin-1": "# modèle quantifié\n".encode("latin-1") + recipe(),
        "utf-16": recipe().decode().encode("utf-16"),
        "random-bytes": np.random.default_rng(RNG_SEED).bytes(3000),
        "nul-byte": b"version: 1\x00\n",
        "list": b"- quantize\n- prune\n",
        "scalar": b"42\n",
        "string": b"just a sentence\n",
        "null": b"~\n",
        "unclosed-bracket": b"model: [a, b\n",
        "tab-indent": b"model:\n\tpath: x.onnx\n",
        "deep-list": b"[" * 20000 + b"]" * 20000,
        "deep-mapping": deep_map.encode(),
        "billion-laughs": (_laughs() + "model: *j\n").encode(),
        "alias-cycle": b"model: &a [*a]\n",
        "over-1-MiB": b"# " + b"x" * (1 << 20) + b"\n",
        "python-tag": b"model: !!python/object/apply:os.system ['echo hacked']\n",
        "unknown-key": recipe(colour="blue"),
        "version-not-int": recipe(version="one"),
        "passes-not-a-list": recipe(passes=5),
        "unknown-pass": recipe(passes=[{"name": "no-such-pass"}]),
        "bad-method": recipe(passes=[{"name": "quantize", "config": {"method": "kl"}}]),
        "nan-gate": recipe(gates={"min_cosine": float("nan")}),
        "inf-time-budget": recipe(passes=[{"name": "quantize", "config": {**quantize["config"], "time_budget": inf}}]),
        "negative-samples": recipe(passes=[{"name": "quantize", "config": {"calibration_samples": -5}}]),
        "model-missing": recipe(model=str(folder / "missing.onnx")),
        "model-is-a-folder": recipe(model=str(folder)),
        "data-missing": recipe(data={"calibration": str(folder / "missing.npz")}),
        "output-under-a-file": recipe(output={"dir": str(blocker / "out")}),
        "output-in-proc": recipe(output={"dir": "/proc/modelforge-out"}),
    }


# ---------------------------------------------------------------------------------------------- runner


def run_main(args: list[str | Path], cwd: Path, monkeypatch, capsys) -> tuple[int, str]:
    """`modelforge ARGS` through the CLI's entry point, in this process, from `cwd`."""
    from modelforge.cli.app import main

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["modelforge", *map(str, args)])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code, capsys.readouterr().err


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """An empty current directory and a private temporary folder, both checked after the case."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("MODELFORGE_DEBUG", raising=False)
    return tmp_path, cwd, private


def assert_rejected(code: int, stderr: str, out: Path, cwd: Path, private: Path, names: str | None) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    if names is not None:
        assert names in lines[0], f"the error does not name {names}: {lines[0]}"
    assert not out.exists(), "the output folder was created"
    assert leftovers(next(p for p in out.parents if p.is_dir())) == []
    assert snapshot(cwd) == {}, "files were written into the current directory"
    assert sorted(p.name for p in private.iterdir() if p.name != ".ses") == [], "temporary files left behind"


# Eval data goes through the same reader and checks: a few cases suffice there.
EVAL_DATA_CASES = ("nan-in-one-sample", "corrupt-deflated-member", "truncated-member", "label-out-of-range")


@pytest.mark.parametrize(
    ("case", "role"),
    [(case, "--calibration") for case in sorted(data_cases())] + [(case, "--eval-data") for case in EVAL_DATA_CASES],
)
def test_bad_data_file(case, role, sandbox, monkeypatch, capsys):
    tmp_path, cwd, private = sandbox
    name, payload = data_cases()[case]()
    bad = tmp_path / "data" / name
    bad.parent.mkdir()
    bad.write_bytes(payload)
    out = tmp_path / "out"
    data = ["-c", bad] if role == "--calibration" else ["-c", DIGITS_CALIBRATION, "-e", bad]
    code, stderr = run_main(["quantize", DIGITS_MODEL, *data, "-o", out], cwd, monkeypatch, capsys)
    assert_rejected(code, stderr, out, cwd, private, names=name)


@pytest.mark.parametrize("case", sorted(model_cases()))
def test_bad_model_file(case, sandbox, monkeypatch, capsys):
    tmp_path, cwd, private = sandbox
    folder = tmp_path / "model"
    folder.mkdir()
    name, payload = model_cases()[case](folder)
    bad = folder / name
    bad.write_bytes(payload)
    out = tmp_path / "out"
    args = ["quantize", bad, "-c", DIGITS_CALIBRATION, "-e", DIGITS_EVAL, "-o", out]
    code, stderr = run_main(args, cwd, monkeypatch, capsys)
    assert_rejected(code, stderr, out, cwd, private, names=name)


def test_model_that_is_a_folder(sandbox, monkeypatch, capsys):
    tmp_path, cwd, private = sandbox
    folder = tmp_path / "model.onnx"
    folder.mkdir()
    out = tmp_path / "out"
    code, stderr = run_main(["quantize", folder, "-c", DIGITS_CALIBRATION, "-o", out], cwd, monkeypatch, capsys)
    assert_rejected(code, stderr, out, cwd, private, names="model.onnx")


@pytest.mark.parametrize("case", sorted(recipe_cases(Path("/unused"), Path("/unused"))))
def test_bad_recipe(case, sandbox, monkeypatch, capsys):
    tmp_path, cwd, private = sandbox
    out = tmp_path / "out"
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "a-file").write_text("not a folder\n")
    recipe = folder / "recipe.yaml"
    recipe.write_bytes(recipe_cases(out, folder)[case])
    before = snapshot(folder)
    code, stderr = run_main(["run", recipe], cwd, monkeypatch, capsys)
    assert_rejected(code, stderr, out, cwd, private, names=None)
    assert snapshot(folder) == before
    assert str(folder) in stderr or "/proc/" in stderr, f"the error names no file: {stderr}"


@pytest.mark.parametrize(
    "where",
    [
        lambda tmp: tmp / "a-file" / "out",
        lambda tmp: tmp / "a-file" / "deeper" / "out",
        lambda tmp: Path("/proc/modelforge-out"),
        lambda tmp: Path("/proc/modelforge/deeper/out"),
    ],
    ids=["under-a-file", "deep-under-a-file", "in-proc", "deep-in-proc"],
)
def test_output_folder_that_cannot_be_created(where, sandbox, monkeypatch, capsys):
    tmp_path, cwd, private = sandbox
    (tmp_path / "a-file").write_text("a regular file\n")
    out = where(tmp_path)
    code, stderr = run_main(["quantize", DIGITS_MODEL, "-c", DIGITS_CALIBRATION, "-o", out], cwd, monkeypatch, capsys)
    assert_rejected(code, stderr, out, cwd, private, names=str(out))


def test_missing_parent_folders_are_removed_when_the_run_fails(sandbox, monkeypatch, capsys):
    """`-o new/deeper/out` creates new/deeper for its staging folder: a run rejected later removes them."""
    tmp_path, cwd, private = sandbox
    images, _ = _digits(16)
    images[3] = np.nan
    bad = tmp_path / "nan.npz"
    np.savez(bad, image=images)
    out = tmp_path / "new" / "deeper" / "out"
    code, stderr = run_main(["quantize", DIGITS_MODEL, "-c", bad, "-o", out], cwd, monkeypatch, capsys)
    assert code == 2, stderr
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("command", ["bench-model", "bench-data", "debug-data", "inspect-model"])
def test_other_commands_reject_bad_input_the_same_way(command, sandbox, monkeypatch, capsys):
    """bench, debug and inspect read models and data through the same loaders and checks."""
    tmp_path, cwd, private = sandbox
    bad_model = tmp_path / "dangling.onnx"
    bad_model.write_bytes(model_cases()["dangling-input"](tmp_path)[1])
    images, _ = _digits(32)
    images[2, 0, 0, 0] = np.nan
    bad_data = tmp_path / "nan.npz"
    np.savez(bad_data, image=images)
    args, names = {
        "bench-model": (["bench", bad_model, "--batch-sizes", "1"], bad_model.name),
        "bench-data": (["bench", DIGITS_MODEL, "--data", bad_data, "--batch-sizes", "1"], bad_data.name),
        "debug-data": (["debug", DIGITS_MODEL, "-c", bad_data], bad_data.name),
        "inspect-model": (["inspect", tmp_path / "empty.onnx"], "empty.onnx"),
    }[command]
    (tmp_path / "empty.onnx").write_bytes(b"")
    code, stderr = run_main(args, cwd, monkeypatch, capsys)
    assert_rejected(code, stderr, tmp_path / "no-output", cwd, private, names=names)
