"""The channel passes, evaluators and benchmarks report progress through, without printing.

It lives in the core (not in `passes/`) so that evaluate/, training/ and bench depend on nothing above them;
`modelforge.passes.base` re-exports it for plugins written against the old location.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Progress:
    """How passes report progress without printing: the CLI renders it, tests ignore it."""

    def start(self, description: str, total: int | None) -> None: ...
    def advance(self, amount: int = 1) -> None: ...
    def stop(self) -> None: ...
    def log(self, message: str) -> None: ...
    def epoch(self, record: dict) -> None:
        """A training epoch ended and its checkpoint is saved (loss, accuracies): a search reports it (ASHA)."""

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        """A progress bar around one step (stopped however the step ends); yields its advance callable."""
        self.start(description, total)
        try:
            yield self.advance
        finally:
            self.stop()


class LineProgress(Progress):
    """Plain lines on stdout, flushed at once: what a script (scripts/, benchmarks/) shows while it trains, so
    minutes of work never look like a hang. One line per step started and per message (epoch lines)."""

    def start(self, description: str, total: int | None) -> None:
        self._description = description

    def log(self, message: str) -> None:
        print(message, flush=True)
