"""A model file's own metadata and its external-data locations are the file's say, never the tool's control.

Issue 17 §1: `metadata_props` named `extra_output`, `runtime`, `factory`... used to steer the run (copy a folder
into the output, pick the runtime). Issue 25 §7: an external-data location outside the model's folder made
`inspect` a probe for any file's size. Every case runs the real CLI on the bundled digits model, with marker
files standing in for secrets.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from conftest import (
    DIGITS_MODEL,
    cli_env,
    digits_recipe,
    load_report,
    one_error_line,
    run_cli,
    write_recipe,
)

MARKER = b"MODELFORGE-TEST-MARKER-3f9c"


def _crafted_metadata(tmp_path: Path) -> dict[str, str]:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "credentials").write_bytes(MARKER + b" secret folder\n")
    checkpoint = tmp_path / "victim-checkpoint.pt"
    checkpoint.write_bytes(MARKER + b" checkpoint\n")
    return {
        "extra_output": str(secrets),
        "runtime": "openvino",
        "runtime_precision": "bf16",
        "factory": "os:system",
        "checkpoints": str(checkpoint),
    }


def _with_metadata(source: Path, target: Path, props: dict[str, str]) -> Path:
    model = onnx.load(str(source))
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(target))
    return target


def test_an_onnx_artifact_keeps_the_files_metadata_apart_from_control(tmp_path):
    from modelforge.model.onnx_model import onnx_artifact

    props = _crafted_metadata(tmp_path)
    artifact = onnx_artifact(_with_metadata(DIGITS_MODEL, tmp_path / "evil.onnx", props))

    assert {k: artifact.model_metadata.get(k) for k in props} == props
    assert artifact.served_on is None and artifact.side_outputs == () and artifact.checkpoints == ()
    assert artifact.factory is None and artifact.keras_flavor is None


def test_crafted_control_keys_only_travel_as_the_models_metadata(tmp_path):
    props = _crafted_metadata(tmp_path)
    evil = _with_metadata(DIGITS_MODEL, tmp_path / "evil.onnx", props)
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "recipe.yaml", digits_recipe(out, model=str(evil)))

    result = run_cli("run", recipe, "-q", env=cli_env(MODELFORGE_CACHE_DIR=str(tmp_path / "cache")))

    assert result.returncode == 0, result.explain()
    shipped = {p.relative_to(out).as_posix() for p in out.rglob("*")}
    assert "credentials" not in {Path(p).name for p in shipped}
    assert not any(p.startswith("checkpoints") for p in shipped)
    assert "model.xml" not in shipped and "model.bin" not in shipped  # no OpenVINO IR: the runtime was not chosen
    assert not any(MARKER in p.read_bytes() for p in out.rglob("*") if p.is_file())
    manifest = (out / "manifest.json").read_text()
    assert "credentials" not in manifest and "victim-checkpoint" not in manifest
    # The runtime comes from the recipe (onnxruntime, the CPU default), never from the file.
    runtimes = load_report(out)["evaluation"]["runtimes"]
    assert runtimes["baseline"] == {**runtimes["baseline"], "runtime": "onnxruntime", "precision": "fp32"}
    assert runtimes["result"]["runtime"] == "onnxruntime" and runtimes["result"]["precision"] == "int8"
    # ... and the model's own metadata reaches the written model unchanged.
    written = {p.key: p.value for p in onnx.load(str(out / "model.onnx"), load_external_data=False).metadata_props}
    assert {k: written.get(k) for k in props} == props


# --------------------------------------------------------------------------------------- external data


def _external_weights(folder: Path, location: str) -> Path:
    """The digits model with its largest weight stored as external data at `location`."""
    model = onnx.load(str(DIGITS_MODEL))
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    length = len(tensor.raw_data)
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
        tensor.external_data.add(key=key, value=value)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())  # as is: onnx.save would rewrite the external data
    return path


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink", "folder-symlink"])
def test_inspect_refuses_external_data_outside_the_models_folder(tmp_path, how):
    outside = tmp_path / "outside"
    outside.mkdir()
    marker = outside / "marker.bin"
    marker.write_bytes(MARKER * 4099)  # a size no model file here has
    folder = tmp_path / "model"
    folder.mkdir()
    if how == "dotdot":
        location = "../outside/marker.bin"
    elif how == "absolute":
        location = str(marker)
    elif how == "symlink":
        (folder / "weights.bin").symlink_to(marker)
        location = "weights.bin"
    else:
        (folder / "weights").symlink_to(outside)
        location = "weights/marker.bin"
    model = _external_weights(folder, location)

    result = run_cli("inspect", model, "--json")

    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    assert "external data location" in line and location in line
    assert str(marker.stat().st_size) not in result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_inspect_still_reports_external_data_beside_the_model(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    source = onnx.load(str(DIGITS_MODEL))
    onnx.save(source, str(folder / "model.onnx"), save_as_external_data=True, location="model.onnx.data")

    result = run_cli("inspect", folder / "model.onnx", "--json")

    assert result.returncode == 0, result.explain()
    info = json.loads(result.stdout)
    expected = (folder / "model.onnx").stat().st_size + (folder / "model.onnx.data").stat().st_size
    assert info["size_bytes"] == expected
