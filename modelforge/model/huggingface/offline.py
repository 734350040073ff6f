"""transformers imported offline: the environment it and huggingface_hub read at import is set first.

No hub access ever (a missing file is an exit-2 error naming it, never a download), no TensorFlow import, no
telemetry. Every modelforge module that needs transformers imports it through `import_transformers`.
"""

from __future__ import annotations

import os
from types import ModuleType

# The environment transformers and huggingface_hub read at import: offline, PyTorch only, no telemetry.
HF_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "USE_TF": "0",
    "USE_TORCH": "1",
    "USE_FLAX": "0",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


def import_transformers() -> ModuleType:
    """transformers, imported offline and without TensorFlow (the environment is set first, every time)."""
    os.environ.update(HF_ENVIRONMENT)
    from modelforge.optional import require

    require("torch", "loading Hugging Face models")
    transformers = require("transformers", "loading Hugging Face models")
    transformers.logging.set_verbosity_error()  # its warnings would break the one-line errors and the tables
    return transformers
