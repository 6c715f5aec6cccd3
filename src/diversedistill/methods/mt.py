"""MT — multi-teacher averaging (You, Xu, Xu & Tao, *Learning from Multiple Teacher
Networks*, KDD 2017; BASELINES.md).

With K teachers' predictions ``z_k`` and the student's ``z_s``, two variants, both in use::

    "kd_to_average":  L = L_task + λ · KD(z_s, p̄),   p̄ = mean_k softmax(z_k/T)   (You et al.)
    "average_of_kd":  L = L_task + λ · mean_k KD(z_s, z_k)

For ratings p̄ is the mean predicted rating and KD the squared error.

How the two differ — worked out, and tested: KD is linear in the target distribution up to
a term that does not involve the student (squared error: (s − t)² = s² − 2st + t²;
KL: Σ p log p − Σ p log q), so both variants give the student **the same gradient**, and
their losses differ by a constant::

    ratings:  mean_k (s − t_k)² − (s − t̄)²            = Var_k(t_k)                (≥ 0)
    classes:  mean_k T²KL(p_k‖q) − T²KL(p̄‖q)          = T²·(H(p̄) − mean_k H(p_k))  (≥ 0)

i.e. the teachers' disagreement (variance; generalized Jensen–Shannon divergence). The
logged ``distill`` values differ by it; training runs do not. What does change the student's
gradient is *what* is averaged: ``average = "logits"`` takes p̄ = softmax(mean_k z_k / T)
(the ensemble's logit, a sharper target where teachers agree) instead of the mean of the
softened probabilities. For ratings the two averages coincide.

Not implemented: the original's optional triplet loss on intermediate features ordered by
a teacher vote (BASELINES.md marks it optional).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from diversedistill.losses import task_loss
from diversedistill.methods.base import Method, register_method
from diversedistill.methods.common import (
    PREDICTION_DISTANCE_NOTE,
    check,
    check_choice,
    check_weight,
    distill_to,
    is_rating,
    kd_loss,
    own_answers,
    soft_target,
    task_plus,
)

VARIANTS = ("kd_to_average", "average_of_kd")
AVERAGES = ("probabilities", "logits")


def average_target(teachers: Sequence[torch.Tensor], temperature: float = 1.0,
                   average: str = "probabilities") -> torch.Tensor:
    """The committee's mean soft target: the mean rating [B], or for class logits [B, C]
    the mean of softmax(z_k/T) ("probabilities") or softmax(mean_k z_k / T) ("logits")."""
    if is_rating(teachers[0]) or average == "probabilities":
        return torch.stack([soft_target(t, temperature) for t in teachers]).mean(0)
    return soft_target(torch.stack(list(teachers)).mean(0), temperature)


def mt_distill(student: torch.Tensor, teachers: Sequence[torch.Tensor], temperature: float = 1.0,
               variant: str = "kd_to_average", average: str = "probabilities") -> torch.Tensor:
    """MT's distillation term, a scalar: KD to the committee's mean target, or the mean of
    the per-teacher KD losses. ``student`` and each teacher: [B] ratings or [B, C] logits."""
    if variant == "average_of_kd":
        return torch.stack([kd_loss(student, t, temperature) for t in teachers]).mean()
    return distill_to(student, average_target(teachers, temperature, average), temperature).mean()


@dataclass
class MTConfig:
    lam: float = 1.0  # λ, weight of the distillation term (chosen on validation)
    temperature: float = 1.0  # T of the softened class probabilities (unused for ratings)
    variant: str = "kd_to_average"  # "kd_to_average" (You et al.) or "average_of_kd"
    average: str = "probabilities"  # kd_to_average on classes: mean of "probabilities" or "logits"

    def __post_init__(self):
        check_weight("lam", self.lam)
        check(self.temperature > 0, f"temperature must be positive, got {self.temperature}")
        check_choice("variant", self.variant, VARIANTS)
        check_choice("average", self.average, AVERAGES)


@register_method("mt")
class MT(Method):
    config_class = MTConfig
    distance_in_words = PREDICTION_DISTANCE_NOTE

    def __init__(self, cfg: MTConfig | None = None):
        super().__init__()
        self.cfg = cfg or MTConfig()

    def forward(self, student, committee, batch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        out = student(batch)
        task = task_loss(out.prediction, batch["target"])
        teachers = [a.prediction for a in own_answers(committee, batch)]
        distill = mt_distill(out.prediction, teachers, cfg.temperature, cfg.variant, cfg.average)
        return task_plus(task, cfg.lam, distill)
