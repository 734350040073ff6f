"""`modelforge optimize`: the latency screen before training, fine-tuning trials on Ray (ASHA), finalists timed
interleaved, the choice, the winner shipped through the normal runner, and the recipe that replays it.

A small residual CNN trained on scikit-learn's digits in the module fixture; a small space (2 ratios, 1-2 epochs).
Latency thresholds are either far above anything this model takes (1000 ms: every form meets it) or far below
(1 ns: none does), so no verdict depends on how fast this machine is.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import FAST_LATENCY, cli_env, load_report, one_error_line, run_cli, write_recipe

pytest.importorskip("ray")
torch = pytest.importorskip("torch")

from tests import prune_models as pm  # noqa: E402

LOOSE_MS = 1000.0  # every form of this model meets it on any machine
IMPOSSIBLE_MS = 1e-6


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("optimize-model")
    paths = pm.write_data(folder)
    (xt, yt), _, _ = pm.digits_split()
    torch.manual_seed(0)
    model = pm.fit(pm.ResidualNet(8), xt, yt, epochs=3)
    pm.export(model, folder / "model.pt2", xt)
    return folder / "model.pt2", paths


def _recipe(model: Path, paths: dict, out: Path, **optimize) -> dict:
    section = {"latency_p99_ms": LOOSE_MS, "max_accuracy_drop": 5.0, "epochs": 1, **optimize}
    return {
        "version": 1,
        "model": str(model),
        "data": {"train": str(paths["train"]), "eval_data": str(paths["val"])},
        "evaluate": {"latency": {**FAST_LATENCY, "min_seconds": 0.2, "max_seconds": 1}},
        "output": {"dir": str(out)},
        "optimize": section,
    }


def _trials(out: Path) -> dict[str, dict]:
    return {t["id"]: t for t in json.loads((out / "search.json").read_text())["trials"]}


def test_loose_slo_ships_the_unpruned_int8_model_without_training(digits_model, tmp_path):
    model, paths = digits_model
    out = tmp_path / "out"
    recipe = _recipe(model, paths, out, prune_ratios=[0.5], precisions=["int8"], runtimes=["onnxruntime"])
    result = run_cli("run", write_recipe(tmp_path / "r.yaml", recipe), "--allow-paths", model.parent)
    assert result.returncode == 0, result.explain()
    search = load_report(out)["search"]
    assert search == json.loads((out / "search.json").read_text())
    assert search["winner"] == "p0.00-none-int8-onnxruntime" and search["passed"] is True
    assert "Winner: p0.00-none-int8-onnxruntime" in result.stdout  # the search tables (cli/search_tables)
    trials = {t["id"]: t for t in search["trials"]}
    for mode in ("kd", "labels"):  # pruning was never trained: the unpruned INT8 model meets everything
        assert trials[f"p0.50-{mode}"]["lost_because"] == "dominated"
        assert trials[f"p0.50-{mode}"]["detail"].startswith("not trained")
    resolved = yaml.safe_load((out / "recipe.resolved.yaml").read_text())
    assert "optimize" not in resolved or resolved["optimize"] is None
    assert [p["name"] for p in resolved["passes"]] == ["quantize"]


def test_an_impossible_slo_is_reported_before_any_training(digits_model, tmp_path):
    model, paths = digits_model
    out = tmp_path / "out"
    result = run_cli(
        "optimize", model, "--train-data", paths["train"], "--eval-data", paths["val"], "--latency-p99-ms",
        str(IMPOSSIBLE_MS), "--prune-ratios", "0.5", "--runtimes", "onnxruntime", "--precisions", "fp32",
        "-o", out, "-q",
    )  # fmt: skip
    assert result.returncode == 1, result.explain()
    line = one_error_line(result)
    assert "out of reach" in line and "fastest candidate" in line and "nothing was trained" in line
    assert " ms " in line
    assert not out.exists()
    assert not (Path(os.environ["MODELFORGE_CACHE_DIR"]) / "search").exists()  # no trial folder: nothing trained


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--runtimes", "tensorflow-lite"), "runtime 'tensorflow-lite' is not installed or not known; installed: "),
        (("--no-train",), "pass --train-data"),
        (("--onnx",), "needs a PyTorch/Keras/Hugging Face source"),
        (("--onnx", "--mac-targets", "0.5"), "needs a PyTorch/Keras/Hugging Face source"),
        (("--mac-targets", "0.001"), "MAC target 0.001 is below what pruning reaches"),
        (("--mac-targets", "1.5"), "mac_targets must be shares in (0, 1)"),
    ],
    ids=[
        "unknown-runtime",
        "no-train-data",
        "onnx-with-pruning",
        "onnx-with-mac-targets",
        "unreachable-mac-target",
        "mac-target-not-a-share",
    ],  # fmt: skip
)
def test_bad_input_exits_2_with_one_line(digits_model, tmp_path, args, expected):
    model, paths = digits_model
    argv = ["optimize", model, "--train-data", paths["train"], "--eval-data", paths["val"], "--latency-p99-ms", "5"]
    if args == ("--no-train",):
        argv = ["optimize", model, "--eval-data", paths["val"], "--latency-p99-ms", "5"]
    elif args[0] == "--onnx":
        from tests.conftest import DIGITS_EVAL, DIGITS_MODEL

        argv = ["optimize", DIGITS_MODEL, "--eval-data", DIGITS_EVAL, "--train-data", DIGITS_EVAL, "--latency-p99-ms",
                "5", *args[1:]]  # fmt: skip
    else:
        argv += list(args)
    result = run_cli(*argv, "-o", tmp_path / "out")
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    assert expected in line, line
    assert not (tmp_path / "out").exists()


def test_mac_targets_become_the_smallest_prune_ratios_that_reach_them(digits_model):
    """ "Keep half the MACs" is the least pruning (to the hundredth) whose architecture has at most half the MACs
    of the original, counted on the trials' own pruning; given alone, the targets replace the default ratios."""
    from modelforge.distillation.students import narrowed_teacher
    from modelforge.model.artifact import ModelArtifact
    from modelforge.model.torch.loading import load_module
    from modelforge.pruning.structured import count_macs_params
    from modelforge.recipe.schema import OptimizeConfig
    from modelforge.search.mac_targets import resolve_mac_targets

    model, _ = digits_model
    (xt, _), _, _ = pm.digits_split()
    example = (torch.from_numpy(xt[:2]),)

    def factory():
        return load_module(ModelArtifact(path=model, format="torch-export"))

    rows = resolve_mac_targets(factory, example, [0.25, 0.5])
    assert [r["mac_target"] for r in rows] == [0.5, 0.25]
    base = count_macs_params(factory(), example)[0]
    for row in rows:
        ratio = row["prune_ratio"]
        assert row["mac_share"] <= row["mac_target"] and 0 < ratio < 0.95
        looser = count_macs_params(narrowed_teacher(factory(), 1.0 - (ratio - 0.01), example), example)[0] / base
        assert looser > row["mac_target"] - 0.02  # a hundredth less pruning no longer keeps within the target
    assert rows[0]["prune_ratio"] < rows[1]["prune_ratio"]

    alone = OptimizeConfig(latency_p99_ms=5, mac_targets=[0.5])
    assert alone.ratios == [0.0] and alone.prunes
    both = OptimizeConfig(latency_p99_ms=5, mac_targets=[0.5], prune_ratios=[0.3])
    assert both.ratios == [0.3] and OptimizeConfig(latency_p99_ms=5).ratios == [0.3, 0.5, 0.7]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_search_on_a_two_node_ray_cluster_resumes_from_cache_and_replays(digits_model, tmp_path):
    """A real two-node Ray cluster on this machine: trials run on both nodes; the same search again (on a local
    Ray) reuses every trial (cached); the winner's recipe replays the winning chain with no search."""
    model, paths = digits_model
    ray_bin = Path(sys.executable).with_name("ray")
    temp = Path("/tmp") / f"mf-ray-test-{os.getpid()}"  # short: Ray's socket paths must fit 107 bytes
    port = _free_port()
    # Token authentication on, the token in the environment of every process (nothing written to ~/.ray).
    env = cli_env(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=uuid.uuid4().hex)
    cache = tmp_path / "cache"
    env["MODELFORGE_CACHE_DIR"] = str(cache)
    head = [str(ray_bin), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1",
            "--include-dashboard=false", f"--temp-dir={temp}", "--disable-usage-stats"]  # fmt: skip
    worker = [str(ray_bin), "start", f"--address=127.0.0.1:{port}", "--num-cpus=1", "--node-ip-address=127.0.0.1"]
    try:
        subprocess.run(head, env=env, check=True, capture_output=True, timeout=120)
        subprocess.run(worker, env=env, check=True, capture_output=True, timeout=120)
        out = tmp_path / "out"
        recipe = _recipe(
            model, paths, out, latency_p99_ms=None, speedup=1e-3, max_accuracy_drop=100.0, objective="size",
            prune_ratios=[0.5], fine_tune=["kd", "labels"], precisions=["fp32"], runtimes=["onnxruntime"], epochs=1,
            ray_address=f"127.0.0.1:{port}",
        )  # fmt: skip
        recipe_file = write_recipe(tmp_path / "r.yaml", recipe)
        first = run_cli("run", recipe_file, "--allow-paths", model.parent, env=env)
        assert first.returncode == 0, first.explain()
        search = load_report(out)["search"]
        assert search["ray"]["nodes"] == 2 and search["ray"]["scheduler"] == "ASHA"
        trials = _trials(out)
        ran = [trials["p0.50-kd"], trials["p0.50-labels"]]
        assert all(t["accuracy"] is not None and t["cached"] is False and t["epochs"] == 1 for t in ran)
        assert len({t["node"] for t in ran}) == 2, ran  # one trial on each node
        # objective size: a pruned finalist beats the unpruned original (all meet the loose constraints)
        winner = search["winner"]
        assert winner.startswith("p0.50-") and trials[winner]["status"] == "winner"
        assert trials["p0.00-none-fp32-onnxruntime"]["lost_because"] == "dominated"
        resolved = yaml.safe_load((out / "recipe.resolved.yaml").read_text())
        assert resolved.get("optimize") is None
        chain = "distill" if winner.startswith("p0.50-kd") else "prune"
        assert [p["name"] for p in resolved["passes"]] == [chain]
        shipped = load_report(out)["summary"]

        # The same search again, on the default local Ray this time: every trial is reused from the cache.
        recipe["optimize"].pop("ray_address")
        recipe["output"] = {"dir": str(tmp_path / "again")}
        local = {k: v for k, v in env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
        again = run_cli("run", write_recipe(tmp_path / "again.yaml", recipe), "--allow-paths", model.parent, env=local)
        assert again.returncode == 0, again.explain()
        assert load_report(tmp_path / "again")["search"]["ray"]["address"] == "local"
        assert all(_trials(tmp_path / "again")[t]["cached"] for t in ("p0.50-kd", "p0.50-labels"))

        replay = run_cli(
            "run", out / "recipe.resolved.yaml", "-o", tmp_path / "replay", "--allow-paths", model.parent, env=env
        )
        assert replay.returncode == 0, replay.explain()
        replayed = load_report(tmp_path / "replay")
        assert "search" not in replayed and not (tmp_path / "replay" / "search.json").exists()
        stage = next(s for s in replayed["stages"] if s["pass"] == chain)
        assert stage["metrics"]["cache"] == "hit"  # the winning chain's stage, as the search shipped it
        assert replayed["summary"]["accuracy_result"] == shipped["accuracy_result"]
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def _candidate(ratio, precision, fine_tune, accuracy, drop, p99):
    from modelforge.search.finalists import Candidate
    from modelforge.search.space import Form

    c = Candidate(Form(ratio, precision, "onnxruntime"), fine_tune, 2 if fine_tune != "none" else None)
    c.accuracy, c.accuracy_drop_pp, c.p50, c.p99, c.size_bytes = accuracy, drop, p99 / 2, p99, int(1000 * (1 - ratio))
    return c


def test_choice_ties_go_to_less_pruning_and_every_loser_says_why():
    """The choice rule on measured figures (no timing involved): the objective decides among those meeting every
    constraint; accuracies within 0.1 pt tie and go to the less pruned; nothing meeting them gives no winner."""
    from modelforge.search.choose import choose
    from modelforge.search.screen import Goal

    def field():
        return [
            _candidate(0.0, "int8", "none", 0.9500, 0.20, 1.0),
            _candidate(0.5, "int8", "kd", 0.9505, 0.15, 0.5),  # as accurate within 0.1 pt, but pruned
            _candidate(0.3, "fp32", "labels", 0.9600, 0.00, 5.0),  # most accurate, misses the SLO
            _candidate(0.7, "int8", "labels", 0.9000, 5.10, 0.3),  # fastest, misses the accuracy limit
        ]

    goal = Goal(latency_p99_ms=4.0, speedup=None)
    candidates = field()
    winner = choose(candidates, goal, base_p50=2.0, max_drop=1.0, objective="accuracy")
    assert winner is candidates[0]
    assert [c.lost for c in candidates[1:]] == ["dominated", "slo", "accuracy_gate"]
    assert "p99 5 ms > SLO 4 ms" in candidates[2].detail and "accuracy drop 5.10 pp > 1 pp" in candidates[3].detail

    candidates = field()
    assert choose(candidates, goal, base_p50=2.0, max_drop=1.0, objective="latency") is candidates[1]

    candidates = field()
    assert choose(candidates, goal, base_p50=2.0, max_drop=0.1, objective="accuracy") is None
    assert all(c.lost in ("slo", "accuracy_gate") for c in candidates)  # each says what it misses
