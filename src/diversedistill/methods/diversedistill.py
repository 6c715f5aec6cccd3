"""DiverseDistill (Liu et al., arXiv 2402.14035), as specified in METHOD.md.

Per batch, with student question point ``h``, last hidden state ``z`` and N teachers::

    q_i, α_i = QuestionAugmenter(h)                      # α known before any teacher runs
    rows_i   = {b : α_bi > τ}  (all rows while warming up; plus a few explored rows)
    t_i      = T_i(q_i[rows_i]; context_i[rows_i])        # one pass on the sub-batch only
    a_i      = AnswerAugmenter_i(t_i)

    L_student = L_task(f_s(x), y) + λ Σ_i Σ_{b∈rows_i} α_bi ‖a_bi − z_b‖² / B
    L_reg     = Σ_i [ L_task(head_T_i(t_i), y) + L_task(head_S(a_i), y) ]    (module only)
    L_α       = Σ_i BCE(α_i[rows_i], target_i)                              (module only)

The three choices METHOD.md leaves open, made here (each switchable for the ablation):

1. ``detach`` (default True): ``a_i`` and ``α_i`` are detached in L_student. Otherwise the
   cheapest way for the module to lower λ·α·‖a − z‖² is to shrink α and pull the answers
   onto ``z`` — the distillation term then teaches the student nothing. Detached, the
   answers are shaped only by L_reg (they must be *right*), and the student follows them.
2. ``importance_target`` (default "soft"): α is trained by binary cross-entropy towards
   target_i = sigmoid((ℓ(head_S(z)) − ℓ(head_S(a_i))) / T): "does the student's last layer
   predict this sample better from teacher i's answer than from its own state?" — the
   per-sample usefulness METHOD.md asks for, with detached losses so it moves only α.
   "binary" uses the hard 0/1 version; "none" fixes α = 1 (no importance, no gating).
   Collapse guard: the target is a comparison, not a reward for small α, so α goes to 0
   only where the answer really is worse; gated-off rows give no target (they are not
   asked), and ``explore`` keeps asking a random fraction of them so α can recover.
3. One optimizer, two parameter groups: the student at the run's learning rate, the module
   at ``module_lr`` (default: the student's rate; 3× is the ablation). Gradients are routed
   by detaching (h is detached before the module; head_S is applied with detached
   parameters; teachers are frozen), so one optimizer is exactly equivalent to two and
   keeps checkpoints and DDP simple. λ is chosen on validation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from diversedistill.errors import ConfigError
from diversedistill.interface import take_rows
from diversedistill.losses import squared_l2, task_loss
from diversedistill.methods.base import Method, register_method
from diversedistill.module import DistillationModule

IMPORTANCE_TARGETS = ("soft", "binary", "none")


@dataclass
class DiverseDistillConfig:
    # λ, weight of the distillation term in the student's loss. Chosen on validation MSE
    # (ML-100K, committee MLP-M + MLP-L, seed 0) from {0.1, 1, 5, 10, 20}: docs/movielens.md.
    lam: float = 10.0
    tau: float = 0.0  # importance gating threshold: teacher i runs on rows with α_i > τ
    warmup_epochs: int = 1  # epochs in which every teacher answers every row (α learns first)
    explore: float = 0.1  # fraction of gated-off rows asked anyway, so α can recover
    d1: int = 16  # teacher-embedding width
    d2: int = 64  # question hidden width
    hidden: int = 256  # width of the per-teacher question / answer MLPs
    detach: bool = True  # open choice 1
    importance_target: str = "soft"  # open choice 2: soft | binary | none
    importance_temperature: float = 0.25  # T of the soft target, in units of squared error
    module_lr: float = 1e-3  # open choice 3: the module's learning rate

    def __post_init__(self):
        if not 0.0 <= self.tau <= 1.0:
            raise ConfigError(f"tau must be in [0, 1], got {self.tau}")
        if not 0.0 <= self.explore <= 1.0:
            raise ConfigError(f"explore must be in [0, 1], got {self.explore}")
        if self.importance_target not in IMPORTANCE_TARGETS:
            raise ConfigError(
                f"importance_target must be one of {IMPORTANCE_TARGETS}, got {self.importance_target!r}")
        if self.lam < 0:
            raise ConfigError(f"lam must be non-negative, got {self.lam}")


@register_method("diversedistill")
class DiverseDistill(Method):
    config_class = DiverseDistillConfig

    def __init__(self, cfg: DiverseDistillConfig | None = None):
        super().__init__()
        self.cfg = cfg or DiverseDistillConfig()
        self.module: DistillationModule | None = None
        self._rows = 0  # rows seen this epoch (the buffer _asked counts rows asked per teacher)
        self._teacher_names: list[str] = []

    def setup(self, student, committee, example) -> None:
        with torch.no_grad():
            out = student(example)
        self.module = DistillationModule(
            d=out.h.shape[-1], d_student=out.z.shape[-1],
            question_widths=[t.question_width for t in committee],
            answer_widths=[t.answer_width for t in committee],
            d1=self.cfg.d1, d2=self.cfg.d2, hidden=self.cfg.hidden,
        )
        self.register_buffer("_asked", torch.zeros(len(committee)), persistent=False)
        self._teacher_names = committee.names

    def learning_rate(self) -> float:
        return self.cfg.module_lr

    def uses_every_parameter(self) -> bool:
        # gating skips whole teachers (their answer MLPs get no gradient on that step);
        # importance "none" never uses the importance projection
        return self.cfg.tau <= 0 and self.cfg.importance_target != "none"

    def gate(self, alpha: torch.Tensor) -> torch.Tensor:
        """Boolean [B] mask of the rows a teacher is asked, from its importance α [B]."""
        cfg = self.cfg
        if cfg.tau <= 0 or cfg.importance_target == "none" or self.epoch < cfg.warmup_epochs:
            return torch.ones_like(alpha, dtype=torch.bool)
        mask = alpha > cfg.tau
        if cfg.explore > 0 and self.training:
            mask |= torch.rand_like(alpha) < cfg.explore
        return mask

    def forward(self, student, committee, batch):
        parts = self.loss_parts(student, committee, batch)
        loss = parts["task"] + self.cfg.lam * parts["distill"] + parts["reg"] + parts["importance"]
        return {"loss": loss, **{k: v.detach() for k, v in parts.items()}}

    def loss_parts(self, student, committee, batch) -> dict[str, torch.Tensor]:
        """The four terms of METHOD.md, undetached: task, distill, reg, importance (+ alpha)."""
        cfg, y = self.cfg, batch["target"]
        out = student(batch)
        task = task_loss(out.prediction, y)
        augmenter = self.module.questions
        states, alpha = augmenter.states_and_importance(out.h.detach())
        if cfg.importance_target == "none":
            alpha = torch.ones_like(alpha)
        batch_size = y.shape[0]
        distill = reg = importance = out.z.new_zeros(())
        own_loss = task_loss(student.frozen_head(out.z.detach()), y, reduction="none")
        for i, teacher in enumerate(committee):
            mask = self.gate(alpha[:, i].detach())
            self._asked[i] += mask.sum()
            if not mask.any():
                continue
            # The teacher's whole pass, context included, runs on the asked rows only: a
            # gated row costs nothing (for a language teacher, not even its cache read).
            # With every row asked, no row is copied.
            rows = slice(None) if bool(mask.all()) else mask.nonzero(as_tuple=True)[0]
            asked = batch if isinstance(rows, slice) else take_rows(batch, rows)
            question = augmenter.ask(i, states[rows, i])  # on the asked rows only
            answer = teacher.answer(question, teacher.context(asked))
            a = self.module.answers(i, answer.hidden)
            y_rows = y[rows]
            answer_loss = task_loss(student.frozen_head(a), y_rows, reduction="none")
            reg = reg + task_loss(answer.prediction, y_rows) + answer_loss.mean()
            alpha_i = alpha[rows, i]
            weight = alpha_i.detach() if cfg.detach else alpha_i
            target_answer = a.detach() if cfg.detach else a
            distill = distill + (weight * squared_l2(target_answer, out.z[rows])).sum() / batch_size
            if cfg.importance_target != "none":
                importance = importance + F.binary_cross_entropy(
                    alpha_i, self._importance_target(own_loss[rows], answer_loss.detach()))
        self._rows += batch_size
        return {"task": task, "distill": distill, "reg": reg, "importance": importance,
                "alpha": alpha.detach().mean()}

    def _importance_target(self, own_loss: torch.Tensor, answer_loss: torch.Tensor) -> torch.Tensor:
        gain = own_loss - answer_loss  # > 0: the answer predicts this sample better than z
        if self.cfg.importance_target == "binary":
            return (gain > 0).float()
        return torch.sigmoid(gain / self.cfg.importance_temperature)

    def epoch_stats(self) -> dict[str, float]:
        """Fraction of teacher passes skipped by gating, per teacher, since the last call."""
        if not self._rows:
            return {}
        stats = {f"skipped/{name}": 1.0 - float(n) / self._rows
                 for name, n in zip(self._teacher_names, self._asked)}
        self._asked.zero_()
        self._rows = 0
        return stats

