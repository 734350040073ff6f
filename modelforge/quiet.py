"""Silencing converters and exporters: a pass reports through its context and never prints."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow what converters print ("Saved artifact at ..."), warn and log; torch and TensorFlow also log
    (with tracebacks) through handlers bound to the real stderr, so logging is muted too."""
    muted = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(muted)
