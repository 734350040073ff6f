"""Fine-tuning trials as Ray Tune trials under ASHA: each prunes the original at one ratio and fine-tunes it with
the existing engines (modelforge.pruning.run for labels, modelforge.distillation.run with the original as the
teacher for kd), reporting the eval accuracy after every epoch (Progress.epoch) so that ASHA stops the weak
ones early.

Each trial lives in a folder of modelforge's cache named by its content key (model bytes, data, trial settings,
seed, versions): the engines checkpoint every epoch there and resume from it, so an interrupted search
continues where it stopped, and a finished trial (trial.json) is reported from its record without training
(`cached`). The folder is exactly the checkpoint layout the prune/distill pass resumes from, which is how the
winner ships without training again (modelforge.run.optimize).

Ray: a local Ray on 127.0.0.1 (no dashboard, its temp folder private to the run, stopped at the end) unless
`ray_address` names a cluster. Trials on other machines need the cache folder (MODELFORGE_CACHE_DIR) on a shared
filesystem: the driver reads the trained weights from there. Latency is never measured in a trial.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelforge.data.sources import ArrayInfo, Dataset
from modelforge.errors import InputError
from modelforge.progress import Progress

TRIAL_RECORD = "trial.json"
EPOCHS_RECORD = "epochs.json"
CACHE_VERSION = 1


@dataclass(frozen=True)
class TrialSpec:
    ratio: float
    fine_tune: str  # kd | labels
    epochs: int
    batch_size: int
    lr: float

    @property
    def id(self) -> str:
        return f"p{self.ratio:.2f}-{self.fine_tune}"

    def pass_spec(self, resume: bool = True) -> dict[str, Any]:
        """The pass (name and config) this trial runs: what the winner's recipe replays."""
        train = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr}
        if self.fine_tune == "labels":
            config = {"method": "structured", "sparsity": self.ratio, "train": train}
            name = "prune"
        else:
            config = {"student_from_teacher": round(1.0 - self.ratio, 6), "baseline": False, "train": train}
            name = "distill"
        if resume:
            config["resume"] = True
        return {"name": name, "config": config}


@dataclass
class TrialResult:
    spec: TrialSpec
    folder: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    node: str | None = None
    finished: bool = False  # every epoch done, the model written
    cached: bool = False
    error: str | None = None

    @property
    def accuracy(self) -> float | None:
        values = [r["eval_accuracy"] for r in self.history if r.get("eval_accuracy") is not None]
        return max(values) if values else None  # keep_best: the model is its best epoch's

    @property
    def model(self) -> Path:
        return self.folder / "model.pt2"


class MemoryDataset(Dataset):
    """A data set held in memory: what trials get (through Ray's object store), so no file handle or path of the
    driver's machine has to reach a worker."""

    def __init__(self, arrays: dict[str, np.ndarray], labels: np.ndarray | None, path: Path):
        self.path = path
        self._arrays = arrays
        self._labels = labels
        self.arrays = {k: ArrayInfo(a.shape, a.dtype) for k, a in arrays.items()}

    def labels(self) -> np.ndarray | None:
        return self._labels

    def read(self, key: str, start: int, stop: int) -> np.ndarray:
        return self._arrays[key][start:stop]


def in_memory(data):
    """A BoundDataset read into memory, bound the same way."""
    from modelforge.data.binding import BoundDataset

    if data is None:
        return None
    chunks: dict[str, list] = {name: [] for name in data.keys}
    for batch in data.batches(512):
        for name, array in batch.items():
            chunks[name].append(array)
    arrays = {name: np.concatenate(parts) for name, parts in chunks.items()}
    memory = MemoryDataset(arrays, data.labels(), Path(data.dataset.path))
    return BoundDataset(memory, {name: name for name in arrays}, dict(data.dtypes))


