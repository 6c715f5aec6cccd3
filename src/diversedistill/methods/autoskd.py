"""AutoSKDBert — stochastic KD with learned sampling weights (Ding et al., *SKDBERT:
Compressing BERT via Stochastic Knowledge Distillation*, AAAI 2023; *AutoSKDBERT: Learn
to Stochastically Distill BERT*, 2023; BASELINES.md).

Every step one teacher is drawn, and only it runs and teaches::

    t ~ Categorical(p),   p = softmax(s) over the teachers still in play
    L = L_task + λ · KD(z_s, z_t)

SKD fixes p (``learn: false``; ``weights`` sets it, uniform by default). AutoSKD learns the
logits s in two phases: phase 1 learns them and then drops the ineffective teachers
(weights redistributed to the others), phase 2 refines the rest. Its "stochastic
single-weight optimization" updates only the sampled teacher's weight each step.

The paper learns p from a development-set objective, which a method inside the one training
loop does not see. The rule chosen here, from the student's progress on the training batch:

1. Progress of step n (drawn teacher t): the task loss on batch n with the student in eval
   mode, just before the step and again at step n + 1, after it:
   ``r = L_task(batch n; θ_n) − L_task(batch n; θ_{n+1})`` (``reward: "task"``). To first
   order r ∝ g_task · (g_task + λ g_KD,t): teachers whose distillation agrees with the task
   earn more. ``reward: "distill"`` uses the drop of the sampled teacher's own KD loss
   instead. Cost: two no-grad student forwards per step; no teacher pass.
2. Advantage: ``A = clip((r − m) / σ, −3, 3)`` with m, σ running (EMA, ``momentum``) mean
   and spread of the rewards of all teachers, so teachers compete against each other rather
   than against the shrinking progress of a converging student. No update during the first
   1 / (1 − momentum) rewards, while m and σ settle.
3. SSWO: ``s_t ← s_t + weight_lr · A`` — only the sampled teacher's logit moves.
4. At the first step of epoch ``phase1_epochs`` teachers with p_k < drop_below / K are
   dropped (the most likely is always kept); renormalizing the softmax over the survivors
   hands the dropped weight to them in proportion to theirs. Phase 2 continues step 3.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from diversedistill.losses import task_loss
from diversedistill.methods.base import Method, register_method
from diversedistill.methods.common import (
    PREDICTION_DISTANCE_NOTE,
    check,
    check_choice,
    check_weight,
    kd_loss,
    own_answers,
    task_plus,
)

REWARDS = ("task", "distill")


def sampling_probabilities(logits: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """p [K] = softmax of the logits [K] over the teachers still in play (bool [K])."""
    return torch.softmax(logits.masked_fill(~alive, float("-inf")), dim=0)


def sample_teacher(probabilities: torch.Tensor, generator: torch.Generator | None = None) -> int:
    """Index of one teacher drawn from Categorical(p)."""
    return int(torch.multinomial(probabilities.detach().float().cpu(), 1, generator=generator))


def sswo_update(logits: torch.Tensor, index: int, advantage: torch.Tensor | float,
                lr: float) -> torch.Tensor:
    """Stochastic single-weight optimization: a copy of the logits [K] in which only the
    sampled teacher's logit moved, by lr · advantage."""
    updated = logits.clone()
    updated[index] = updated[index] + lr * advantage
    return updated


def select_effective(probabilities: torch.Tensor, alive: torch.Tensor,
                     drop_below: float) -> torch.Tensor:
    """The teachers kept after phase 1 (bool [K]): those with p_k ≥ drop_below / (teachers in
    play); the most likely teacher is always kept."""
    keep = alive & (probabilities >= drop_below / int(alive.sum()))
    keep[int(probabilities.argmax())] = True
    return keep


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Run ``module`` in eval mode (no dropout) and restore its mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


