"""Example inputs read from a data source: what a conversion traces with and checks on."""

from __future__ import annotations


def example_inputs(source, count: int = 1) -> dict | None:
    """TorchScript has no input shapes of its own: one sample of the data (a DataSource, or a Dataset a run has
    opened already) to trace with; TensorFlow conversions are checked on `count` samples."""
    if source is None:
        return None
    import numpy as np

    from modelforge.data.opening import open_dataset
    from modelforge.data.sources import Dataset

    dataset = source if isinstance(source, Dataset) else open_dataset(source)
    count = min(count, dataset.num_samples) if count > 1 else 1
    return {key: np.array(dataset.read(key, 0, count)) for key in dataset.arrays}
