"""SCKD — student-customized knowledge distillation (Zhu & Wang, *Student Customized
Knowledge Distillation: Bridging the Gap Between Student and Teacher*, ICCV 2021).

Each distillation term k is treated as a task beside the main task. Every step the
gradients of the task loss and of each term over the student's shared parameters θ are
compared, and a term the student cannot use — one whose gradient points away from the
task's — is dropped for that step::

    g_task = ∇_θ L_task,   g_k = ∇_θ L_k
    L = L_task + Σ_k 1[cos(g_k, g_task) > φ] · λ_k · L_k          (φ = 0 in the paper)

Terms here: "logit" (LD's term: squared rating error, or T²·KL of class logits) and
"feature" (FD's term: ‖P(z) − f_t‖² through a learned projection P), one of each per
teacher distilled from.

Choices made here (each configurable):

1. ``gradients_over`` = "student" (default): θ is every student parameter — in SCKD's
   multi-task view the whole student is shared by the task and the terms, while P is the
   feature term's own head. "z" takes the gradients at the student's last hidden state
   instead (the last representation every term shares; one cheap backward through the
   head, for large students).
2. ``gate_every`` = 1: the gate is evaluated every step (1 + number of terms extra
   backward passes through the student); every n steps keeps the last decision in between.
3. The projection P is trained on its term's loss whether or not the gate is open (with
   ``z`` detached while it is closed): a closed gate would otherwise freeze a random P,
   whose random gradient would keep the gate closed for good.
4. ``teacher`` names the one teacher (SCKD is a single-teacher method in the paper); empty
   means every teacher, each term gated on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from diversedistill.losses import task_loss
from diversedistill.methods.base import Method, register_method
from diversedistill.methods.common import (
    FEATURE_REDUCTIONS,
    PREDICTION_DISTANCE_NOTE,
    check,
    check_choice,
    feature_distance_note,
    feature_loss,
    kd_loss,
    own_answers,
    pick_teachers,
    projections,
)

TERMS = ("logit", "feature")
GRADIENTS_OVER = ("student", "z")


def flat_grad(loss: torch.Tensor, wrt: Sequence[torch.Tensor]) -> torch.Tensor:
    """∇ loss over the tensors ``wrt``, flattened into one vector (zeros where unused)."""
    grads = torch.autograd.grad(loss, list(wrt), retain_graph=True, allow_unused=True)
    return torch.cat([(torch.zeros_like(w) if g is None else g).reshape(-1)
                      for g, w in zip(grads, wrt)])


def gate(g_task: torch.Tensor, g_term: torch.Tensor, phi: float = 0.0) -> torch.Tensor:
    """SCKD's gate, a bool scalar: cos(g_term, g_task) > φ. A zero gradient has cosine 0."""
    return F.cosine_similarity(g_task, g_term, dim=0, eps=1e-12) > phi


@dataclass
class SCKDConfig:
    terms: list[str] = field(default_factory=lambda: list(TERMS))  # distillation terms, each gated
    lam_logit: float = 1.0  # λ of the logit term
    lam_feature: float = 1.0  # λ of the feature term
    temperature: float = 1.0  # T of the logit term for class logits (unused for ratings)
    phi: float = 0.0  # gate threshold on cos(g_k, g_task); the paper finds φ = 0 best
    gradients_over: str = "student"  # choice 1: "student" (every parameter) or "z"
    gate_every: int = 1  # choice 2: steps between gate evaluations
    teacher: str = ""  # the teacher to distill from; "" = every teacher, terms gated apart
    reduction: str = "sum"  # feature term over the teacher's width: "sum", "mean", "normalized"

    def __post_init__(self):
        check(bool(self.terms), "terms must name at least one term")
        for term in self.terms:
            check_choice("terms", term, TERMS)
        check(len(set(self.terms)) == len(self.terms), f"terms repeat: {self.terms}")
        check(self.lam_logit >= 0 and self.lam_feature >= 0, "lam_logit and lam_feature must be "
              f"non-negative, got {self.lam_logit}, {self.lam_feature}")
        check(self.temperature > 0, f"temperature must be positive, got {self.temperature}")
        check(-1 <= self.phi < 1, f"phi must be in [-1, 1), got {self.phi}")
        check_choice("gradients_over", self.gradients_over, GRADIENTS_OVER)
        check(self.gate_every >= 1, f"gate_every must be at least 1, got {self.gate_every}")
        check_choice("reduction", self.reduction, FEATURE_REDUCTIONS)


