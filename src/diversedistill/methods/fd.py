"""FD — feature distillation through a learned projection (FitNets: Romero et al., *FitNets:
Hints for Thin Deep Nets*, ICLR 2015; BASELINES.md).

With the student's last hidden state ``z`` = f_s [B, d'] and the teacher's last hidden state
``f_t`` [B, d_t] (its own pass, before its head), a learned linear map P: R^{d'} → R^{d_t}
bridges the widths::

    L = L_task + λ · ‖P(f_s) − f_t‖²          (per row, averaged over the batch)

Choices made here:

1. The last hidden states on both sides (the usual choice for multi-modal foundation-model
   teachers, whose intermediate layers do not line up with the student's).
2. P is one ``nn.Linear`` per teacher, trained with the student at the student's learning
   rate by the same loss (as in FitNets' joint stage; there is no separate hint stage).
3. ``reduction``: the squared distance is summed over the teacher's width ("sum", the
   formula and METHOD.md's D), averaged over it ("mean"), or averaged and divided by the
   teacher feature's mean square ("normalized": free of width and scale, the comparison
   tables' choice; :func:`~diversedistill.methods.common.feature_loss`).
4. ``teacher`` names the one teacher (FD is a single-teacher method); empty means every
   teacher, each with its own P, terms averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from diversedistill.losses import task_loss
from diversedistill.methods.base import Method, register_method
from diversedistill.methods.common import (
    FEATURE_REDUCTIONS,
    check_choice,
    check_weight,
    feature_distance_note,
    feature_loss,
    own_answers,
    pick_teachers,
    projections,
    task_plus,
)


@dataclass
class FDConfig:
    lam: float = 1.0  # λ, weight of the feature term (chosen on validation)
    teacher: str = ""  # the teacher to distill from; "" = every teacher, terms averaged
    reduction: str = "sum"  # over the teacher's width: "sum" (the formula), "mean", "normalized"

    def __post_init__(self):
        check_weight("lam", self.lam)
        check_choice("reduction", self.reduction, FEATURE_REDUCTIONS)


@register_method("fd")
class FD(Method):
    config_class = FDConfig
    proj: nn.ModuleList  # one P per chosen teacher, built in setup

    def __init__(self, cfg: FDConfig | None = None):
        super().__init__()
        self.cfg = cfg or FDConfig()
        self._chosen: list[int] = []

    def distance_note(self) -> str:
        return feature_distance_note(self.cfg.reduction)

    def setup(self, student, committee, example) -> None:
        # P only for the teachers distilled from: an unused parameter would stall DDP
        self._chosen = pick_teachers(committee, self.cfg.teacher)
        teachers = list(committee)
        with torch.no_grad():
            width = student(example).z.shape[-1]
        self.proj = projections(width, [teachers[i].answer_width for i in self._chosen])

    def forward(self, student, committee, batch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        out = student(batch)
        task = task_loss(out.prediction, batch["target"])
        answers = own_answers(committee, batch, self._chosen)
        z = student.served(batch, out).z  # the feature as served: no dropout noise to match
        distill = torch.stack([feature_loss(p(z), a.hidden, cfg.reduction).mean()
                               for p, a in zip(self.proj, answers)]).mean()
        return task_plus(task, cfg.lam, distill)
