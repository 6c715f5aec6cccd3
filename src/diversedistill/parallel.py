"""Independent training runs spread over worker processes, one thread each.

The models of the CPU-scale experiments are small: one process rarely keeps two cores
busy (its OpenMP threads wait on each other), while two single-threaded processes each run
at full speed. So a reproduction with ``--workers N`` runs N runs at a time. Workers are
started with ``spawn`` (no state forked from the parent) and prepare their own state once,
in ``init`` (data read, teachers loaded from the cache), then run jobs; the parent records
every result as it arrives, so an interrupted reproduction keeps what it measured.

Each run is seeded and single-threaded wherever it runs, so its result does not depend on
which worker ran it or on how many there were.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

_STATE: dict[str, Any] = {}


def worker_state() -> dict[str, Any]:
    """What this worker's ``init`` prepared (the parent's own when it runs the jobs itself)."""
    return _STATE


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when its parent dies, so a reproduction killed
    with SIGKILL leaves no worker training on (and holding both cores) for nobody. SIGKILL,
    not SIGTERM: a run answers SIGTERM by finishing its step and saving a checkpoint
    (interrupt.py), which a worker whose parent is gone must not wait for; the parent
    records every result, so a worker has nothing of its own to save. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the parent died before the call: nobody will signal us
            os._exit(1)
    except (OSError, AttributeError):
        pass


def _start_worker(init: Callable[..., dict] | None, args: tuple) -> None:
    _die_with_parent()
    # torch is usually imported already (unpickling ``init`` imports its module), so the
    # thread count is set on torch itself; the variable is for processes this one starts
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    if init is not None:
        _STATE.update(init(*args))


def run_jobs(jobs: Iterable, fn: Callable[[Any], Any], on_result: Callable[[Any, Any], None],
             workers: int = 1, init: Callable[..., dict] | None = None,
             init_args: tuple = (), state: dict | None = None) -> None:
    """``on_result(job, fn(job))`` for every job: in order in this process when
    ``workers <= 1``, else in completion order from ``workers`` processes. ``fn`` and
    ``init`` must be importable top-level functions; ``fn`` reads :func:`worker_state`.
    ``state``, when given, is this process's state for running the jobs itself (what
    ``init`` would prepare, already at hand)."""
    jobs = list(jobs)
    if workers <= 1 or len(jobs) <= 1:
        _STATE.clear()  # never a state prepared for another call
        if state is not None:
            _STATE.update(state)
        elif init is not None:
            _STATE.update(init(*init_args))
        for job in jobs:
            on_result(job, fn(job))
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context,
                             initializer=_start_worker, initargs=(init, init_args)) as pool:
        pending = {pool.submit(fn, job): job for job in jobs}
        try:
            for done in as_completed(pending):
                on_result(pending[done], done.result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise
