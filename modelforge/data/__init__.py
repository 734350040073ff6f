"""Data sets for calibration, evaluation and training: npz, npy, image folders; text for Hugging Face folders.

`open_dataset` reads a source lazily; `bind` checks it against a model's inputs before any work starts
and yields batches keyed by input name, so memory does not grow with the size of the data set.
"""

from modelforge.data.binding import BoundDataset, bind
from modelforge.data.opening import open_dataset
from modelforge.data.sources import Dataset

__all__ = ["Dataset", "BoundDataset", "bind", "open_dataset"]
