"""The divergence guard: a loss term that turns non-finite, or grows far beyond the level it
had in the first epoch, stops the run with one sentence instead of training on.

Why: a diverging run used to go on for epochs (a distillation loss climbing from 0.07 to
12,777 by epoch 11) and end with only "the student never did better than a constant
prediction". The guard names the term, the epoch and the step, and the setting that
controls that term; it raises before the optimizer steps on the bad loss, so the weights in
memory and every checkpoint already written are from good steps (checkpoints are written
atomically: nothing is half-written).
"""

from __future__ import annotations

import math

from diversedistill.errors import DiverseDistillError

# A term is exploding when it is this many times the first epoch's mean loss (the sum of
# every term's mean): measured against the whole loss, not the term's own start, because a
# term that starts near zero (a distance to answers that begin equal to z, an importance
# loss) may grow a thousandfold while staying a small part of the loss...
GROWTH = 1000.0
# ... and above this in absolute value
FLOOR = 1.0

# the loss terms the methods return, and the setting that scales each
SETTINGS = {
    "task": "the student's learning rate (lr)",
    "distill": "the distillation weight (lam) or the learning rate (lr)",
    "reg": "the module's learning rate (module_lr)",
    "importance": "the module's learning rate (module_lr) or importance_target",
}


class Diverged(DiverseDistillError):
    """A loss term went non-finite or exploded: the run stops, its checkpoints kept."""


class DivergenceGuard:
    """Watches every loss term of a method's step: call :meth:`check` with the step's terms
    (detached scalars) before the loss is returned to the optimizer."""

    def __init__(self, growth: float = GROWTH, floor: float = FLOOR):
        self.growth, self.floor = growth, floor
        self.first_sum: dict[str, float] = {}
        self.first_steps: dict[str, int] = {}
        self.level: dict[str, float] = {}  # the first epoch's mean |term|, once it has ended

    def check(self, terms: dict, epoch: int, step: int) -> None:
        for name, value in terms.items():
            if name not in SETTINGS:
                continue  # diagnostics (α's mean), not a loss term
            number = float(value)
            if not math.isfinite(number):
                raise Diverged(self._message(name, number, epoch, step, "non-finite"))
            if epoch == 0:
                self.first_sum[name] = self.first_sum.get(name, 0.0) + abs(number)
                self.first_steps[name] = self.first_steps.get(name, 0) + 1
                continue
            level = self._level()
            if level is not None and abs(number) > max(self.growth * level, self.floor):
                raise Diverged(self._message(
                    name, number, epoch, step,
                    f"{abs(number) / level:,.0f}x the first epoch's mean loss {level:.4g}"
                    if level > 0 else f"up from {level:.4g} in the first epoch"))

    def _level(self) -> float | None:
        """The first epoch's mean loss: the sum of every term's mean over it."""
        if not self.level and self.first_steps:
            self.level["loss"] = sum(self.first_sum[k] / self.first_steps[k]
                                     for k in self.first_steps)
        return self.level.get("loss")

    def state(self) -> dict:
        """What a resumed run needs to judge later epochs as the uninterrupted run would."""
        return {"sum": dict(self.first_sum), "steps": dict(self.first_steps)}

    def restore(self, state: dict | None) -> None:
        if state:
            self.first_sum = dict(state.get("sum", {}))
            self.first_steps = dict(state.get("steps", {}))
            self.level = {}

    @staticmethod
    def _message(name: str, value: float, epoch: int, step: int, how: str) -> str:
        return (f"the {name} loss diverged at epoch {epoch}, step {step}: {value:.4g} "
                f"({how}); the run stopped, its last checkpoint kept; lower "
                f"{SETTINGS[name]} and run again")
