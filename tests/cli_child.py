"""The ``diversedistill`` command line, run in a child process with test-only additions.

    python tests/cli_child.py distill --teacher ... --out ...

Lightning's DDP launcher starts the other processes with this same command line and
environment, so every process gets the same additions. Environment variables:

- ``DD_TEST_PAUSE_AT_STEP=k``: after optimizer step ``k`` create ``$DD_TEST_MARKER`` and
  sleep, so that the parent can SIGKILL the process at a known point (or send SIGTERM or
  SIGINT: the pause then ends, and the run answers the signal).
- ``DD_TEST_PAUSE_IN_SAVE=k``: the same inside the ``k``-th write of ``last.ckpt``, after
  the temporary file is complete and before it is renamed over the old checkpoint.
- ``DD_TEST_NO_DROPOUT=1``: a student without dropout. DDP processes draw different
  dropout masks by design, so only a run without dropout can be compared number for
  number with a single process.
- ``DD_TEST_REPORT_DIR=dir``: every process writes ``rank-N.json``: what the DDP wrapper
  holds, where the teachers are, and whether any teacher parameter got a gradient.

A reproduction's worker processes (``--workers N``, spawned: each imports this file as
``__mp_main__``) add to every run they train:

- ``DD_TEST_WORKER_PAUSE_AT_STEP=k``: as ``DD_TEST_PAUSE_AT_STEP``, the marker being
  ``$DD_TEST_MARKER.<worker pid>``;
- ``DD_TEST_START_LOG=file``: one line per run, ``<run directory name> <step>``: the
  optimizer step its training starts from (0 for a fresh run, the checkpoint's on resume).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback


def _pause(reason: str, marker: Path | None = None) -> None:
    from diversedistill.runs.interrupt import pending

    marker = marker or Path(os.environ["DD_TEST_MARKER"])
    marker.with_suffix(".tmp").write_text(reason)
    os.replace(marker.with_suffix(".tmp"), marker)  # the parent never sees it half-written
    deadline = time.monotonic() + 600  # the parent kills us long before this ends,
    while time.monotonic() < deadline and pending() is None:  # or sends SIGTERM / SIGINT
        time.sleep(0.02)


class PauseAtStep(Callback):
    def __init__(self, step: int, marker: Path | None = None):
        self.step, self.marker = step, marker

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            _pause(f"step {self.step}, epoch {trainer.current_epoch}, batch {batch_idx}",
                   self.marker)


class LogStart(Callback):
    """Appends ``<run directory name> <step>`` to ``path`` when a run's training starts."""

    def __init__(self, path: str):
        self.path = path

    def on_train_start(self, trainer, pl_module):
        run = Path(trainer.loggers[0].save_dir).name
        with open(self.path, "a") as f:  # one short line per write: whole, from any process
            f.write(f"{run} {trainer.global_step}\n")


def _worker_callbacks() -> list[Callback]:
    callbacks: list[Callback] = []
    if os.environ.get("DD_TEST_WORKER_PAUSE_AT_STEP"):
        marker = Path(f"{os.environ['DD_TEST_MARKER']}.{os.getpid()}")
        callbacks.append(PauseAtStep(int(os.environ["DD_TEST_WORKER_PAUSE_AT_STEP"]), marker))
    if os.environ.get("DD_TEST_START_LOG"):
        callbacks.append(LogStart(os.environ["DD_TEST_START_LOG"]))
    return callbacks


def _add_to_every_fit(test_callbacks: list[Callback], *modules) -> None:
    """``fit`` as ``modules`` look it up, with ``test_callbacks`` after the caller's own."""
    import diversedistill.training as training

    real_fit = training.fit

    def fit(*args, callbacks=(), **kwargs):
        return real_fit(*args, callbacks=[*callbacks, *test_callbacks], **kwargs)

    for module in modules:
        module.fit = fit


class ReportWrapping(Callback):
    """What DDP wraps, seen from inside each training process."""

    def __init__(self, out_dir: str):
        self.out_dir = Path(out_dir)
        self.report: dict = {}

    def _teacher_parameters(self, pl_module):
        committee = pl_module.committee or []
        return [p for t in committee for m in t.modules() for p in m.parameters()]

    def on_train_start(self, trainer, pl_module):
        from torch.nn.parallel import DistributedDataParallel

        wrapper = trainer.strategy.model
        wrapped = {id(p) for p in wrapper.parameters()}
        teachers = self._teacher_parameters(pl_module)
        self.report = {
            "rank": trainer.global_rank, "world_size": trainer.world_size,
            "ddp": isinstance(wrapper, DistributedDataParallel),
            "wrapped_parameters": len(wrapped), "teacher_parameters": len(teachers),
            "teacher_parameters_in_wrapper": sum(id(p) in wrapped for p in teachers),
            "teacher_devices": sorted({str(p.device) for p in teachers}),
            "student_device": str(pl_module.device),
        }

    def on_train_end(self, trainer, pl_module):
        teachers = self._teacher_parameters(pl_module)
        self.report["teacher_parameters_with_grad"] = sum(p.grad is not None for p in teachers)
        self.report["steps"] = trainer.global_step
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank-{trainer.global_rank}.json").write_text(json.dumps(self.report))


def _pause_inside_last_checkpoint_write(k: int) -> None:
    import diversedistill.runs.atomic as atomic

    real_replace, count = atomic.os.replace, [0]

    def replace(src, dst):
        if Path(dst).name == "last.ckpt":
            count[0] += 1
            if count[0] == k:
                _pause(f"inside write {k} of last.ckpt, temporary file {Path(src).name}")
        return real_replace(src, dst)

    atomic.os.replace = replace


def main() -> int:
    import diversedistill.training as training
    import diversedistill_recipes.movielens.rating_recipes as recsys
    from diversedistill_recipes.cli import main as cli_main

    test_callbacks = []
    if os.environ.get("DD_TEST_PAUSE_AT_STEP"):
        test_callbacks.append(PauseAtStep(int(os.environ["DD_TEST_PAUSE_AT_STEP"])))
    if os.environ.get("DD_TEST_PAUSE_IN_SAVE"):
        _pause_inside_last_checkpoint_write(int(os.environ["DD_TEST_PAUSE_IN_SAVE"]))
    if os.environ.get("DD_TEST_REPORT_DIR"):
        test_callbacks.append(ReportWrapping(os.environ["DD_TEST_REPORT_DIR"]))
    if os.environ.get("DD_TEST_NO_DROPOUT"):
        recsys.STUDENT = recsys.RecommenderRecipe("mlp-s", {"dropout": 0.0})
    _add_to_every_fit(test_callbacks, training, recsys)  # the CLI looks both up when it runs
    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
elif __name__ == "__mp_main__":  # a reproduction's worker, spawned from this script
    import diversedistill_recipes.jobs as jobs

    _add_to_every_fit(_worker_callbacks(), jobs)