def trial_key(model_digest: str, data_digest: str, spec: TrialSpec, seed: int) -> str:
    from modelforge.machine import package_versions

    payload = {
        "version": CACHE_VERSION,
        "model": model_digest,
        "data": data_digest,
        "trial": spec.pass_spec(resume=False),
        "seed": seed,
        "versions": package_versions(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def trials_root() -> Path:
    from modelforge.cache_dir import cache_root

    return cache_root() / "search"


def read_record(folder: Path, name: str) -> Any:
    """A record this search wrote into its cache folder; the cache is untrusted: anything malformed is None."""
    from modelforge.safe_files import check_tree_has_no_links

    path = folder / name
    try:
        check_tree_has_no_links(folder)
        if path.is_symlink() or not path.is_file():
            return None
        return json.loads(path.read_text())
    except (OSError, ValueError, InputError):
        return None


def _history(value: Any) -> list[dict[str, Any]]:
    """Epoch rows of a record, with only the numbers read back."""
    rows = []
    for row in value if isinstance(value, list) else []:
        if isinstance(row, dict) and isinstance(row.get("epoch"), int):
            rows.append({k: float(v) for k, v in row.items() if k != "epoch" and isinstance(v, int | float)})
            rows[-1]["epoch"] = row["epoch"]
    return rows


class _Reporter(Progress):
    """The engines' progress channel, turned into Tune reports: one per epoch, kept in epochs.json too. The last
    epoch's report waits until the trial has written its model: ASHA may stop a trial at any report, and one
    stopped after its last epoch must still leave the model it trained."""

    def __init__(self, folder: Path, report, epochs: int):
        self.folder, self.report, self.epochs = folder, report, epochs
        self.rows = _history(read_record(folder, EPOCHS_RECORD))
        self.final: dict | None = None

    def epoch(self, record: dict) -> None:
        from modelforge.safe_files import write_text

        row = {k: v for k, v in record.items() if isinstance(v, int | float)}
        self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [row]
        write_text(self.folder / EPOCHS_RECORD, json.dumps(self.rows), self.folder)
        if row["epoch"] >= self.epochs:
            self.final = row
        else:
            self.report(row)


def _node() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def run_one(trial: dict[str, Any], payload: dict[str, Any], report) -> None:
    """One trial, wherever Ray placed it: `report(row)` is called after every epoch (ASHA may stop us there)."""
    spec = TrialSpec(**trial["spec"])
    folder = Path(trial["folder"])
    node = _node()
    done = read_record(folder, TRIAL_RECORD)
    if isinstance(done, dict) and (folder / "model.pt2").is_file():
        for row in _history(done.get("history")):
            report({**row, "cached": 1, "node": node})
        return
    import warnings

    from modelforge.model.artifact import ModelArtifact
    from modelforge.model.torch.loading import load_module
    from modelforge.safe_files import make_dirs, write_bytes, write_text

    make_dirs(folder, folder.parent)
    source = write_bytes(folder / "source.pt2", payload["model"], folder)
    reporter = _Reporter(folder, lambda row: report({**row, "cached": 0, "node": node}), spec.epochs)
    for row in reporter.rows:  # what an interrupted run of this trial already did
        if row["epoch"] < spec.epochs:
            reporter.report(row)
    data = {
        "train": payload["train"],
        "evaluation": payload["evaluation"],
        "seed": payload["seed"],
        "workdir": Path(tempfile.mkdtemp(prefix="work-", dir=folder)),
        "checkpoints": folder / "checkpoints",
        "progress": reporter,
    }
    pass_spec = spec.pass_spec()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = load_module(ModelArtifact(path=source, format="torch-export"))
        if pass_spec["name"] == "prune":
            from modelforge.pruning.config import PruneConfig
            from modelforge.pruning.run import run_pruning

            config = PruneConfig(**pass_spec["config"], checkpoint_dir=data["checkpoints"])
            result = run_pruning(module, config, **data)
        else:
            from modelforge.distillation.config import DistillConfig
            from modelforge.distillation.run import run_distillation

            config = DistillConfig(**pass_spec["config"], checkpoint_dir=data["checkpoints"])
            result = run_distillation(module, config, **data)
    shutil.copyfile(result.path, folder / "model.pt2")
    shutil.rmtree(data["workdir"], ignore_errors=True)
    write_text(folder / TRIAL_RECORD, json.dumps({"history": reporter.rows}), folder)
    final = reporter.final or (reporter.rows[-1] if reporter.rows else None)
    if final is not None:  # now that the model is written, ASHA may see the last epoch
        reporter.report(final)


def _trainable(config: dict[str, Any], payload: dict[str, Any]) -> None:
    from ray import tune

    def report(row: dict[str, Any]) -> None:
        tune.report({"accuracy": row.get("eval_accuracy", 0.0), **row})

    run_one(config["trial"], payload, report)


class LocalRay:
    """Ray for one search: the user's cluster (`address`), or a local one on loopback, stopped at the end."""

    def __init__(self, address: str | None):
        self.address = address
        self.temp = None
        self.saved: dict[str, str | None] = {}

    def __enter__(self) -> LocalRay:
        import logging
        import secrets
        import sys

        from modelforge.optional import require

        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
        os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "0")
        local = not self.address
        if local:
            self.saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "PYTHONPATH")}
            if self.saved["RAY_AUTH_MODE"] is None:
                # Token authentication, as Ray does for a local cluster, with a token of this run held in the
                # environment (its workers inherit it), so nothing is written to ~/.ray. Set before Ray is
                # imported: Ray reads the mode once, at import.
                os.environ["RAY_AUTH_MODE"] = "token"
                os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(16)
            # Local workers inherit this environment: they import modelforge as this process does (a source
            # checkout included), without a runtime_env to set up.
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in _import_paths() if p)
        imported = "ray" in sys.modules
        ray = require("ray", "fine-tuning pruned candidates (Ray Tune trials)")
        if local and imported:  # imported before the mode was set (a long-lived process): make Ray read it again
            from ray._raylet import Config

            Config.initialize("")
        if not local:  # the cluster's workers import their own installed modelforge
            ray.init(address=self.address, log_to_driver=False, logging_level=logging.ERROR)
        else:
            # A short path: Ray's socket names must fit in 107 bytes.
            self.temp = tempfile.mkdtemp(prefix="mf-ray-")
            try:
                ray.init(
                    address="local",
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.ERROR,
                    _temp_dir=self.temp,
                    _node_ip_address="127.0.0.1",
                )
            except BaseException:  # nothing of a Ray that did not start is left behind
                self.__exit__()
                raise
        return self

    def nodes(self) -> int:
        import ray

        return sum(1 for n in ray.nodes() if n.get("Alive"))

    def __exit__(self, *exc: object) -> None:
        import ray

        ray.shutdown()
        if self.temp:
            shutil.rmtree(self.temp, ignore_errors=True)
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _import_paths() -> list[str]:
    import modelforge

    return [str(Path(modelforge.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]


def run_trials(
    specs: list[TrialSpec],
    *,
    folders: dict[str, Path],
    payload: dict[str, Any],
    epochs: int,
    reduction_factor: int,
    time_budget: float | None,
    storage: Path,
) -> list[TrialResult]:
    """Every trial through Ray Tune with ASHA on the eval accuracy; Ray must be up (LocalRay)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from modelforge.search.brackets import AshaPerGroup, prune_ratio_of

    if not specs:
        return []
    trainable = tune.with_resources(tune.with_parameters(_trainable, payload=payload), {"cpu": 1})
    grid = [{"spec": spec.__dict__, "folder": str(folders[spec.id])} for spec in specs]
    scheduler = AshaPerGroup(  # trials compete within their prune ratio only (search/brackets.py says why)
        prune_ratio_of,
        lambda: ASHAScheduler(
            time_attr="epoch", max_t=epochs, grace_period=1, reduction_factor=reduction_factor, stop_last_trials=False
        ),
    )
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(grid)},
        tune_config=tune.TuneConfig(
            metric="accuracy", mode="max", scheduler=scheduler, time_budget_s=time_budget, reuse_actors=False
        ),
        run_config=tune.RunConfig(storage_path=str(storage), name="optimize", verbose=0, log_to_file=False),
    )
    grid_results = tuner.fit()
    by_id: dict[str, TrialResult] = {}
    for result in grid_results:
        trial = result.config["trial"] if result.config else None
        if trial is None:
            continue
        spec = TrialSpec(**trial["spec"])
        folder = Path(trial["folder"])
        history = _history(read_record(folder, EPOCHS_RECORD))
        done = read_record(folder, TRIAL_RECORD)
        metrics = result.metrics or {}
        cached = bool(metrics.get("cached"))
        if isinstance(done, dict):
            history = _history(done.get("history"))
        by_id[spec.id] = TrialResult(
            spec,
            folder,
            history,
            node=metrics.get("node"),
            finished=isinstance(done, dict) and (folder / "model.pt2").is_file(),
            cached=cached,
            error=str(result.error).splitlines()[0][:200] if result.error else None,
        )
    return [by_id[s.id] for s in specs if s.id in by_id]