@dataclass
class AutoSKDConfig:
    lam: float = 1.0  # λ, weight of the distillation term (chosen on validation)
    temperature: float = 1.0  # T of the softened class probabilities (unused for ratings)
    learn: bool = True  # False: SKD, sampling weights fixed
    weights: list[float] = field(default_factory=list)  # initial weights (SKD's); [] = uniform
    weight_lr: float = 0.05  # step 3: a logit moves by weight_lr per unit of advantage
    reward: str = "task"  # step 1: progress as the drop of the "task" or the "distill" loss
    momentum: float = 0.9  # step 2: of the running mean and spread of the rewards
    phase1_epochs: int = 2  # step 4: epochs of phase 1, then ineffective teachers are dropped
    drop_below: float = 0.5  # step 4: drop a teacher whose p is below drop_below / K

    def __post_init__(self):
        check_weight("lam", self.lam)
        check(self.temperature > 0, f"temperature must be positive, got {self.temperature}")
        check(all(w > 0 for w in self.weights), f"weights must be positive, got {self.weights}")
        check(self.weight_lr >= 0, f"weight_lr must be non-negative, got {self.weight_lr}")
        check_choice("reward", self.reward, REWARDS)
        check(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        check(self.phase1_epochs >= 0,
              f"phase1_epochs must be non-negative, got {self.phase1_epochs}")
        check(0 <= self.drop_below <= 1, f"drop_below must be in [0, 1], got {self.drop_below}")


@register_method("autoskd")
class AutoSKD(Method):
    config_class = AutoSKDConfig
    distance_in_words = PREDICTION_DISTANCE_NOTE
    logits: torch.Tensor  # buffers, registered in setup
    alive: torch.Tensor
    reward_stats: torch.Tensor
    _sampled: torch.Tensor

    def __init__(self, cfg: AutoSKDConfig | None = None):
        super().__init__()
        self.cfg = cfg or AutoSKDConfig()
        self._names: list[str] = []
        # the last step, to credit at the next: (batch, progress before, teacher, its prediction)
        self._pending: tuple | None = None
        self._rewards_seen = 0
        self._selected = False  # phase 1's teacher selection done

    def setup(self, student, committee, example) -> None:
        cfg, k = self.cfg, len(committee)
        check(not cfg.weights or len(cfg.weights) == k,
              f"weights has {len(cfg.weights)} entries for the {k} teachers {committee.names}")
        weights = torch.tensor(cfg.weights) if cfg.weights else torch.ones(k)
        # learned state, checkpointed: the logits s, who is still in play, the reward statistics
        self.register_buffer("logits", weights.log() - weights.log().mean())
        self.register_buffer("alive", torch.ones(k, dtype=torch.bool))
        self.register_buffer("reward_stats", torch.zeros(2))  # EMA of r and of r²
        self.register_buffer("_sampled", torch.zeros(k), persistent=False)  # draws this epoch
        self._names = committee.names

    def probabilities(self) -> torch.Tensor:
        return sampling_probabilities(self.logits, self.alive)

    def forward(self, student, committee, batch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        learning = cfg.learn and self.training
        if learning:
            if self._pending is not None:
                self._credit(student)
            if self.epoch >= cfg.phase1_epochs and not self._selected:
                self.alive.copy_(select_effective(self.probabilities(), self.alive, cfg.drop_below))
                self._selected = True
        index = sample_teacher(self.probabilities())
        (answer,) = own_answers(committee, batch, [index])  # only the drawn teacher runs
        out = student(batch)
        task = task_loss(out.prediction, batch["target"])
        distill = kd_loss(out.prediction, answer.prediction, cfg.temperature)
        if learning:
            before = self._progress(student, batch, answer.prediction)
            self._pending = (batch, before, index, answer.prediction)
        self._sampled[index] += 1
        return task_plus(task, cfg.lam, distill)

    def _progress(self, student, batch, teacher_prediction: torch.Tensor) -> torch.Tensor:
        """The loss whose drop counts as progress (step 1), eval mode, no gradient."""
        with torch.no_grad(), eval_mode(student):
            prediction = student.predict(batch)
            if self.cfg.reward == "task":
                return task_loss(prediction, batch["target"])
            return kd_loss(prediction, teacher_prediction, self.cfg.temperature)

    def _credit(self, student) -> None:
        """Steps 1-3 for the previous step: its reward moves its teacher's logit."""
        assert self._pending is not None  # called only with a step awaiting its reward
        batch, before, index, teacher_prediction = self._pending
        self._pending = None
        reward = before - self._progress(student, batch, teacher_prediction)
        beta = self.cfg.momentum
        self._rewards_seen += 1
        mean, square = self.reward_stats.unbind()
        if self._rewards_seen > math.ceil(1 / (1 - beta)):
            spread = (square - mean ** 2).clamp_min(1e-12).sqrt()
            advantage = ((reward - mean) / spread).clamp(-3.0, 3.0)
            self.logits.copy_(sswo_update(self.logits, index, advantage, self.cfg.weight_lr))
        # the first reward sets the statistics; later ones move them by an EMA
        w = beta if self._rewards_seen > 1 else 0.0
        observed = torch.stack([reward, reward ** 2])
        self.reward_stats.copy_(w * self.reward_stats + (1 - w) * observed)

    def epoch_stats(self) -> dict[str, float]:
        """Each teacher's sampling probability now, and its share of draws since the last call."""
        if not self._names:
            return {}
        drawn = float(self._sampled.sum())
        stats = {f"p/{n}": float(p) for n, p in zip(self._names, self.probabilities())}
        if drawn:
            stats.update({f"sampled/{n}": float(c) / drawn
                          for n, c in zip(self._names, self._sampled)})
        self._sampled.zero_()
        return stats
