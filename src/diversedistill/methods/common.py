"""What the baselines share: the teachers' own outputs and the distillation losses.

Predictions come in two kinds, told apart by shape (as :func:`~diversedistill.losses.task_loss`
tells targets apart by dtype): a **rating** is [B] (regression, the MovieLens case) and
**class logits** are [B, C] (the vision domain). What a teacher's prediction teaches is then

- for a rating, the rating itself: "logit" distillation is the squared error
  ``(ŷ_s − ŷ_t)²`` — a rating has no softmax, so the temperature plays no part;
- for logits, Hinton's soft label ``softmax(z_t / T)``, distilled by
  ``T² · KL(p_t ‖ softmax(z_s / T))`` summed over classes, averaged over rows (the T²
  keeps the gradient's scale independent of T).

Mixtures of teachers (MT, AMTML) mix these targets: a weighted mean rating, or a weighted
mean of probability vectors; :func:`distill_to` distills either.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from diversedistill.committee import Committee
from diversedistill.diversedistill_config import MAX_WEIGHT
from diversedistill.errors import ConfigError
from diversedistill.interface import Answer, Batch

FEATURE_REDUCTIONS = ("sum", "mean", "normalized")


def is_rating(prediction: torch.Tensor) -> bool:
    """A [B] prediction is a rating; a [B, C] one is a row of class logits."""
    return prediction.dim() == 1


def soft_target(prediction: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """What a teacher's prediction teaches: the rating itself [B], or softmax(z/T) [B, C]."""
    if is_rating(prediction):
        return prediction
    return F.softmax(prediction / temperature, dim=-1)


def distill_to(student: torch.Tensor, target: torch.Tensor,
               temperature: float = 1.0) -> torch.Tensor:
    """Per-row distillation loss [B] of the student's prediction towards a soft target.

    ``student`` [B] rating -> ``(student − target)²`` with ``target`` [B];
    ``student`` [B, C] logits -> ``T² · Σ_c p_c (log p_c − log softmax(student/T)_c)`` with
    ``target`` = p [B, C] probabilities (``xlogy`` makes a zero probability cost nothing).
    """
    if is_rating(student):
        return (student - target).pow(2)
    log_q = F.log_softmax(student / temperature, dim=-1)
    kl = (torch.xlogy(target, target) - target * log_q).sum(-1)
    return temperature ** 2 * kl


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0,
            reduction: str = "mean") -> torch.Tensor:
    """Logit distillation of one teacher's prediction: squared error of ratings [B], or
    T²·KL of softened class logits [B, C]. ``reduction`` "mean" -> scalar, "none" -> [B]."""
    per_row = distill_to(student, soft_target(teacher, temperature), temperature)
    return per_row.mean() if reduction == "mean" else per_row


def feature_loss(projected: torch.Tensor, features: torch.Tensor,
                 reduction: str = "sum") -> torch.Tensor:
    """Per-row feature distance [B] between ``P(f_s)`` and ``f_t``, both [B, d_t]:

    - "sum": ``‖P(f_s) − f_t‖²`` summed over the width (the formula);
    - "mean": averaged over the width, which keeps λ comparable across teachers of
      different widths but not of different scales;
    - "normalized": averaged over the width and divided by ``f_t``'s mean square over the
      batch (detached), free of width and of scale like DiverseDistill's default distance
      (:func:`~diversedistill.losses.normalized_squared_error`). The teacher is frozen, so
      its features' size is a fixed property of the teacher and a batch estimates it well;
      no running state is needed. D = 1 is a projection that predicts zero.
    """
    squared = (projected - features).pow(2)
    if reduction == "sum":
        return squared.sum(-1)
    if reduction == "mean":
        return squared.mean(-1)
    scale = features.detach().pow(2).mean()
    return squared.mean(-1) / scale.clamp_min(torch.finfo(features.dtype).tiny)


def feature_distance_note(reduction: str) -> str:
    """In words, what a feature term's distance is measured in (for the tables' reports)."""
    return {"sum": "feature: squared L2 summed over the teacher's width (grows with width "
                   "and scale)",
            "mean": "feature: squared error per dimension (free of width, not of scale)",
            "normalized": "feature: squared error per dimension relative to the teacher "
                          "feature's mean square (free of width and scale)"}[reduction]


PREDICTION_DISTANCE_NOTE = ("prediction: squared error of the rating, or T²·KL over the "
                            "classes (the task loss's units; one output, no width)")


@torch.no_grad()
def own_answers(committee: Committee, batch: Batch,
                which: Sequence[int] | None = None) -> list[Answer]:
    """Each chosen teacher's own pass (no question): its last hidden state [B, d_t] and its
    prediction [B] or [B, C], without gradient. Call once per step and reuse the answers."""
    teachers = list(committee)
    chosen = range(len(teachers)) if which is None else which
    return [teachers[i].answer(None, teachers[i].context(batch)) for i in chosen]


def pick_teachers(committee: Committee, name: str) -> list[int]:
    """Indices of the teachers a single-teacher method distills from: the one named, or
    (``name`` empty) every teacher, each as its own term."""
    if not name:
        return list(range(len(committee)))
    if name not in committee.names:
        raise ConfigError(f"teacher {name!r} is not in the committee {committee.names}")
    return [committee.names.index(name)]


def projections(d_in: int, widths: Sequence[int]) -> nn.ModuleList:
    """One linear map per teacher from the student's last hidden width to the teacher's."""
    return nn.ModuleList(nn.Linear(d_in, w) for w in widths)


def task_plus(task: torch.Tensor, lam: float, distill: torch.Tensor) -> dict[str, torch.Tensor]:
    """The usual loss dict: ``loss`` = task + λ · distill, and both parts detached."""
    return {"loss": task + lam * distill, "task": task.detach(), "distill": distill.detach()}


def check(condition: bool, message: str) -> None:
    """Config validation in one line: raise ConfigError(message) unless ``condition``."""
    if not condition:
        raise ConfigError(message)


def check_weight(name: str, value: float) -> None:
    """A loss weight training survives: in [0, MAX_WEIGHT] (NaN fails the comparison)."""
    check(0 <= value <= MAX_WEIGHT, f"{name} must be in [0, {MAX_WEIGHT:g}], got {value}")


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    check(value in choices, f"{name} must be one of {tuple(choices)}, got {value!r}")
