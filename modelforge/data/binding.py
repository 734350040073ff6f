"""Match a data set to a model's inputs, check it before any work starts, and serve batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from modelforge.data.sources import Dataset
from modelforge.errors import InputError
from modelforge.model.artifact import IOSpec, TensorSpec


@dataclass
class BoundDataset:
    """A data set whose arrays are known to fit the model's inputs; a [start, stop) window of it."""

    dataset: Dataset
    keys: dict[str, str]  # model input name -> data set array key
    dtypes: dict[str, np.dtype]  # model input name -> dtype the model expects
    start: int = 0
    stop: int | None = None

    @property
    def num_samples(self) -> int:
        stop = self.dataset.num_samples if self.stop is None else self.stop
        return max(0, stop - self.start)

    def window(self, start: int, stop: int | None) -> BoundDataset:
        """A sub-range, relative to this window (e.g. held-back samples)."""
        end = self.start + (self.num_samples if stop is None else stop)
        return BoundDataset(self.dataset, self.keys, self.dtypes, self.start + start, end)

    def labels(self) -> np.ndarray | None:
        labels = self.dataset.labels()
        return None if labels is None else labels[self.start : self.start + self.num_samples]

    def batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Batches of model inputs, keyed by input name, in file order."""
        stop = self.start + self.num_samples
        streams = {name: self.dataset.iter_chunks(key, batch_size, self.start, stop) for name, key in self.keys.items()}
        while True:
            try:
                batch = {name: next(stream) for name, stream in streams.items()}
            except StopIteration:
                return
            yield {name: np.ascontiguousarray(a, dtype=self.dtypes[name]) for name, a in batch.items()}


def _kinds_compatible(expected: np.dtype, actual: np.dtype) -> bool:
    """float64 data feeds a float32 input and int32 an int64 one; a float never feeds an int input."""
    if expected == actual:
        return True
    groups = ("f", "iu", "b")
    return any(expected.kind in g and actual.kind in g for g in groups)


def bind(dataset: Dataset, io: IOSpec, role: str = "data") -> BoundDataset:
    """Map arrays to model inputs by name (a single-input model takes a single array under any key)."""
    source = dataset.path
    inputs = {t.name: t for t in io.inputs}
    arrays = dataset.arrays
    if len(inputs) == 1 and len(arrays) == 1:
        keys = {next(iter(inputs)): next(iter(arrays))}
    else:
        missing = [name for name in inputs if name not in arrays]
        if missing:
            raise InputError(
                f"{role} {source}: no array for model input '{missing[0]}' "
                f"(arrays: {', '.join(arrays) or 'none'}; model inputs: {', '.join(inputs)})",
                hint="key each array by the model input it feeds",
            )
        extra = [key for key in arrays if key not in inputs]
        if extra:
            raise InputError(
                f"{role} {source}: array '{extra[0]}' matches no model input (model inputs: {', '.join(inputs)})"
            )
        keys = {name: name for name in inputs}
    dtypes = {}
    for name, key in keys.items():
        _check_array(f"{role} {source}", key, arrays[key].shape, arrays[key].dtype, inputs[name])
        dtypes[name] = np.dtype(inputs[name].dtype)
    if dataset.num_samples == 0:
        raise InputError(f"{role} {source}: holds no samples")
    for name, key in keys.items():
        _check_finite(dataset, f"{role} {source}", key, name)
    return BoundDataset(dataset, keys, dtypes)


def _check_finite(dataset: Dataset, where: str, key: str, input_name: str) -> None:
    """NaN or Inf in the data would corrupt calibration ranges and every metric: found before any work."""
    bad, first, kinds = dataset.nonfinite_samples(key)
    if bad:
        feeds = f" (input '{input_name}')" if input_name != key else ""
        raise InputError(
            f"{where}: tensor '{key}'{feeds} holds {' and '.join(kinds)} values in {bad} of "
            f"{dataset.num_samples} samples (first: sample {first})",
            hint="drop or repair those samples",
        )


def _check_array(where: str, key: str, shape: tuple[int, ...], dtype: np.dtype, spec: TensorSpec) -> None:
    """Rank and fixed dims must match; the first (batch) axis of the data is the sample axis."""
    expected = spec.shape
    # Data holds samples on axis 0; the model's axis 0 is the batch, so compare the rest.
    sample_shape = shape[1:]
    model_sample = expected[1:] if expected else ()
    actual_text = "[N, " + ", ".join(map(str, sample_shape)) + "]"
    if 0 in sample_shape:
        raise InputError(f"{where}: tensor '{key}' for input '{spec.name}' has empty samples, shape {actual_text}")
    if expected and len(sample_shape) != len(model_sample):
        raise InputError(
            f"{where}: tensor '{key}' for input '{spec.name}' has shape {actual_text}, "
            f"expected rank {len(expected)} {spec.shape_text()}"
        )
    for axis, (want, got) in enumerate(zip(model_sample, sample_shape, strict=True), start=1):
        if isinstance(want, int) and want != got:
            raise InputError(
                f"{where}: tensor '{key}' for input '{spec.name}' has shape {actual_text}, "
                f"expected {spec.shape_text()} (axis {axis} must be {want})"
            )
    try:
        want_dtype = np.dtype(spec.dtype)
    except TypeError:
        return
    if not _kinds_compatible(want_dtype, dtype):
        raise InputError(f"{where}: tensor '{key}' for input '{spec.name}' is {dtype}, expected {want_dtype}")
