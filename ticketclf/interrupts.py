"""SIGTERM and SIGINT end a run as Interrupted (exit 143 / 130), with nothing written.

The handler raises Interrupted where the signal lands, so `finally` blocks and atomic writers
clean up. But an exception raised from a handler can be lost: when the interpreter runs the
handler inside C code that then clears the error, the run went on and exited 0 with its
output in place (seen in the main process's first batch, building the static table's index).
So each signal is also remembered, and the places that commit work (each batch of a run,
every atomic rename, the end of a command) check for one with `check()`; around os.fork it
is only remembered (`only_remembered`).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import Interrupted

_RUN_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_received: list[int] = []
_remembering_only = [0]  # depth of only_remembered()


def _handler(signum: int, _frame: object) -> None:
    _received.append(signum)
    if not _remembering_only[0]:
        raise Interrupted(signum)


@contextmanager
def only_remembered() -> Iterator[None]:
    """Inside, SIGTERM and SIGINT are remembered but not raised; the next check() raises
    them. For os.fork: its at-fork callbacks swallow what a handler raises, and a raise there
    skips the rest of the callback (logging's lock release: the lock stayed held, and the
    LLM threads hung on their next log line)."""
    _remembering_only[0] += 1
    try:
        yield
    finally:
        _remembering_only[0] -= 1


def check() -> None:
    """Raise Interrupted if a signal arrived whose exception did not end the run."""
    if _received:
        raise Interrupted(_received[0])


@contextmanager
def signals_raise() -> Iterator[None]:
    """SIGTERM and SIGINT raise Interrupted (and are remembered) while inside."""
    previous = {s: signal.getsignal(s) for s in _RUN_SIGNALS}
    try:
        for s in previous:
            signal.signal(s, _handler)
    except ValueError:  # not the main thread (e.g. an embedding host): leave signals alone
        previous = {}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _received.clear()
