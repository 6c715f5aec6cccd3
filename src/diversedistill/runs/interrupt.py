"""SIGTERM and SIGINT: end a run with a checkpoint, one line and the signal's exit status.

A cluster scheduler preempts a job with SIGTERM and requeues it only when it does not exit
0; a user stops one with Ctrl-C (SIGINT). Either way the command ends with

    diversedistill distill: interrupted at epoch 1 step 22; continue with --resume

and exit status 128 + signal (143 for SIGTERM, 130 for SIGINT). Inside training the signal
is only noted; :class:`~diversedistill.runs.checkpoints.LastCheckpoint` acts on it at the end of
the current optimizer step: it saves ``last.ckpt`` (the same mid-epoch checkpoint it saves
every N steps, so the resume is exact) and raises :class:`Interrupted`. Outside training
(loading data, exporting) the signal raises :class:`Interrupted` at once.

A worker process of a reproduction (:mod:`diversedistill.loop.parallel`) hears the signal from its
parent, which passes it on, and only notes it, for its whole life
(:func:`note_signals_for_life`): the run it trains saves and stops as above, and a job that
has not begun is not begun.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_state: dict[str, Any] = {"signum": None, "defer": 0}


class Interrupted(Exception):
    """The run was stopped by a signal; ``exit_code`` is 128 + the signal's number."""

    def __init__(self, signum: int, epoch: int | None = None, step: int | None = None):
        self.signum, self.epoch, self.step = signum, epoch, step
        where = f" at epoch {epoch} step {step}" if epoch is not None else ""
        super().__init__(f"interrupted{where}; continue with --resume")

    def __reduce__(self):  # raised in a worker, it reaches the parent whole
        return type(self), (self.signum, self.epoch, self.step)

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)


def _handler(signum, frame) -> None:
    again = _state["signum"] is not None
    _state["signum"] = signum
    if not _state["defer"] or again:  # a second signal does not wait for the step to end
        raise Interrupted(signum)


def pending() -> int | None:
    """The signal received since :func:`handle_signals` began, if any."""
    return _state["signum"]


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """Answer SIGTERM and SIGINT for the block (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    _state["signum"] = None
    for s in SIGNALS:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        _state["signum"] = None


def note_signals_for_life() -> None:
    """From now until the process ends, SIGTERM and SIGINT are only noted (a second one
    still raises :class:`Interrupted` at once): for a worker process, whose parent passes
    the signal on and waits for it to stop at its next step."""
    _state["signum"] = None
    _state["defer"] += 1
    for s in SIGNALS:
        signal.signal(s, _handler)


def raise_if_pending() -> None:
    """:class:`Interrupted` when a signal has been noted: work not begun is not begun."""
    signum = pending()
    if signum is not None:
        raise Interrupted(signum)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Inside the block (training) a signal is only noted, for the loop to act on."""
    _state["defer"] += 1
    try:
        yield
    finally:
        _state["defer"] -= 1
