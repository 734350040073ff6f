"""Importing TensorFlow quietly, with a one-line error naming the extra when it is missing."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from modelforge.optional import require
from modelforge.quiet import quiet

__all__ = ["import_keras3", "import_tf", "import_tf_keras", "quiet", "quiet_native"]


def import_tf(purpose: str) -> Any:
    """TensorFlow with its C++ log chatter off (passes never print)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with quiet_native():  # its first import logs CPU features and CUDA probing from C++
        tf = require("tensorflow", purpose)
    tf.get_logger().setLevel(logging.ERROR)
    return tf


def import_keras3(purpose: str) -> Any:
    import_tf(purpose)
    with quiet_native():
        import keras

    return keras


def import_tf_keras(purpose: str) -> Any:
    """Keras 2 (`tf_keras`): what TF-MOT works on."""
    import_tf(purpose)
    with quiet_native():
        return require("tf_keras", purpose)


@contextlib.contextmanager
def quiet_native() -> Iterator[None]:
    """The TFLite converter and LiteRT print from C++ straight to file descriptors 1 and 2 ("fully_quantize: ...",
    "Created TensorFlow Lite XNNPACK delegate"): point both at /dev/null meanwhile, and Python's streams too."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = []
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        null = None
    try:
        if null is not None:
            for fd in (1, 2):
                try:
                    saved.append((fd, os.dup(fd)))
                    os.dup2(null, fd)
                except OSError:
                    pass
        with quiet():
            yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        if null is not None:
            os.close(null)
