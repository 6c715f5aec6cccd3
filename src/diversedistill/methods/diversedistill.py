"""DiverseDistill (Liu et al., arXiv 2402.14035), as specified in METHOD.md.

Per batch, with the student's training pass ``out``, its pass as served (``h``, ``z``: no
dropout) and N teachers::

    u, α_i   = QuestionAugmenter(h)                        # α known before any teacher runs
    rows_i   = {b : α_bi > τ}  (all rows while warming up; plus a few explored rows)
    t_i      = T_i(q_i[rows_i]; context_i[rows_i])          # one pass on the sub-batch only
    a_i      = AnswerAugmenter_i(t_i)

    L_student = L_task(out, y) + λ Σ_i mean_{b∈rows_i} α_bi D(a_bi, z_b)
    L_reg     = Σ_i [ L_task(head_T_i(t_i), y) + L_task(head_S(a_i), y) ]    (module only)
    L_α       = Σ_i BCE(α_i[rows_i], target_i)                              (module only)

Switches of :class:`DiverseDistillConfig` (defaults chosen on validation;
:meth:`DiverseDistillConfig.legacy` gives the first implementation's choices):

- ``distill_trains_answers`` (True): the distillation term reaches the answers ``a``.
- ``distill_trains_importance`` (False): the distillation term reaches α.
- ``answer_pull`` (None): the answers pulled towards a detached ``z`` at this weight
  inside L_reg, the student's term then seeing ``a`` detached.
- ``lam_warmup_epochs`` (0): λ grows over these first epoch(s) (:meth:`DiverseDistill.lam_now`).
- ``pull_cap`` (0.3): the gradient distillation sends into ``z``, at most this many times
  the task's gradient there on the same batch.
- ``distance`` ("normalized"): D per dimension relative to ``z``'s running mean square
  (:func:`~diversedistill.losses.normalized_squared_error`); "sum": squared L2.
- ``importance_target`` ("relative"): α's target ``sigmoid(g_i / (T·s))``, with the gain
  g_i = mean(ℓ(head_S(z)), ℓ(head_S(a_j)), j ≠ i) − ℓ(head_S(a_i)) and s a running mean
  of |g|; "expected": the logit fitted to g_i / s; "soft", "binary"; "none": α = 1.
- ``importance_rows`` (None): a boolean batch column marking rows the teachers did not
  train on; α's targets are taken there only.
- ``tau`` (0: no gating), ``warmup_epochs`` (1), ``explore`` (0.1): teacher i runs on rows
  with α_i > τ once warm-up is over, plus this share of the others, so α can recover.
- ``z_as_served`` (True): ``h`` and ``z`` from the student's pass in eval mode.
- ``zero_init_questions`` (True): each question MLP's last layer starts at zero, so every
  teacher first answers exactly as trained.
- ``module_lr`` (None: the student's): the module's rate, in the same optimizer as a second
  parameter group; gradients are routed by detaching.
- ``distill_per_asked_row`` (True): each teacher's term is a mean over the rows asked.

Why each default is what it is, and what was measured: docs/design.md, "DiverseDistill's
open choices, and why".
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# the configuration is defined apart (torch-free, for the command line), exported here
from diversedistill.diversedistill_config import (  # noqa: F401
    DISTANCES,
    IMPORTANCE_TARGETS,
    RUNNING_MOMENTUM,
    DiverseDistillConfig,
)
from diversedistill.errors import ConfigError
from diversedistill.interface import take_rows
from diversedistill.losses import normalized_squared_error, squared_l2, task_loss, task_score
from diversedistill.methods.base import Method, register_method
from diversedistill.methods.module import DistillationModule


@register_method("diversedistill")
class DiverseDistill(Method):
    config_class = DiverseDistillConfig
    _asked: torch.Tensor  # buffers [n_teachers], registered in setup()
    _by_alpha: torch.Tensor
    _answer_loss: torch.Tensor
    _own_loss: torch.Tensor
    _unseen_answer: torch.Tensor
    _unseen_own: torch.Tensor

    def __init__(self, cfg: DiverseDistillConfig | None = None):
        super().__init__()
        self.cfg = cfg or DiverseDistillConfig()
        self.module: DistillationModule | None = None  # made by setup(); see `built`
        self._rows = 0  # rows seen this epoch (the buffer _asked counts rows asked per teacher)
        self._teacher_names: list[str] = []
        self._diagnostics = ValidationDiagnostics()

    def distance_note(self) -> str:
        if self.cfg.distance == "normalized":
            return ("answer against z: squared error per dimension relative to z's running "
                    "mean square (free of width and scale)")
        return ("answer against z: squared L2 summed over the student's width (grows with "
                "width and scale)")

    def setup(self, student, committee, example) -> None:
        with torch.no_grad():
            out = student(example)
        self.module = DistillationModule(
            d=out.h.shape[-1], d_student=out.z.shape[-1],
            question_widths=[t.question_width for t in committee],
            answer_widths=[t.answer_width for t in committee],
            d1=self.cfg.d1, d2=self.cfg.d2, hidden=self.cfg.hidden,
            zero_init_questions=self.cfg.zero_init_questions,
        )
        self.register_buffer("_asked", torch.zeros(len(committee)), persistent=False)
        self.register_buffer("_by_alpha", torch.zeros(len(committee)), persistent=False)
        # sums over the epoch's training rows of the frozen head's loss on each teacher's
        # answer (rows asked) and on z (every row): the training side of the diagnostics
        self.register_buffer("_answer_loss", torch.zeros(len(committee)), persistent=False)
        self.register_buffer("_own_loss", torch.zeros(()), persistent=False)
        # the same two, (loss sum, rows) over the rows importance_rows marks: what α's
        # targets compare when it is set
        self.register_buffer("_unseen_answer", torch.zeros(len(committee), 2), persistent=False)
        self.register_buffer("_unseen_own", torch.zeros(2), persistent=False)
        self._teacher_names = committee.names

    @property
    def built(self) -> DistillationModule:
        """The module, once :meth:`setup` has made it (its shapes come from the student)."""
        if self.module is None:
            raise RuntimeError("DiverseDistill.setup() has not run: the module does not exist yet")
        return self.module

    def learning_rate(self) -> float | None:
        return self.cfg.module_lr

    def uses_every_parameter(self) -> bool:
        # gating skips whole teachers (their answer MLPs get no gradient on that step);
        # importance "none" never uses the importance projection
        # importance_rows: a batch may hold no unseen row, and then α gets no target
        return (self.cfg.tau <= 0 and self.cfg.importance_target != "none"
                and self.cfg.importance_rows is None)

    def gate(self, alpha: torch.Tensor, i: int | None = None) -> torch.Tensor:
        """Boolean [B] mask of the rows a teacher is asked, from its importance α [B]; with
        the teacher's index ``i``, the rows asked because of α (α > τ) are counted apart
        from those asked only by exploration."""
        cfg = self.cfg
        if cfg.tau <= 0 or cfg.importance_target == "none" or self.epoch < cfg.warmup_epochs:
            mask = torch.ones_like(alpha, dtype=torch.bool)
            if i is not None:
                self._by_alpha[i] += mask.sum()
            return mask
        mask = alpha > cfg.tau
        if i is not None:
            self._by_alpha[i] += mask.sum()
        if cfg.explore > 0 and self.training:
            mask |= torch.rand_like(alpha) < cfg.explore
        return mask

    def forward(self, student, committee, batch):
        parts = self.loss_parts(student, committee, batch)
        loss = (parts["task"] + self.lam_now() * parts["distill"] + parts["reg"]
                + parts["importance"])
        return {"loss": loss, **{k: v.detach() for k, v in parts.items()}}

    def lam_now(self) -> float:
        """λ this epoch: ``lam_warmup_epochs`` > 0 grows it linearly, reaching ``lam`` in the
        last warm-up epoch (epoch e of W: λ·(e + 1)/W), so the student learns the task before
        the full pull (a large λ from the first step holds it at the global mean for epochs;
        docs/tables.md)."""
        cfg = self.cfg
        if cfg.lam_warmup_epochs <= 0:
            return cfg.lam
        return cfg.lam * min(1.0, (self.epoch + 1) / cfg.lam_warmup_epochs)

    def _running(self, name: str, values: torch.Tensor) -> torch.Tensor:
        """Update the running estimate ``name`` with the mean of this batch's ``values``
        (training only; the first batch sets it) and return it, detached. Under DDP the
        sums and counts of every process are added first, so each process keeps the
        estimate one process keeps on the whole batch, and every process takes part on
        every step (with a count of 0 where it has nothing to add), so none waits."""
        buffer = getattr(self.module, name)
        if not self.training:
            return buffer
        values = values.detach().to(buffer.dtype)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            both = torch.stack([values.sum(), values.new_tensor(float(values.numel()))])
            torch.distributed.all_reduce(both)
            value = both[0] / both[1] if both[1] > 0 else None
        else:
            value = values.mean() if values.numel() else None
        if value is not None:
            buffer.copy_(value if buffer <= 0 else buffer + RUNNING_MOMENTUM * (value - buffer))
        return buffer

    def importance(self, h: torch.Tensor) -> torch.Tensor:
        """α [B, N] at the student's question points ``h``, as this configuration uses it."""
        return self.alpha(self.built.questions.importance_logits(h))

    def alpha(self, logits: torch.Tensor) -> torch.Tensor:
        """α [B, N] from the importance logits [B, N] (choice 3)."""
        cfg = self.cfg
        if cfg.importance_target == "none":
            return torch.ones_like(logits)
        if cfg.importance_target == "expected":
            variance = self._running("logit_spread", logits.detach().float().var(0, unbiased=False)
                                     if logits.shape[0] > 1 else logits.new_zeros(0))
            spread = variance.sqrt().clamp_min(1e-6) * cfg.importance_temperature
            return torch.sigmoid(logits / spread.to(logits.dtype))
        return torch.sigmoid(logits)

    def distance(self, a: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """D(a, z) per row [b] (choice 2); the running mean square is updated by loss_parts."""
        if self.cfg.distance == "sum":
            return squared_l2(a, z)
        return normalized_squared_error(a, z, self.built.z_mean_square)

    def loss_parts(self, student, committee, batch) -> dict[str, torch.Tensor]:
        """The four terms of METHOD.md, undetached: task, distill, reg, importance (+ alpha)."""
        cfg, y = self.cfg, batch["target"]
        out = student(batch)
        task = task_loss(out.prediction, y)
        seen = student.served(batch, out) if cfg.z_as_served else out
        h, z = seen.h, seen.z
        z = self._capped_pull(task, out.z, z)
        if cfg.distance == "normalized":
            self._running("z_mean_square", z.detach().pow(2))
        augmenter = self.built.questions
        states, logits = augmenter.states_and_logits(h.detach())
        alpha = self.alpha(logits)
        batch_size = y.shape[0]
        distill = reg = importance = z.new_zeros(())
        own_loss = task_loss(student.frozen_head(z.detach()), y, reduction="none")
        self._own_loss += own_loss.detach().sum()
        unseen = self._unseen_rows(batch)
        if unseen is not None:
            self._unseen_own += torch.stack([own_loss.detach()[unseen].float().sum(),
                                             unseen.float().sum()])
        # per teacher: (rows, ℓ(head_S(a_i)) on them), for the α targets
        answer_losses: list[tuple[Any, torch.Tensor] | None] = []
        for i, teacher in enumerate(committee):
            mask = self.gate(alpha[:, i].detach(), i)
            self._asked[i] += mask.sum()
            if not mask.any():
                answer_losses.append(None)
                continue
            # The teacher's whole pass, context included, runs on the asked rows only: a
            # gated row costs nothing (for a language teacher, not even its cache read).
            # With every row asked, no row is copied.
            rows = slice(None) if bool(mask.all()) else mask.nonzero(as_tuple=True)[0]
            asked = batch if isinstance(rows, slice) else take_rows(batch, rows)
            question = augmenter.ask(i, states[rows, i])  # on the asked rows only
            answer = teacher.answer(question, teacher.context(asked))
            a = self.built.answers(i, answer.hidden)
            y_rows = y[rows]
            answer_loss = task_loss(student.frozen_head(a), y_rows, reduction="none")
            self._answer_loss[i] += answer_loss.detach().sum()
            if unseen is not None:
                kept = unseen[rows]
                self._unseen_answer[i] += torch.stack([answer_loss.detach()[kept].float().sum(),
                                                       kept.float().sum()])
            reg = reg + task_loss(answer.prediction, y_rows) + answer_loss.mean()
            alpha_i = alpha[rows, i]
            weight = alpha_i if cfg.distill_trains_importance else alpha_i.detach()
            rows_counted = a.shape[0] if cfg.distill_per_asked_row else batch_size
            if cfg.answer_pull is None:
                target = a if cfg.distill_trains_answers else a.detach()
                terms = weight * self.distance(target, z[rows])
            else:  # λ moves z only; the answers move at their own weight (choice 1)
                terms = weight * self.distance(a.detach(), z[rows])
                pull = weight.detach() * self.distance(a, z[rows].detach())
                reg = reg + cfg.answer_pull * pull.sum() / rows_counted
            distill = distill + terms.sum() / rows_counted
            answer_losses.append((rows, answer_loss.detach()))
        if cfg.importance_target != "none":
            for i, targets in enumerate(self._importance_targets(own_loss, answer_losses)):
                if targets is None:
                    continue
                rows, target = targets
                expected = cfg.importance_target == "expected"
                predicted = logits[rows, i] if expected else alpha[rows, i]
                if unseen is not None:  # only rows the teachers never trained on
                    keep = unseen[rows]
                    if not keep.any():
                        continue
                    predicted, target = predicted[keep], target[keep]
                if expected:  # the logit estimates the gain
                    importance = importance + F.mse_loss(predicted, target)
                else:
                    importance = importance + F.binary_cross_entropy(predicted, target)
        self._rows += batch_size
        return {"task": task, "distill": distill, "reg": reg, "importance": importance,
                "alpha": alpha.detach().mean()}

    def _capped_pull(self, task: torch.Tensor, z_task: torch.Tensor,
                     z: torch.Tensor) -> torch.Tensor:
        """``z`` for the distance, with the gradient distillation sends through it capped at
        ``pull_cap`` times the norm of the task's gradient at ``z_task`` (this batch).

        Why: the task's pull on ``z`` differs by orders of magnitude between losses and
        data (on a fresh 32-wide MLP, cross-entropy near the uniform prediction pulled 13×
        less than the distance to one teacher's answer at λ = 3), and a distance that
        outweighs the task from the first step drags ``z`` towards untrained answers
        until its ReLUs die and the student sits at the constant prediction
        (docs/design.md, "Safe defaults"). The cap keeps the task in charge of the
        direction the student moves; λ still weights the pull below the cap, and the
        answers' side of the distance is untouched."""
        cap = self.cfg.pull_cap
        if cap is None or not torch.is_grad_enabled() or not task.requires_grad \
                or not z.requires_grad or not z_task.requires_grad:
            return z
        (task_grad,) = torch.autograd.grad(task, z_task, retain_graph=True, allow_unused=True)
        if task_grad is None:  # the prediction does not read z: nothing to measure against
            return z
        return CappedGradient.apply(z, cap * global_norm(task_grad.detach()))

    def _unseen_rows(self, batch) -> torch.Tensor | None:
        """The boolean [B] column ``importance_rows`` of ``batch`` (None when unset)."""
        key = self.cfg.importance_rows
        if key is None:
            return None
        if key not in batch:
            raise ConfigError(f"importance_rows {key!r}: the training batch has no such column "
                              f"(it has {', '.join(sorted(map(str, batch)))})")
        return batch[key].bool().reshape(-1)

    def _importance_targets(self, own_loss: torch.Tensor, answer_losses: list):
        """Per teacher, (rows, the α target on them) or None where it was not asked."""
        cfg = self.cfg
        if cfg.importance_target in ("soft", "binary"):
            out: list[tuple[Any, torch.Tensor] | None] = []
            for item in answer_losses:
                if item is None:
                    out.append(None)
                    continue
                rows, loss = item
                gain = own_loss[rows] - loss  # > 0: the answer predicts this sample better than z
                out.append((rows, (gain > 0).float() if cfg.importance_target == "binary"
                            else torch.sigmoid(gain / cfg.importance_temperature)))
            return out
        # "relative" and "expected": each answer against the mean of the alternatives
        n, batch_size = len(answer_losses), own_loss.shape[0]
        losses = own_loss.new_zeros(batch_size, n)
        asked = torch.zeros(batch_size, n, dtype=torch.bool, device=own_loss.device)
        for i, item in enumerate(answer_losses):
            if item is not None:
                losses[item[0], i] = item[1]
                asked[item[0], i] = True
        gain = relative_gains(own_loss, losses, asked)
        self._running("gain_scale", gain[asked].abs())
        scale = self.built.gain_scale.clamp_min(torch.finfo(gain.dtype).tiny)
        if cfg.importance_target == "expected":  # the gain itself, in units of its mean size
            target = gain / scale
        else:
            target = torch.sigmoid(gain / (scale * cfg.importance_temperature))
        return [None if item is None else (item[0], target[item[0], i])
                for i, item in enumerate(answer_losses)]

    def epoch_stats(self) -> dict[str, float]:
        """Per teacher, since the last call: the fraction of its passes skipped by gating
        (``skipped/``), and the fractions of rows asked because α > τ (``asked_by_alpha/``)
        and only by the random exploration (``asked_by_exploration/``). Gating that learned
        something skips rows by α; one that learned nothing asks the explored rows only.
        Also the task loss of the student's frozen head on each teacher's answer
        (``head_on_answer/``, rows asked) and on ``z`` (``head_on_z``) over the training rows:
        set beside the validation diagnostics, they show whether a teacher that looks
        better on the rows α learns from (its targets come from training rows) is better
        on rows it has not seen. Loss, not metric: squared error or cross-entropy. With
        ``importance_rows`` set, the same two over the marked rows only
        (``head_on_answer_unseen/``, ``head_on_z_unseen``): what α's targets compare."""
        if not self._rows:
            return {}
        stats = {"head_on_z": float(self._own_loss) / self._rows}
        for name, asked, by_alpha, answer_loss in zip(self._teacher_names, self._asked,
                                                      self._by_alpha, self._answer_loss):
            stats[f"skipped/{name}"] = 1.0 - float(asked) / self._rows
            stats[f"asked_by_alpha/{name}"] = float(by_alpha) / self._rows
            stats[f"asked_by_exploration/{name}"] = float(asked - by_alpha) / self._rows
            if asked:
                stats[f"head_on_answer/{name}"] = float(answer_loss) / float(asked)
        for key, (total, count) in [("head_on_z_unseen", self._unseen_own.tolist())] + [
                (f"head_on_answer_unseen/{n}", pair) for n, pair in
                zip(self._teacher_names, self._unseen_answer.tolist())]:
            if count:
                stats[key] = total / count
        for buffer in (self._asked, self._by_alpha, self._answer_loss, self._own_loss,
                       self._unseen_answer, self._unseen_own):
            buffer.zero_()
        self._rows = 0
        return stats

    # ----------------------------------------------------------------- diagnostics

    @torch.no_grad()
    def observe_validation(self, student, committee, batch) -> None:
        """Accumulate the per-teacher diagnostics on the first ``diagnostic_rows``
        validation rows of the epoch (every teacher asked; no random number drawn)."""
        left = self.cfg.diagnostic_rows - self._diagnostics.rows
        if left <= 0 or committee is None:
            return
        y = batch["target"]
        if y.shape[0] > left:
            batch, y = take_rows(batch, slice(0, left)), y[:left]
        out = student(batch)
        states, logits = self.built.questions.states_and_logits(out.h)
        alpha = self.alpha(logits)
        diag = self._diagnostics
        diag.add("head_on_z", task_score(student.frozen_head(out.z), y))
        directions = head_directions(student.head, out.z.shape[-1])
        answer_losses = []
        for i, teacher in enumerate(committee):
            context = teacher.context(batch)
            own = teacher.answer(None, context)
            answer = teacher.answer(self.built.questions.ask(i, states[:, i]), context)
            a = self.built.answers(i, answer.hidden)
            name = self._teacher_names[i]
            diag.add(f"{name}/teacher_own", task_score(own.prediction, y))
            diag.add(f"{name}/teacher_asked", task_score(answer.prediction, y))
            diag.add(f"{name}/head_on_answer", task_score(student.frozen_head(a), y))
            answer_losses.append(task_loss(student.frozen_head(a), y, reduction="none"))
            diag.add(f"{name}/alpha", alpha[:, i])
            diag.add(f"{name}/alpha_sq", alpha[:, i].pow(2))
            diff = a - out.z
            diag.add(f"{name}/distance", self.distance(a, out.z))
            if directions is not None:
                diag.add(f"{name}/along_head", (diff @ directions).pow(2).sum(-1))
                diag.add(f"{name}/diff_sq", diff.pow(2).sum(-1))
        # does α rank the rows by what asking gains? (its correlation with the gain)
        own = task_loss(student.frozen_head(out.z), y, reduction="none")
        losses = torch.stack(answer_losses, 1)
        gains = relative_gains(own, losses, torch.ones_like(losses, dtype=torch.bool))
        for i, name in enumerate(self._teacher_names):
            diag.add(f"{name}/gain", gains[:, i])
            diag.add(f"{name}/gain_sq", gains[:, i].pow(2))
            diag.add(f"{name}/alpha_gain", alpha[:, i] * gains[:, i])
        diag.rows += y.shape[0]

    def validation_stats(self) -> dict[str, float]:
        """The epoch's diagnostics (then reset), per teacher ``diag/<teacher>/...``:
        ``teacher_own`` / ``teacher_asked``: the teacher's task metric on its own pass and
        when asked the question; ``head_on_answer`` against ``diag/head_on_z``: the
        student's head on the answer and on ``z``; ``alpha_mean`` / ``alpha_std``: α and
        its spread across samples (a flat α learned nothing); ``alpha_gain_corr``: the
        correlation across samples of α with the gain of asking (the target's g: the
        alternatives' loss minus the answer's; 0 when α ranks nothing); ``distance``: mean
        D(a, z);
        ``along_head``: the share of ‖a − z‖² along the directions the head reads (its
        weight's row space; only for a linear head). Metric: squared error for ratings,
        accuracy for classes."""
        diag, stats = self._diagnostics, {}
        means = diag.means()
        if not means:
            return {}
        stats["diag/head_on_z"] = means.pop("head_on_z")
        for name in self._teacher_names:
            for key in ("teacher_own", "teacher_asked", "head_on_answer", "distance"):
                stats[f"diag/{name}/{key}"] = means[f"{name}/{key}"]
            mean, square = means[f"{name}/alpha"], means[f"{name}/alpha_sq"]
            stats[f"diag/{name}/alpha_mean"] = mean
            stats[f"diag/{name}/alpha_std"] = alpha_std = math.sqrt(max(square - mean * mean, 0.0))
            gain = means[f"{name}/gain"]
            gain_std = math.sqrt(max(means[f"{name}/gain_sq"] - gain * gain, 0.0))
            covariance = means[f"{name}/alpha_gain"] - mean * gain
            stats[f"diag/{name}/alpha_gain_corr"] = (covariance / (alpha_std * gain_std)
                                                    if alpha_std * gain_std > 1e-12 else 0.0)
            if f"{name}/along_head" in means:
                total = means[f"{name}/diff_sq"]
                stats[f"diag/{name}/along_head"] = (means[f"{name}/along_head"] / total
                                                    if total else 0.0)
        self._diagnostics = ValidationDiagnostics()
        return stats


class CappedGradient(torch.autograd.Function):
    """Identity forward; backward scales the incoming gradient down so that its norm is at
    most ``limit`` (a 0-d tensor), and passes it through unchanged below that."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, limit: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(limit)
        return z.view_as(z)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (limit,) = ctx.saved_tensors
        norm = global_norm(grad.detach())
        scale = torch.where(norm > limit, limit / norm.clamp_min(1e-30), torch.ones_like(norm))
        return grad * scale.to(grad.dtype), None


def global_norm(values: torch.Tensor) -> torch.Tensor:
    """The norm of ``values`` over every process's rows (DDP), so that the cap a step
    applies is the one a single process would apply to the whole batch."""
    square = values.float().pow(2).sum()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(square)
    return square.sqrt()


def relative_gains(own_loss: torch.Tensor, losses: torch.Tensor,
                   asked: torch.Tensor) -> torch.Tensor:
    """g [B, N]: per row, the mean loss of teacher i's alternatives (the student's own
    ``z`` [B] and every other teacher asked on the row) minus the loss of i's answer
    (``losses`` [B, N], read where ``asked`` [B, N]); > 0 where asking i helps most."""
    total = own_loss[:, None] + (losses * asked).sum(1, keepdim=True)
    count = 1 + asked.sum(1, keepdim=True)
    others = (total - losses * asked) / (count - asked.float())
    return others - losses


class ValidationDiagnostics:
    """Running sums of per-row figures over the validation rows of one epoch."""

    def __init__(self):
        self.rows = 0
        self._sums: dict[str, float] = {}

    def add(self, name: str, per_row: torch.Tensor) -> None:
        self._sums[name] = self._sums.get(name, 0.0) + float(per_row.double().sum())

    def means(self) -> dict[str, float]:
        return {k: v / self.rows for k, v in self._sums.items()} if self.rows else {}


def head_directions(head: nn.Module, width: int) -> torch.Tensor | None:
    """An orthonormal basis [width, r] of the directions of ``z`` a linear head reads (the
    row space of its weight [C, width]), or None for a head that is not one linear layer."""
    if not isinstance(head, nn.Linear) or head.in_features != width:
        return None
    basis, _ = torch.linalg.qr(head.weight.detach().float().T)  # [width, min(C, width)]
    return basis.to(head.weight.dtype)
