"""PyTorch input: a torch.export program (.pt2) converts once to ONNX and quantizes; pickles are refused."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from conftest import leftovers, load_report, one_error_line, run_cli

torch = pytest.importorskip("torch")

# Set by _UnpickleTrap.__setstate__: proves whether modelforge ever unpickled a module.
UNPICKLED: list[str] = []


class TinyCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.pool = torch.nn.MaxPool2d(2)
        self.head = torch.nn.Linear(8 * 4 * 4, 10)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(torch.relu(self.conv(pixels))), 1))


class _UnpickleTrap(TinyCNN):
    def __setstate__(self, state):
        UNPICKLED.append("unpickled")
        super().__setstate__(state)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, digits_arrays):
    """A tiny CNN trained briefly on digits, exported with a dynamic batch dimension to model.pt2."""
    x, y = digits_arrays
    images = torch.from_numpy(x.reshape(-1, 1, 8, 8))
    labels = torch.from_numpy(y)
    torch.manual_seed(0)
    model = TinyCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(images[:1200]), labels[:1200])
        loss.backward()
        optimizer.step()
    model.eval()
    folder = tmp_path_factory.mktemp("torch")
    program = torch.export.export(
        model, (images[:4],), dynamic_shapes={"pixels": {0: torch.export.Dim("batch", min=1, max=1024)}}
    )
    torch.export.save(program, str(folder / "model.pt2"))
    with torch.no_grad():
        accuracy = float((model(images[1200:]).argmax(1) == labels[1200:]).float().mean())
    return folder, x, y, accuracy


def test_pt2_quantizes_through_the_cli(exported):
    folder, x, y, torch_accuracy = exported
    assert torch_accuracy > 0.8  # the model learned something: agreement figures below mean something

    inspected = run_cli("inspect", folder / "model.pt2", "--json")
    assert inspected.returncode == 0, inspected.explain()
    info = json.loads(inspected.stdout)
    assert info["format"] == "torch-export"
    [model_input] = info["inputs"]
    name = model_input["name"]
    assert model_input["shape"][1:] == [1, 8, 8]
    assert not isinstance(model_input["shape"][0], int)  # the batch dimension stayed dynamic

    np.savez(folder / "calibration.npz", **{name: x[:128].reshape(-1, 1, 8, 8)})
    np.savez(folder / "eval.npz", **{name: x[1200:].reshape(-1, 1, 8, 8)}, labels=y[1200:])
    out = folder / "out"
    result = run_cli(
        "quantize", folder / "model.pt2", "-c", folder / "calibration.npz", "-e", folder / "eval.npz", "-o", out,
        "--max-accuracy-drop", "2", "--threads", "1", "-q", "--no-speed-aware",
    )  # fmt: skip
    assert result.returncode == 0, result.explain()

    onnx_files = sorted(p.name for p in out.iterdir() if "onnx" in p.name or p.suffix == ".data")
    assert onnx_files == ["model.onnx"]  # one self-contained file, no external-data side file
    quantized = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(quantized)
    assert [i.name for i in quantized.graph.input] == [name]
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in quantized.graph.node}

    report = load_report(out)
    stages = {s["name"]: s for s in report["stages"]}
    assert list(stages) == ["convert", "quantize"]
    convert = stages["convert"]
    assert convert["input_format"] == "torch-export" and convert["output_format"] == "onnx"
    assert isinstance(convert["metrics"]["opset"], int) and convert["metrics"]["opset"] >= 13
    assert report["models"]["baseline"]["opset"] == convert["metrics"]["opset"]
    # The converted baseline computes what the PyTorch model computes.
    assert report["summary"]["accuracy_baseline"] == pytest.approx(torch_accuracy, abs=1.5 / (len(y) - 1200))
    assert report["summary"]["accuracy_drop_pp"] <= 2
    assert report["summary"]["top1_agreement"] >= 0.95
    assert "torch" in report["machine"]["versions"]


def test_pickled_module_is_refused_without_unpickling(tmp_path):
    torch.save(_UnpickleTrap(), tmp_path / "model.pt")
    torch.load(tmp_path / "model.pt", weights_only=False)  # the trap works when something does unpickle
    assert UNPICKLED == ["unpickled"]
    UNPICKLED.clear()

    from modelforge.errors import InputError
    from modelforge.model.loader import load_model

    with pytest.raises(InputError, match="never unpickled"):
        load_model(tmp_path / "model.pt")
    assert UNPICKLED == []

    np.savez(tmp_path / "calibration.npz", pixels=np.zeros((4, 1, 8, 8), dtype=np.float32))
    out = tmp_path / "out"
    result = run_cli("quantize", tmp_path / "model.pt", "-c", tmp_path / "calibration.npz", "-o", out, "-q")
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    assert "model.pt" in line and "pickle" in line
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_state_dict_is_refused(tmp_path):
    torch.save(TinyCNN().state_dict(), tmp_path / "weights.pth")
    np.savez(tmp_path / "calibration.npz", pixels=np.zeros((4, 1, 8, 8), dtype=np.float32))
    result = run_cli("quantize", tmp_path / "weights.pth", "-c", tmp_path / "calibration.npz", "-o", tmp_path / "o")
    assert result.returncode == 2, result.explain()
    assert "weights.pth" in one_error_line(result)


def test_torchscript_archive_quantizes_with_shapes_from_the_data(exported, tmp_path):
    """A TorchScript archive is code: it loads with --trust-model-code (tests/test_code_formats.py: refused without)."""
    folder, x, y, _ = exported
    program = torch.export.load(str(folder / "model.pt2"))
    scripted = torch.jit.trace(program.module(), (torch.from_numpy(x[:2].reshape(-1, 1, 8, 8)),))
    scripted.save(str(tmp_path / "model.pt"))
    np.savez(tmp_path / "calibration.npz", pixels=x[:128].reshape(-1, 1, 8, 8))
    np.savez(tmp_path / "eval.npz", pixels=x[1200:].reshape(-1, 1, 8, 8), labels=y[1200:])
    result = run_cli(
        "quantize", tmp_path / "model.pt", "-c", tmp_path / "calibration.npz", "-e", tmp_path / "eval.npz",
        "-o", tmp_path / "out", "--threads", "1", "-q", "--trust-model-code",
    )  # fmt: skip
    assert result.returncode == 0, result.explain()
    report = load_report(tmp_path / "out")
    assert report["stages"][0]["name"] == "convert"
    assert "TorchScript" in report["stages"][0]["metrics"]["exporter"]
    assert report["summary"]["top1_agreement"] > 0.95
