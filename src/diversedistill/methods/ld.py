"""LD — logit distillation (Hinton, Vinyals & Dean, *Distilling the Knowledge in a Neural
Network*, 2015).

With the student's prediction ``z_s`` and the teacher's ``z_t`` (BASELINES.md)::

    classes:  L = L_task + λ · T² · KL(softmax(z_t/T) ‖ softmax(z_s/T))
    ratings:  L = L_task + λ · (ŷ_s − ŷ_t)²

Choice made here: LD is a single-teacher method (``teacher`` names it). Left empty, every
teacher of the committee contributes its own term and the terms are averaged — with one
teacher that is the paper's LD; with several it equals MT's "average_of_kd" variant.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diversedistill.losses import task_loss
from diversedistill.methods.base import Method, register_method
from diversedistill.methods.common import (
    PREDICTION_DISTANCE_NOTE,
    check,
    check_weight,
    kd_loss,
    own_answers,
    pick_teachers,
    task_plus,
)


@dataclass
class LDConfig:
    lam: float = 1.0  # λ, weight of the distillation term (chosen on validation)
    temperature: float = 1.0  # T of the softened class probabilities (unused for ratings)
    teacher: str = ""  # the teacher to distill from; "" = every teacher, terms averaged

    def __post_init__(self):
        check_weight("lam", self.lam)
        check(self.temperature > 0, f"temperature must be positive, got {self.temperature}")


@register_method("ld")
class LD(Method):
    config_class = LDConfig
    distance_in_words = PREDICTION_DISTANCE_NOTE

    def __init__(self, cfg: LDConfig | None = None):
        super().__init__()
        self.cfg = cfg or LDConfig()

    def setup(self, student, committee, example) -> None:
        pick_teachers(committee, self.cfg.teacher)  # an unknown name fails before training

    def forward(self, student, committee, batch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        out = student(batch)
        task = task_loss(out.prediction, batch["target"])
        answers = own_answers(committee, batch, pick_teachers(committee, cfg.teacher))
        distill = torch.stack([kd_loss(out.prediction, a.prediction, cfg.temperature)
                               for a in answers]).mean()
        return task_plus(task, cfg.lam, distill)
