"""Pruning: .pt2 rebuilt into real nn layers, graph consistency after structured pruning, exact sparsity,
2:4, resumable training, the `prune` command end to end, and its bad inputs (exit 2, one line, nothing written)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import FAST_LATENCY, one_error_line, run_cli

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

import prune_models as pm  # noqa: E402


def _program(model, example):
    batch = torch.export.Dim("batch", min=1, max=1024)
    return torch.export.export(model.eval(), (example,), dynamic_shapes=({0: batch},))


class UpNet(torch.nn.Module):
    """ConvTranspose2d and a conv without bias, for the rebuild."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(8)
        self.up = torch.nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.fc = torch.nn.Linear(4 * 16 * 16, 10)

    def forward(self, pixels):
        return self.fc(torch.flatten(self.up(torch.relu(self.bn(self.conv(pixels)))), 1))


@pytest.mark.parametrize("net", [pm.ResidualNet, pm.ConcatNet, UpNet])
def test_pt2_rebuilds_into_real_layers_with_identical_outputs(net, tmp_path):
    from modelforge.model.torch.export import save_program
    from modelforge.model.torch.rebuild import rebuild_modules

    torch.manual_seed(0)
    model = net()
    with torch.no_grad():  # non-trivial running statistics
        model.train()(torch.rand(64, 1, 8, 8))
    x = torch.rand(5, 1, 8, 8)
    program = _program(model, x)
    rebuilt = rebuild_modules(program)
    kinds = {type(m) for m in rebuilt.modules()}
    assert torch.nn.Conv2d in kinds and torch.nn.Linear in kinds
    if any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()):
        assert torch.nn.BatchNorm2d in kinds
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model.eval()(x))  # identical, not close
        assert torch.equal(rebuilt(x), program.module()(x))
    # names are the model's own; weights are shared, not copied
    own = dict(rebuilt.named_parameters())
    assert set(own) == {n for n, _ in model.named_parameters()}
    # BatchNorm is trainable again: train mode uses batch statistics and moves the running mean
    bns = [m for m in rebuilt.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if bns:
        before = bns[0].running_mean.clone()
        rebuilt.train()(x).sum().backward()
        assert not torch.equal(before, bns[0].running_mean)
        assert bns[0].weight.grad is not None
    # and it exports again, with the same outputs
    rebuilt.eval()
    again = save_program(rebuilt, (x,), tmp_path / "again.pt2")
    with torch.no_grad():
        assert torch.equal(torch.export.load(str(again)).module()(x), rebuilt(x))


@pytest.mark.parametrize("net", [pm.ResidualNet, pm.ConcatNet])
def test_structured_pruning_keeps_the_graph_consistent(net, tmp_path):
    from modelforge.convert.to_onnx import convert_to_onnx
    from modelforge.model.artifact import ModelArtifact
    from modelforge.model.torch.export import save_program
    from modelforge.model.torch.rebuild import rebuild_modules
    from modelforge.pruning.structured import channel_counts, count_macs_params, prune_channels

    torch.manual_seed(0)
    x = torch.rand(4, 1, 8, 8)
    module = rebuild_modules(_program(net(), x))
    before = channel_counts(module)
    macs, _ = count_macs_params(module, (x,))
    first_conv = next(n for n, m in module.named_modules() if isinstance(m, torch.nn.Conv2d))
    prune_channels(
        module, (x,), ratio=0.5, target_macs=None, base_macs=macs, importance="l1",
        skipped=[first_conv, "fc"], round_to=None,
    )  # fmt: skip
    after = channel_counts(module)
    assert module(x).shape == (4, 10)
    assert after["fc"][0] == 10 and after[first_conv][0] == before[first_conv][0]  # skipped layers kept
    assert any(after[n][0] < before[n][0] for n in before)
    assert count_macs_params(module, (x,))[0] < macs * 0.8  # the skipped first conv and fc keep some
    for name, layer in module.named_modules():  # depthwise stays depthwise
        if isinstance(layer, torch.nn.Conv2d) and layer.groups > 1:
            assert layer.groups == layer.in_channels == layer.out_channels, name
    path = save_program(module, (x,), tmp_path / "pruned.pt2")
    onnx_model, _ = convert_to_onnx(ModelArtifact(path, "torch-export"), tmp_path, 17)
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_model.path), providers=["CPUExecutionProvider"])
    [out] = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(out, module(x).detach().numpy(), atol=1e-4)


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_magnitude_sparsity_is_exactly_the_requested_share(scope):
    from modelforge.pruning import apply_masks, magnitude_masks, prunable_layers, sparsity_report

    torch.manual_seed(0)
    layers = prunable_layers(pm.ResidualNet(16))
    apply_masks(layers, magnitude_masks(layers, 0.8, scope))
    rows = sparsity_report(layers)
    total = sum(r["weights"] for r in rows)
    assert abs(sum(r["zeros"] for r in rows) / total - 0.8) <= 1 / total
    if scope == "layer":
        assert all(abs(r["sparsity"] - 0.8) <= 1 / r["weights"] for r in rows)