@register_method("sckd")
class SCKD(Method):
    config_class = SCKDConfig
    proj: nn.ModuleList  # one P per chosen teacher (feature term only), built in setup
    _open: torch.Tensor  # buffer: which terms train the student

    def __init__(self, cfg: SCKDConfig | None = None):
        super().__init__()
        self.cfg = cfg or SCKDConfig()
        self._chosen: list[int] = []
        self._names: list[str] = []  # "<term>/<teacher>", one per gated term
        self._step = 0

    def distance_note(self) -> str:
        notes = {"logit": PREDICTION_DISTANCE_NOTE,
                 "feature": feature_distance_note(self.cfg.reduction)}
        return "; ".join(notes[term] for term in self.cfg.terms)

    def setup(self, student, committee, example) -> None:
        self._chosen = pick_teachers(committee, self.cfg.teacher)
        self._names = [f"{term}/{committee.names[i]}"
                       for i in self._chosen for term in self.cfg.terms]
        if "feature" in self.cfg.terms:
            teachers = list(committee)
            with torch.no_grad():
                width = student(example).z.shape[-1]
            self.proj = projections(width, [teachers[i].answer_width for i in self._chosen])
        # the gates in force (logged every step as open/<term>/<teacher>; epoch mean = open rate)
        is_open = torch.ones(len(self._names), dtype=torch.bool)
        self.register_buffer("_open", is_open, persistent=False)

    def forward(self, student, committee, batch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        out = student(batch)
        task = task_loss(out.prediction, batch["target"])
        answers = own_answers(committee, batch, self._chosen)
        # the feature as served (no dropout noise to match); a gate measured at z needs the
        # task's gradient at the same tensor, so that variant keeps the training pass's z
        z = out.z if cfg.gradients_over == "z" else student.served(batch, out).z
        # term losses through the student; P-only losses
        terms: list[torch.Tensor] = []
        lams: list[float] = []
        adapters: list[torch.Tensor | None] = []
        for j, answer in enumerate(answers):
            for kind in cfg.terms:
                if kind == "logit":
                    terms.append(kd_loss(out.prediction, answer.prediction, cfg.temperature))
                    lams.append(cfg.lam_logit)
                    adapters.append(None)
                else:
                    proj = self.proj[j]
                    terms.append(feature_loss(proj(z), answer.hidden, cfg.reduction).mean())
                    lams.append(cfg.lam_feature)
                    adapters.append(feature_loss(proj(z.detach()), answer.hidden,
                                                 cfg.reduction).mean())
        if self._step % cfg.gate_every == 0:
            self._evaluate_gates(student, z, task, terms)
        self._step += 1
        loss = task
        for k, (term, lam, adapter) in enumerate(zip(terms, lams, adapters)):
            # open: the term trains the student (and P); closed: only P (choice 3), or nothing
            closed = term.new_zeros(()) if adapter is None else adapter
            loss = loss + lam * torch.where(self._open[k], term, closed)
        parts = {"task": task.detach()}
        for name, term, is_open in zip(self._names, terms, self._open):
            parts[f"distill/{name}"] = term.detach()
            parts[f"open/{name}"] = is_open.float()
        return {"loss": loss, **parts}

    def _evaluate_gates(self, student, z, task, terms) -> None:
        """Set ``_open`` from the gradients of the task and of every term (no graph kept)."""
        if self.cfg.gradients_over == "student":
            wrt = [p for p in student.parameters() if p.requires_grad]
        else:
            wrt = [z]
        g_task = flat_grad(task, wrt)
        for k, term in enumerate(terms):
            self._open[k] = gate(g_task, flat_grad(term, wrt), self.cfg.phi)
