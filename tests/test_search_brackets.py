"""ASHA within each prune ratio (modelforge/search/brackets.py), on a real local Ray Tune run: a heavily pruned
architecture that trails the lighter ones at every rung still gets its best fine-tuning mode trained to the end,
because it competes only with its own ratio's trials; within a ratio, ASHA still stops the weaker mode."""

from __future__ import annotations

import pytest

pytest.importorskip("ray")

EPOCHS = 4
# (prune ratio, fine-tuning mode) -> accuracy reported every epoch: ratio 0.7 trails ratio 0.3 throughout.
ACCURACY = {(0.3, "kd"): 0.95, (0.3, "labels"): 0.93, (0.7, "kd"): 0.80, (0.7, "labels"): 0.60}


def test_each_prune_ratio_keeps_its_best_mode_to_the_last_epoch(tmp_path):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from modelforge.search.brackets import AshaPerGroup, prune_ratio_of
    from modelforge.search.trials import LocalRay

    epochs_each = EPOCHS

    def trainable(config):  # defined here: Ray's workers get it by value (they cannot import a test module)
        from ray import tune

        for epoch in range(1, epochs_each + 1):
            tune.report({"epoch": epoch, "accuracy": config["trial"]["accuracy"]})

    grid = [{"spec": {"ratio": r, "fine_tune": m}, "accuracy": a} for (r, m), a in ACCURACY.items()]
    scheduler = AshaPerGroup(
        prune_ratio_of,
        lambda: ASHAScheduler(
            time_attr="epoch", max_t=EPOCHS, grace_period=1, reduction_factor=2, stop_last_trials=False
        ),  # fmt: skip
    )
    with LocalRay(None):
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space={"trial": tune.grid_search(grid)},
            tune_config=tune.TuneConfig(metric="accuracy", mode="max", scheduler=scheduler, reuse_actors=False),
            run_config=tune.RunConfig(storage_path=str(tmp_path), name="brackets", verbose=0, log_to_file=False),
        )
        results = tuner.fit()
    epochs = {
        (r.config["trial"]["spec"]["ratio"], r.config["trial"]["spec"]["fine_tune"]): r.metrics["epoch"]
        for r in results
    }
    assert len(epochs) == len(ACCURACY) and not any(r.error for r in results)
    for ratio in (0.3, 0.7):  # the best mode of each ratio ran every epoch, the 0.7 one although it trails 0.3
        assert epochs[(ratio, "kd")] == EPOCHS, epochs
    assert set(scheduler._schedulers) == {0.3, 0.7}
