"""Independent training runs spread over worker processes, one thread each.

The models of the CPU-scale experiments are small: one process rarely keeps two cores
busy (its OpenMP threads wait on each other), while two single-threaded processes each run
at full speed. So a reproduction with ``--workers N`` runs N runs at a time. Workers are
started with ``spawn`` (no state forked from the parent) and prepare their own state once,
in ``init`` (data read, teachers loaded from the cache), then run jobs; the parent records
every result as it arrives, so an interrupted reproduction keeps what it measured.

Each run is seeded and single-threaded wherever it runs, so its result does not depend on
which worker ran it or on how many there were.

SIGTERM or SIGINT to the parent (a scheduler's preemption, Ctrl-C, ``timeout``) is passed on
to every worker, once: each worker's run saves ``last.ckpt`` at the end of its current step
and stops (as ``distill`` does, :mod:`diversedistill.runs.interrupt`), a job not begun is not
begun, and the parent raises :class:`~diversedistill.runs.interrupt.Interrupted` as soon as the
workers are gone (at most :data:`STOP_WAIT_S` later: then they are killed). ``--resume``
continues each interrupted run from its checkpoint. A parent killed with SIGKILL takes its
workers with it (:func:`_die_with_parent`).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from multiprocessing.process import BaseProcess
from typing import Any

from diversedistill.runs import interrupt

_STATE: dict[str, Any] = {}
# how long the parent waits, after passing a signal on, for the workers to save and end:
# a step and a checkpoint take seconds; a worker still loading its data may take longer,
# and is killed then (its run has not begun, so nothing of it is lost)
STOP_WAIT_S = 60.0


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


def _leave_the_terminals_group() -> None:
    """The worker's own process group: a Ctrl-C in the terminal (sent to the foreground
    group) or ``timeout`` (its group) then reaches the parent only, which passes it on
    once. Heard twice, a run would take the second signal as "do not wait for the step"
    and stop without its checkpoint."""
    try:
        os.setpgid(0, 0)
    except (OSError, AttributeError):  # not POSIX, or not allowed: the signal may come twice
        pass


def _start_worker(init: Callable[..., dict] | None, args: tuple) -> None:
    _die_with_parent()
    _leave_the_terminals_group()
    interrupt.note_signals_for_life()
    # torch is usually imported already (unpickling ``init`` imports its module), so the
    # thread count is set on torch itself; the variable is for processes this one starts
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    if init is not None:
        _STATE.update(init(*args))


def _run_job(fn: Callable[[Any], Any], job: Any) -> Any:
    """``fn(job)`` in a worker, unless the worker has been told to stop: a job already queued
    to it when the signal came is then not begun (its run keeps no checkpoint to lose)."""
    interrupt.raise_if_pending()
    return fn(job)


def _signal_of(err: BaseException) -> int | None:
    """The signal an exception stands for: the one to pass on to the workers."""
    if isinstance(err, interrupt.Interrupted):
        return int(err.signum)
    if isinstance(err, KeyboardInterrupt):  # SIGINT where no handler was installed
        return int(signal.SIGINT)
    return None


def _still_running(processes: list[BaseProcess], within: float) -> list[BaseProcess]:
    """Wait up to ``within`` seconds for ``processes`` to end; those that have not.
    (Their sentinels, not ``join``: the pool's own thread reaps them too.)"""
    from multiprocessing.connection import wait

    deadline = time.monotonic() + within
    waiting = {p.sentinel: p for p in processes}
    while waiting and (left := deadline - time.monotonic()) > 0:
        for ready in wait(list(waiting), left):
            waiting.pop(ready)  # type: ignore[arg-type]  # a sentinel is an int
    return list(waiting.values())


def _stop_workers(pool: ProcessPoolExecutor, futures: Iterable[Future], signum: int) -> None:
    """Pass ``signum`` on to every worker and wait for them to save their runs and end;
    kill them past :data:`STOP_WAIT_S` or at a second signal."""
    # the pool's own processes: no public way to reach them
    processes = list(getattr(pool, "_processes", {}).values())
    for future in futures:
        future.cancel()
    for process in processes:
        if process.pid is not None:
            try:
                os.kill(process.pid, signum)
            except ProcessLookupError:  # ended already
                pass
    pool.shutdown(wait=False, cancel_futures=True)  # each worker ends once it is idle
    left = processes
    try:
        left = _still_running(processes, within=STOP_WAIT_S)
    finally:  # past the bound, or a second signal: no more waiting for a step to end
        for process in left:
            process.kill()


def run_jobs(jobs: Iterable, fn: Callable[[Any], Any], on_result: Callable[[Any, Any], None],
             workers: int = 1, init: Callable[..., dict] | None = None,
             init_args: tuple = (), state: dict | None = None) -> None:
    """``on_result(job, fn(job))`` for every job: in order in this process when
    ``workers <= 1``, else in completion order from ``workers`` processes. ``fn`` and
    ``init`` must be importable top-level functions; ``fn`` reads :func:`worker_state`.
    A signal while the workers run is passed on to them (see the module's docstring).
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
        pending = {pool.submit(_run_job, fn, job): job for job in jobs}
        try:
            for done in as_completed(pending):
                on_result(pending[done], done.result())
        except BaseException as err:
            signum = _signal_of(err)
            if signum is not None:
                _stop_workers(pool, pending, signum)
            else:  # a run's error: the runs in flight finish, nothing new starts
                for future in pending:
                    future.cancel()
            raise
