"""One plain line per epoch where a progress bar would be noise.

A progress bar redraws itself with carriage returns: written to a file or a pipe (a job's
log, ``nohup``), it shows nothing useful until training ends. When the output is not a
terminal, the training loop turns the bar off and adds :class:`EpochLines`, which prints
at the end of each epoch (its validation pass included)::

    epoch 3  train loss 0.7421  val_mse 0.8412  (12.3s)
"""

from __future__ import annotations

import sys
import time

from lightning.pytorch.callbacks import Callback


def wants_lines(progress: bool, stream=None) -> bool:
    """Progress asked for, on an output that is not a terminal."""
    stream = stream if stream is not None else sys.stdout
    return progress and not (hasattr(stream, "isatty") and stream.isatty())


class EpochLines(Callback):
    """Prints the epoch, the training loss and the validation metric, on the reporting
    process only, flushed at once."""

    def __init__(self, metric: str, stream=None):
        self.metric, self.stream = metric, stream
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # after the epoch's validation pass: both the epoch's training mean and the
        # validation metric are in callback_metrics here
        if not trainer.is_global_zero:
            return
        logged = trainer.callback_metrics
        parts = [f"epoch {trainer.current_epoch}"]
        if "train/loss" in logged:
            parts.append(f"train loss {float(logged['train/loss']):.4f}")
        key = f"val_{self.metric}"
        if key in logged:
            parts.append(f"{key} {float(logged[key]):.4f}")
        parts.append(f"({time.perf_counter() - self._start:.1f}s)")
        print("  ".join(parts), file=self.stream or sys.stdout, flush=True)
