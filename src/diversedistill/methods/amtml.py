"""AMTML — adaptive multi-teacher multi-level KD (Liu, Zhang & Wang, *Adaptive Multi-Teacher
Multi-level Knowledge Distillation*, Neurocomputing 2020; BASELINES.md).

Learnable teacher latent factors θ [K, C] and a vector w [C] turn a student feature β_b
[C] into instance-level teacher weights, which mix the teachers' soft targets::

    a_{b,k} = (β_b ⊙ θ_k) · w,        μ_b = softmax_k(a_b)          (Σ_k μ_{b,k} = 1)
    p̃_b     = Σ_k μ_{b,k} · softmax(z_k/T)           (ratings: Σ_k μ_{b,k} · ŷ_k)
    L = 2α · T² KL(p̃ ‖ softmax(z_s/T)) + (1 − α) · L_task
        + γ_hint · Σ_k ‖P_k(f_s) − f_t^k‖² + γ_reg · (‖w‖² + ‖θ‖²)

(for ratings the KD term is 2α · (ŷ_s − p̃)²). Stage 1 trains the student, θ and w
jointly; stage 2 freezes θ and w (the hint projections P_k keep training).

The public code's pitfalls are avoided: the softmax over teachers names its dimension, the
KL is summed over classes and averaged over rows (not over all elements), and no
cross-entropy is applied to log-probabilities.

Choices made here (each configurable):

1. β is the student's last hidden state ``z`` (C = its width), detached
   (``detach_features``): the weights are learned through θ and w, and the student cannot
   reshape its features to steer its own teacher weights.
2. Hints: one linear P_k per teacher from ``z`` to teacher k's last hidden state (the
   multi-group hint reduced to the last level), unweighted by μ, as in the formula.
   The original's relational (RKD angle / distance) terms are not implemented.
3. Stage 2 starts at epoch ``stage1_epochs``; θ and w are frozen by detaching them, so the
   optimizer built once by the loop needs no change, and their regularizer drops out.
4. θ and w start as N(0, ``init_std``²): small, so μ starts near uniform, and not zero,
   where the bilinear a would have no gradient at all.

Kept as published: θ and w see only the KD term (and their regularizer), so they move μ
towards the teacher whose target is already nearest the student's prediction, not towards
the teacher that is right; ``epoch_stats`` logs the mean μ per teacher to show it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from diversedistill.losses import task_loss
from diversedistill.methods.base import Method, register_method
from diversedistill.methods.common import (
    FEATURE_REDUCTIONS,
    PREDICTION_DISTANCE_NOTE,
    check,
    check_choice,
    distill_to,
    feature_distance_note,
    feature_loss,
    own_answers,
    projections,
    soft_target,
)


def instance_weights(beta: torch.Tensor, theta: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """μ [B, K] from β [B, C], θ [K, C], w [C]: softmax over k of (β_b ⊙ θ_k) · w."""
    scores = torch.einsum("bc,kc,c->bk", beta, theta, w)
    return torch.softmax(scores, dim=1)


def mixed_target(weights: torch.Tensor, teachers: list[torch.Tensor],
                 temperature: float) -> torch.Tensor:
    """p̃ = Σ_k μ_{·,k} · target_k: [B] for ratings, [B, C] for class logits."""
    targets = torch.stack([soft_target(t, temperature) for t in teachers], dim=1)  # [B, K(, C)]
    mu = weights if targets.dim() == 2 else weights.unsqueeze(-1)
    return (mu * targets).sum(1)


@dataclass
class AMTMLConfig:
    alpha: float = 0.5  # α: 2α weighs the integrated KD term, (1 − α) the task term
    temperature: float = 1.0  # T of the softened class probabilities (unused for ratings)
    hint_weight: float = 1.0  # γ_hint, weight of the summed hint terms
    reg_weight: float = 0.1  # γ_reg, weight of ‖w‖² + ‖θ‖² (the paper's 0.1)
    stage1_epochs: int = 5  # choice 3: epochs in which θ and w train; frozen afterwards
    detach_features: bool = True  # choice 1: β = z detached
    init_std: float = 0.1  # choice 4: θ, w ~ N(0, init_std²)
    reduction: str = "sum"  # hint distance over the teacher's width: "sum", "mean", "normalized"
    lr: float | None = None  # learning rate of θ, w and the P_k (None: the student's)

    def __post_init__(self):
        check(0 <= self.alpha <= 1, f"alpha must be in [0, 1], got {self.alpha}")
        check(self.temperature > 0, f"temperature must be positive, got {self.temperature}")
        check(self.hint_weight >= 0, f"hint_weight must be non-negative, got {self.hint_weight}")
        check(self.reg_weight >= 0, f"reg_weight must be non-negative, got {self.reg_weight}")
        check(self.stage1_epochs >= 0,
              f"stage1_epochs must be non-negative, got {self.stage1_epochs}")
        check(self.init_std > 0, f"init_std must be positive, got {self.init_std}")
        check_choice("reduction", self.reduction, FEATURE_REDUCTIONS)
        check(self.lr is None or self.lr > 0, f"lr must be positive, got {self.lr}")


@register_method("amtml")
class AMTML(Method):
    config_class = AMTMLConfig
    theta: nn.Parameter  # [K, C], built in setup
    w: nn.Parameter  # [C]
    proj: nn.ModuleList
    _mu_sum: torch.Tensor  # buffer

    def __init__(self, cfg: AMTMLConfig | None = None):
        super().__init__()
        self.cfg = cfg or AMTMLConfig()
        self._names: list[str] = []
        self._rows = 0  # rows seen this epoch (the buffer _mu_sum sums their weights)

    def distance_note(self) -> str:
        return f"{PREDICTION_DISTANCE_NOTE}; hint {feature_distance_note(self.cfg.reduction)}"

    def setup(self, student, committee, example) -> None:
        with torch.no_grad():
            width = student(example).z.shape[-1]
        std = self.cfg.init_std
        self.theta = nn.Parameter(torch.randn(len(committee), width) * std)  # [K, C]
        self.w = nn.Parameter(torch.randn(width) * std)  # [C]
        self.proj = projections(width, [t.answer_width for t in committee])
        self.register_buffer("_mu_sum", torch.zeros(len(committee)), persistent=False)
        self._names = committee.names

    def learning_rate(self) -> float | None:
        return self.cfg.lr

    @property
    def stage(self) -> int:
        return 1 if self.epoch < self.cfg.stage1_epochs else 2

    def forward(self, student, committee, batch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        out = student(batch)
        task = task_loss(out.prediction, batch["target"])
        answers = own_answers(committee, batch)
        z = student.served(batch, out).z  # the feature as served: no dropout noise
        beta = z.detach() if cfg.detach_features else z
        theta: torch.Tensor = self.theta
        w: torch.Tensor = self.w
        if self.stage == 2:  # frozen: no gradient, no regularizer
            theta, w = theta.detach(), w.detach()
        mu = instance_weights(beta, theta, w)  # [B, K]
        target = mixed_target(mu, [a.prediction for a in answers], cfg.temperature)
        distill = distill_to(out.prediction, target, cfg.temperature).mean()
        hint = torch.stack([feature_loss(p(z), a.hidden, cfg.reduction).mean()
                            for p, a in zip(self.proj, answers)]).sum()
        reg = theta.pow(2).sum() + w.pow(2).sum()
        loss = 2 * cfg.alpha * distill + (1 - cfg.alpha) * task + cfg.hint_weight * hint
        if self.stage == 1:
            loss = loss + cfg.reg_weight * reg
        self._mu_sum += mu.detach().sum(0)
        self._rows += mu.shape[0]
        return {"loss": loss, "task": task.detach(), "distill": distill.detach(),
                "hint": hint.detach(), "reg": reg.detach()}

    def epoch_stats(self) -> dict[str, float]:
        """Mean instance-level weight of each teacher since the last call."""
        if not self._rows:
            return {}
        stats = {f"mu/{n}": float(s) / self._rows for n, s in zip(self._names, self._mu_sum)}
        self._mu_sum.zero_()
        self._rows = 0
        return stats
