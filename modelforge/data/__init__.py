"""Data sets for calibration, evaluation (and later training): npz, npy and image folders.

`open_dataset` reads a source lazily; `bind` checks it against a model's inputs before any work starts
and yields batches keyed by input name, so memory does not grow with the size of the data set.
"""

from modelforge.data.binding import BoundDataset, bind
from modelforge.data.sources import Dataset, open_dataset

__all__ = ["Dataset", "BoundDataset", "bind", "open_dataset"]