def test_2_4_pattern_is_enforced_and_verified():
    from modelforge.pruning import apply_masks, masks_2_4, prunable_layers, verify_2_4

    torch.manual_seed(0)
    layers = prunable_layers(pm.ResidualNet(16))
    assert not all(verify_2_4(layers).values())
    masks = masks_2_4(layers)
    assert "stem" not in masks  # one input channel: not eligible, stays dense
    apply_masks(layers, masks)
    verified = verify_2_4(layers)
    assert verified and all(verified.values())
    for name in masks:
        assert float((layers[name].weight == 0).float().mean()) == pytest.approx(0.5)


def test_resume_equals_an_uninterrupted_run(tmp_path):
    from modelforge.training import TrainConfig, train

    (xt, yt), (xv, yv), _ = pm.digits_split()
    data = ((torch.from_numpy(xt[:512]),), torch.from_numpy(yt[:512]))
    evaluation = ((torch.from_numpy(xv),), torch.from_numpy(yv))
    config = TrainConfig(epochs=3, batch_size=64, lr=3e-3, hflip=True, crop_padding=1)

    def fresh():
        torch.manual_seed(1)
        return pm.ResidualNet(8)

    whole = fresh()
    full = train(whole, data, evaluation, config, checkpoint_dir=tmp_path / "a", seed=3)

    class Interrupted(Exception):
        pass

    steps = {"n": 0}

    def crash():
        steps["n"] += 1
        if steps["n"] == 12:  # in the middle of the second epoch (8 steps per epoch)
            raise Interrupted

    broken = fresh()
    with pytest.raises(Interrupted):
        train(broken, data, evaluation, config, checkpoint_dir=tmp_path / "b", seed=3, after_step=crash)
    resumed_model = fresh()
    resumed = train(resumed_model, data, evaluation, config, checkpoint_dir=tmp_path / "b", seed=3, resume=True)
    assert resumed.resumed_from_epoch == 1
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history]
    for (name, a), b in zip(whole.state_dict().items(), resumed_model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A residual CNN trained on digits, exported to model.pt2, with train/val/test data beside it."""
    folder = tmp_path_factory.mktemp("prune")
    paths = pm.write_data(folder)
    (xt, yt), _, (xs, ys) = pm.digits_split()
    model = pm.fit(pm.build_residual(), xt, yt, epochs=6)
    assert pm.accuracy(model, xs, ys) > 0.9
    pm.export(model, folder / "model.pt2", xt)
    from safetensors.torch import save_file

    factory_model = pm.build_residual()
    factory_model.load_state_dict(model.state_dict())
    save_file(factory_model.state_dict(), str(folder / "weights.safetensors"))
    return folder, paths


def _fast(folder):
    (folder / "fast.yaml").write_text(json.dumps({"latency": FAST_LATENCY}))


@pytest.mark.slow
def test_prune_structured_through_the_cli(trained, tmp_path):
    folder, paths = trained
    out = tmp_path / "out"
    result = run_cli(
        "prune", folder / "model.pt2", "--method", "structured", "--sparsity", "0.5", "--train-data", paths["train"],
        "--eval-data", paths["val"], "--epochs", "6", "-o", out, "--threads", "1", "--max-accuracy-drop", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.explain()
    # The log reads in the order things happened: the pruned model's accuracy, then the fine-tuning after it.
    log = result.stderr
    assert log.index("accuracy after pruning") < log.index("fine-tune (step 1/1) epoch 1:"), log
    files = {p.name for p in out.iterdir()}
    assert {"model.onnx", "model.pt2", "report.json", "report.html", "manifest.json"} <= files
    report = json.loads((out / "report.json").read_text())
    names = [s["name"] for s in report["stages"]]
    assert names == ["convert", "prune", "convert"]  # baseline export, prune, conversion for the evaluation
    prune = report["stages"][1]["metrics"]
    assert prune["macs_ratio"] < 0.7 and prune["params_after"] < prune["params_before"]
    assert prune["accuracy_after_finetune"] >= prune["accuracy_after_prune"]
    assert prune["accuracy_after_finetune"] >= prune["accuracy_before_prune"] - 0.03  # fine-tuning recovered it
    # 6 epochs: after 3 the drop was 1.33-1.67 pp over seeds 0-2 (1 to 2 of 300 samples from the bound, and float
    # training differs by CPU); after 6 it was -0.67 pp (AVX-512 VNNI EPYC, 1 thread)
    assert report["summary"]["accuracy_drop_pp"] <= 2
    assert len(prune["training_curve"]) == 6
    # Epochs are counted one way (from 1) in the curve and best_epoch (0: the pruned model before fine-tuning).
    assert [r["epoch"] for r in prune["training_curve"]] == [1, 2, 3, 4, 5, 6]
    best = prune["steps"][0]["best_epoch"]
    accuracies = [r["eval_accuracy"] for r in prune["training_curve"]]
    assert best == 0 or accuracies[best - 1] == max(accuracies), (best, accuracies)
    markdown = (out / "report.md").read_text()
    assert "(torch.export, run as ONNX) vs result" in markdown  # the baseline is the .pt2 the user gave
    assert not re.search(r"=\d\.\d{6,}", markdown), markdown  # stage details rounded
    assert "Training curve" in (out / "report.html").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert "model.pt2" in json.dumps(manifest)
    # the pruned program is the input of another run
    again = run_cli("inspect", out / "model.pt2", "--json")
    assert again.returncode == 0, again.explain()


@pytest.mark.slow
def test_prune_magnitude_from_a_factory(trained, tmp_path):
    folder, paths = trained
    out = tmp_path / "out"
    result = run_cli(
        "prune", "--model-factory", "prune_models:build_residual", "--weights", folder / "weights.safetensors",
        "--method", "magnitude", "--sparsity", "0.8", "--train-data", paths["train"], "--eval-data", paths["val"],
        "--epochs", "2", "-o", out, "--threads", "1", "-q", "--code-path", pm.Path(pm.__file__).parent,
        cwd=pm.Path(pm.__file__).parent,
    )  # fmt: skip
    assert result.returncode == 0, result.explain()
    report = json.loads((out / "report.json").read_text())
    prune = next(s for s in report["stages"] if s["name"] == "prune")["metrics"]
    assert prune["sparsity_measured"] == pytest.approx(0.8, abs=1e-3)
    assert prune["gzip_ratio"] < 0.5  # the weights, gzipped
    assert "do not" in prune["note"] or "does not" in prune["note"]
    assert prune["accuracy_after_finetune"] >= prune["accuracy_before_prune"] - 0.03


def _bad(tmp_path, *args, cwd=None):
    out = tmp_path / "out"
    result = run_cli("prune", *args, "-o", out, "-q", cwd=cwd)
    assert result.returncode == 2, result.explain()
    one_error_line(result)
    assert not out.exists() and not (tmp_path / "out.checkpoints").exists()
    return result.stderr


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(trained, tmp_path):
    folder, paths = trained
    model = folder / "model.pt2"
    assert "sparsity" in _bad(tmp_path, model, "--sparsity", "1.5", "--train-data", paths["train"])
    assert "nope" in _bad(tmp_path, model, "--skip-layer", "nope", "--train-data", paths["train"])
    unlabelled = tmp_path / "unlabelled.npz"
    np.savez(unlabelled, pixels=np.zeros((8, 1, 8, 8), np.float32))
    assert "labels" in _bad(tmp_path, model, "--train-data", unlabelled)
    factory_dir = tmp_path / "code"
    factory_dir.mkdir()
    (factory_dir / "factories.py").write_text(
        "import torch\n"
        "def not_a_module():\n    return {'weight': 1}\n"
        "class Untraceable(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.fc = torch.nn.Linear(64, 10)\n"
        "    def forward(self, x):\n"
        "        if x.sum() > 0:\n            return self.fc(x.flatten(1))\n        return -self.fc(x.flatten(1))\n"
        "def untraceable():\n    return Untraceable()\n"
    )
    torch.save(torch.nn.Linear(64, 10).state_dict(), factory_dir / "fc.pt")
    sd = {"fc." + k: v for k, v in torch.load(factory_dir / "fc.pt", weights_only=True).items()}
    torch.save(sd, factory_dir / "untraceable.pt")
    args = ("--train-data", paths["train"], "--code-path", factory_dir)  # never imported from the cwd implicitly
    err = _bad(tmp_path, "--model-factory", "factories:not_a_module", "--weights", factory_dir / "fc.pt", *args,
               cwd=factory_dir)  # fmt: skip
    assert "nn.Module" in err
    err = _bad(tmp_path, "--model-factory", "factories:untraceable", "--weights", factory_dir / "untraceable.pt",
               *args, cwd=factory_dir)  # fmt: skip
    assert "trace" in err


@pytest.mark.slow
def test_prune_then_int8_recipe_reports_both_stages(trained, tmp_path):
    import yaml

    from modelforge.recipe.load import recipe_from_dict
    from modelforge.run.runner import run_recipe

    folder, paths = trained
    raw = yaml.safe_load((pm.Path(__file__).parents[1] / "recipes" / "prune-then-int8.yaml").read_text())
    raw["model"] = str(folder / "model.pt2")
    raw["data"] = {"train": str(paths["train"]), "calibration": str(paths["train"]), "eval_data": str(paths["val"])}
    raw["passes"][0]["config"]["train"]["epochs"] = 1
    raw["passes"][1]["config"]["calibration_samples"] = 64
    raw["output"] = {"dir": str(tmp_path / "out")}
    raw["evaluate"] = {"latency": FAST_LATENCY}
    raw["cache"] = False
    result = run_recipe(recipe_from_dict(raw))
    report = result.report
    assert [s["name"] for s in report["stages"]] == ["convert", "prune", "convert", "quantize"]
    assert {p.name for p in result.output_dir.iterdir()} >= {"model.onnx", "model.pt2", "report.html"}
    assert report["models"]["result"]["compute"]  # the result is the quantized ONNX model
    assert report["summary"]["size_ratio"] > 3  # pruned (about 1/3 of the parameters) and INT8 (1/4 per weight)


def test_a_pytorch_pass_after_an_onnx_pass_is_refused(trained, tmp_path):
    folder, paths = trained
    from modelforge.errors import InputError
    from modelforge.recipe.load import recipe_from_dict
    from modelforge.run.plan import check_pass_chain

    recipe = recipe_from_dict(
        {
            "model": str(folder / "model.pt2"),
            "data": {"train": str(paths["train"]), "calibration": str(paths["train"])},
            "passes": ["quantize", "prune"],
            "output": str(tmp_path / "out"),
        }
    )
    with pytest.raises(InputError, match=r"pass 'prune' takes torch.export \(.pt2\).*the pass before it produces ONNX"):
        check_pass_chain(recipe)


def _pngs(folder, images, labels):
    """8-bit grayscale PNGs, one sub-folder per class."""
    from PIL import Image

    for i, image in enumerate(images):
        target = folder / f"class_{labels[i]}"
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(np.rint(image.reshape(8, 8) * 255), 0, 255).astype(np.uint8)).save(target / f"{i}.png")


def test_2_4_from_image_folders_is_recorded_in_the_onnx_model(trained, tmp_path):
    import onnx

    from modelforge.recipe.load import recipe_from_dict
    from modelforge.run.runner import run_recipe

    folder, _ = trained
    (xt, yt), (xv, yv), _ = pm.digits_split()
    _pngs(tmp_path / "train", xt[:400], yt[:400])
    _pngs(tmp_path / "val", xv[:100], yv[:100])
    pre = {"color": "L", "size": [8, 8], "resize": 8}
    train = {"epochs": 1, "hflip": True, "crop_padding": 1}
    raw = {
        "model": str(folder / "model.pt2"),
        "data": {
            "train": {"path": str(tmp_path / "train"), "preprocessing": pre},
            "eval_data": {"path": str(tmp_path / "val"), "preprocessing": pre},
        },
        "passes": [{"name": "prune", "config": {"method": "2:4", "train": train}}],
        "output": str(tmp_path / "out"),
        "evaluate": {"latency": FAST_LATENCY},
        "cache": False,
    }
    result = run_recipe(recipe_from_dict(raw))
    stage = next(s for s in result.report["stages"] if s["name"] == "prune")["metrics"]
    assert stage["semi_structured"]["verified"] and "block1.conv1" in stage["semi_structured"]["layers_2_4"]
    assert "no speed-up" in stage["semi_structured"]["note"]
    props = {p.key: p.value for p in onnx.load(str(result.output_dir / "model.onnx")).metadata_props}
    assert json.loads(props["modelforge.sparsity"])["pattern"] == "2:4"
    assert (result.output_dir / "checkpoints" / "last.pt").is_file()
    assert stage["accuracy_after_finetune"] > 0.8  # images and labels from the class folders


@pytest.mark.parametrize("importance", ["l2", "taylor", "bn-scale"])
def test_other_importances_and_a_macs_target(importance):
    from modelforge.model.torch.rebuild import rebuild_modules
    from modelforge.pruning.structured import count_macs_params, prune_channels

    torch.manual_seed(0)
    x = torch.rand(4, 1, 8, 8)
    module = rebuild_modules(_program(pm.ResidualNet(16), x))
    macs, _ = count_macs_params(module, (x,))
    labels = torch.randint(0, 10, (4,))
    prune_channels(
        module, (x,), ratio=None, target_macs=0.6, base_macs=macs, importance=importance,
        skipped=["stem", "fc"], round_to=None, taylor_batch=((x,), labels),
    )  # fmt: skip
    assert count_macs_params(module, (x,))[0] <= 0.6 * macs
    assert module(x).shape == (4, 10)


@pytest.mark.slow
def test_an_interrupted_prune_resumes_to_the_same_model(trained, tmp_path):
    from modelforge.passes.base import Progress
    from modelforge.recipe.load import recipe_from_dict
    from modelforge.run.runner import run_recipe

    folder, paths = trained

    def recipe(name: str, resume: bool, checkpoints: str):
        config = {
            "method": "structured",
            "sparsity": 0.5,
            "schedule": "gradual",
            "steps": 2,
            "step_epochs": 1,
            "train": {"epochs": 2, "batch_size": 128},
            "checkpoint_dir": str(tmp_path / checkpoints),
            "resume": resume,
        }
        return recipe_from_dict(
            {
                "model": str(folder / "model.pt2"),
                "data": {"train": str(paths["train"]), "eval_data": str(paths["val"])},
                "passes": [{"name": "prune", "config": config}],
                "evaluate": {"skip_latency": True},
                "output": str(tmp_path / name),
                "cache": False,
            }
        )

    class Interrupt(Progress):
        steps = 0

        def advance(self, amount: int = 1) -> None:
            Interrupt.steps += 1
            if Interrupt.steps == 24:  # step 2 (after 10 steps of step 1), in its second fine-tuning epoch
                raise KeyboardInterrupt

    whole = run_recipe(recipe("whole", False, "ck-whole"))
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe("broken", False, "ck"), progress=Interrupt())
    assert not (tmp_path / "broken").exists()
    resumed = run_recipe(recipe("resumed", True, "ck"))
    steps = next(s for s in resumed.report["stages"] if s["name"] == "prune")["metrics"]["steps"]
    assert steps[0]["resumed_from_epoch"] is None and steps[1]["resumed_from_epoch"] == 1
    a = torch.export.load(str(whole.output_dir / "model.pt2")).state_dict
    b = torch.export.load(str(resumed.output_dir / "model.pt2")).state_dict
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
