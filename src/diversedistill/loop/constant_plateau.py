"""Early stopping that does not count the epochs a student spends predicting a constant.

A distilled student can sit for a while where its validation metric is that of the best
constant prediction (the mean rating, the most frequent class) and then leave it: measured
on DiverseDistill at λ = 30 on MovieLens, the student stayed up to 15 epochs at the global mean
while the distillation term pulled ``z`` and the answers together, then learned and ended
better than at λ = 3 (docs/tables.md, "Why the LM + MLP-L cell collapsed"). Plain patience
counts those epochs and can stop the run there, reporting the constant's error as the
method's result. Stopping on a plateau is right once the student has learned something; at
the constant it has learned nothing, so nothing is lost by waiting, up to ``max_epochs``.

The constant's score comes from the validation targets themselves (every process scores the
whole validation set): the variance of the targets for ``mse`` (the error of predicting
their mean, the best any constant can do there) and the share of the most frequent class for
``accuracy``. An epoch is "at the constant" when its metric closes less than
:data:`LEARNED_SHARE` of the gap between the constant and a perfect score. A run that never
leaves the constant therefore trains to ``max_epochs``; a run that learns in its first epoch
stops exactly as before (so did every run of the one-seed MovieLens job checked: student
alone, LD and DiverseDistill from MLP-M, MLP-L and both; docs/design.md).
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.callbacks import EarlyStopping

# an epoch closing less than this share of the constant's gap to a perfect score has learned
# nothing. On ML-100K's seeded split (validation variance 1.2761) the run stopped at λ = 30
# sat at 1.2764, -0.02%; the student alone's first epoch (0.9017) already closes 29%
LEARNED_SHARE = 0.01
PERFECT = {"mse": 0.0, "accuracy": 1.0}


class ValidationTargets:
    """Running sums over one pass of validation targets: enough for the constant's score."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.squares = 0.0
        self.classes: torch.Tensor | None = None

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        self.count += target.shape[0]
        if target.is_floating_point():
            values = target.detach().double()
            self.total += float(values.sum())
            self.squares += float(values.pow(2).sum())
        else:  # class labels: the prediction's width is the number of classes
            counts = torch.bincount(target.detach().flatten().cpu(),
                                    minlength=prediction.shape[-1]).double()
            self.classes = counts if self.classes is None else self.classes + counts

    def score(self, metric: str) -> float | None:
        """The best constant prediction's ``metric`` on these targets (None: nothing seen)."""
        if self.count == 0:
            return None
        if metric == "mse":
            mean = self.total / self.count
            return max(self.squares / self.count - mean * mean, 0.0)
        if metric == "accuracy" and self.classes is not None:
            return float(self.classes.max()) / self.count
        return None


def learned_share(metric: str, value: float, constant: float) -> float | None:
    """How much of the gap from the constant's score to a perfect one ``value`` closes
    (0: no better than the constant, 1: perfect); None when the constant is already perfect."""
    gap = PERFECT[metric] - constant
    if abs(gap) < 1e-12:
        return None
    return (value - constant) / gap


class PastConstantStopping(EarlyStopping):
    """Lightning's early stopping whose patience starts counting once the student has left
    the constant prediction (module docstring). ``constant_of`` returns the constant's score
    for the module being trained, or None while it is not known yet (before the first
    validation): patience then counts as usual."""

    def __init__(self, metric: str, constant_of, **kwargs: Any) -> None:
        super().__init__(monitor=f"val_{metric}", **kwargs)
        self.metric = metric
        self.constant_of = constant_of
        self.constant: float | None = None
        self.epochs_at_constant = 0  # for the run's summary: how long the plateau lasted

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self.constant = self.constant_of(pl_module)

    def at_constant(self, current: torch.Tensor) -> bool:
        if self.constant is None or not torch.isfinite(current):
            return False
        share = learned_share(self.metric, float(current), self.constant)
        return share is not None and share < LEARNED_SHARE

    def _evaluate_stopping_criteria(self, current: torch.Tensor) -> tuple[bool, str | None]:
        should_stop, reason = super()._evaluate_stopping_criteria(current)
        if self.at_constant(current):  # best score still tracked; the wait starts later
            self.wait_count = 0
            self.epochs_at_constant += 1
            return False, (f"{self.monitor} = {float(current):.4f} is the constant "
                           f"prediction's ({self.constant:.4f}): patience not counted")
        return should_stop, reason

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "epochs_at_constant": self.epochs_at_constant}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.epochs_at_constant = int(state_dict.get("epochs_at_constant", 0))
