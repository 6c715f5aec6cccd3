"""Side-by-side timing of distillation steps: the clock, teacher and module charging, peak memory.

Every benchmark times its methods on the same batches, in one process, one after the
other, and prints ratios: on a machine other jobs share, absolute seconds drift, ratios
measured back to back hold.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Iterable

import torch

from diversedistill.committee import Committee
from diversedistill.interface import Teacher
from diversedistill.training import TrainConfig, make_optimizer
from diversedistill_recipes.movielens.rating_recipes import as_student


@dataclass
class Clock:
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @contextmanager
    def part(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start


class TimedTeacher(Teacher):
    """A teacher whose forward work (context, answer, predict) is charged to ``clock``."""

    def __init__(self, inner: Teacher, clock: Clock):
        self.inner, self.clock = inner, clock
        self.name, self.question_width, self.answer_width = (
            inner.name, inner.question_width, inner.answer_width)

    def modules(self):
        return self.inner.modules()

    def probe(self, batch):
        self.inner.probe(batch)
        self.question_width, self.answer_width = self.inner.question_width, self.inner.answer_width

    def context(self, batch):
        with self.clock.part("teacher"):
            return self.inner.context(batch)

    def answer(self, question, context):
        with self.clock.part("teacher"):
            return self.inner.answer(question, context)

    def predict(self, batch):
        with self.clock.part("teacher"):
            return self.inner.predict(batch)


def _charge(module: torch.nn.Module, clock: Clock, name: str) -> list:
    """Forward hooks that add the module's forward time to ``clock[name]``."""
    starts = []
    pre = module.register_forward_pre_hook(lambda *_: starts.append(time.perf_counter()))
    post = module.register_forward_hook(
        lambda *_: clock.seconds.__setitem__(name, clock.seconds[name] + time.perf_counter()
                                             - starts.pop()))
    return [pre, post]


@contextmanager
def _charging_calls(obj, names: tuple[str, ...], clock: Clock, part: str):
    """Charge calls of ``obj``'s methods ``names`` to ``clock[part]``: for work that is not
    a module call (DiverseDistill asks its question augmenter in two steps, so that gated
    rows skip the second), which forward hooks would miss."""
    for name in names:
        inner = getattr(obj, name)

        def timed(*args, _inner=inner, **kwargs):
            with clock.part(part):
                return _inner(*args, **kwargs)

        setattr(obj, name, timed)  # an instance attribute: shadows the method
    try:
        yield
    finally:
        for name in names:
            delattr(obj, name)


def time_epoch(method, student_model, teachers: list[Teacher], batches: Iterable,
               n_epoch_batches: int | None, lr: float,
               warmup: Iterable | None = None) -> dict[str, float]:
    """Train ``method`` on ``batches`` (a list, or a loader streamed once) and scale the
    time to ``n_epoch_batches`` (None: the batches are the epoch); returns seconds per epoch,
    total and per part (teacher, module, student, backward + step), training rows per
    second, the process's peak resident memory during the timed steps (and how much of
    it the steps added), and the method's ``epoch_stats`` over the timed steps (a gated
    DiverseDistill: ``skipped/<teacher>``, the share of teacher passes it skipped). The first
    batch sets the method up and is not timed: it pays for lazy initialisation.

    ``warmup``: batches trained on first, untimed, as the method's epoch 0; the timed
    batches are then its epoch 1 (a gated DiverseDistill is timed as it runs after its
    warm-up epoch, with importances that have learned)."""
    batches = iter(batches)
    first = next(batches)
    clock = Clock()
    committee = Committee([TimedTeacher(t, clock) for t in teachers]) if teachers else None
    student = as_student(student_model)
    if committee is not None:
        committee.probe(first)
    method.setup(student, committee, first)
    method.train()
    student.train()
    optimizer = make_optimizer(student, method, lr, TrainConfig().weight_decay)
    hooks = _charge(student_model, clock, "student")
    charging = nullcontext()
    if getattr(method, "module", None) is not None:
        hooks += _charge(method.module.answers, clock, "module")
        charging = _charging_calls(method.module.questions, ("states_and_logits", "ask"),
                                   clock, "module")

    def step(batch):
        with clock.part("forward"):
            loss = method(student, committee, batch)["loss"]
        with clock.part("backward + step"):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    rows = steps = 0
    try:
        with charging:
            step(first)
            if warmup is not None:
                for batch in warmup:
                    step(batch)
                method.epoch = 1
            clock.seconds.clear()
            method.epoch_stats()  # counts start with the timed steps
            with PeakMemory() as memory:
                start = time.perf_counter()
                for batch in batches:
                    step(batch)
                    rows, steps = rows + len(batch["target"]), steps + 1
                total = time.perf_counter() - start
    finally:
        for hook in hooks:
            hook.remove()
    if not steps:
        raise ValueError("time_epoch needs at least two batches (the first is not timed)")
    scale = n_epoch_batches / steps if n_epoch_batches else 1.0
    parts = dict(clock.seconds)
    forward = parts.pop("forward")
    parts["module"] = parts.get("module", 0.0)
    other = forward - parts.get("teacher", 0.0) - parts["module"] - parts.get("student", 0.0)
    parts["loss and glue"] = max(other, 0.0)
    return {"epoch": total * scale, **{k: v * scale for k, v in parts.items()},
            "rows/s": rows / total, "peak MiB": memory.peak_mib, "added MiB": memory.added_mib,
            **method.epoch_stats()}


def format_epochs(rows: dict[str, dict[str, float]]) -> str:
    base = rows["student alone"]["epoch"]
    fd = next((v["epoch"] for k, v in rows.items() if k.startswith("FD")), None)
    lines = ["| method | s / epoch | × student alone | × FD | teacher | module | student | "
             "loss and glue | backward + step |", "|---|---|---|---|---|---|---|---|---|"]
    for label, r in rows.items():
        vs_fd = f"{r['epoch'] / fd:.2f}" if fd else "n/a"
        lines.append(
            f"| {label} | {r['epoch']:.1f} | {r['epoch'] / base:.2f} | {vs_fd} | "
            f"{r.get('teacher', 0):.1f} | {r['module']:.1f} | {r.get('student', 0):.1f} | "
            f"{r['loss and glue']:.1f} | {r['backward + step']:.1f} |")
    return "\n".join(lines)


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident memory of this process now (Linux /proc; 0 where it is not available)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return 0


class PeakMemory:
    """Peak resident memory while the block runs, above what the process held when it
    started: sampled every ``interval`` seconds by a thread (CPU tensors live in ordinary
    process memory, so this is what a run adds). On CUDA, ``torch.cuda.max_memory_allocated``
    is the figure instead."""

    def __init__(self, interval: float = 0.002):
        self.interval, self.peak, self.base = interval, 0, 0
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __enter__(self):
        self.base = self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if not hasattr(self, "_thread"):  # never entered (the work failed before it began)
            return
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def added_mib(self) -> float:
        return (self.peak - self.base) / 2**20

    @property
    def peak_mib(self) -> float:
        return self.peak / 2**20
