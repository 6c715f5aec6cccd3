"""DiverseDistill's configuration, apart from the method: the command line builds its flags
from these fields without importing torch (``diversedistill --help`` answers at once).
What each choice means and why: :mod:`diversedistill.methods.diversedistill`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from diversedistill.errors import ConfigError

IMPORTANCE_TARGETS = ("relative", "expected", "soft", "binary", "none")
DISTANCES = ("normalized", "sum")
# What training survives, checked before a run touches its directory: a loss weight past
# 1e4 drowns the task term (and 1e308 overflows float32 to inf in the first step); an
# AdamW rate past 10 moves every weight by about 10 per step (AdamW's step is ~lr).
MAX_WEIGHT = 1e4
MAX_LR = 10.0
RUNNING_MOMENTUM = 0.05  # weight of a new batch in the running size of z and gain scale


@dataclass
class DiverseDistillConfig:
    """DiverseDistill's settings (each a ``--flag`` of the command line and a key of a
    config file's ``diversedistill:`` section).

    Attributes:
        lam: λ, weight of the distillation term in the student's loss
        distance: D: normalized (per dimension, relative to z's size) or sum
        lam_warmup_epochs: epochs over which λ grows linearly to its value (0: at its value
            from the first step)
        tau: importance gating threshold: teacher i runs on rows with α_i > τ
        warmup_epochs: epochs in which every teacher answers every row (α learns first)
        explore: fraction of gated-off rows asked anyway, so α can recover
        d1: teacher-embedding width
        d2: question hidden width
        hidden: width of the per-teacher question / answer MLPs
        distill_trains_answers: the distillation term reaches the answers
        distill_trains_importance: the distillation term reaches α too (collapses at
            large λ)
        answer_pull: weight of a separate pull of the answers towards z, so that λ moves
            z only (None: the distillation term itself moves both, at λ)
        importance_target: what α learns from: relative, expected, soft, binary or none
        importance_temperature: temperature of the soft α target
        importance_rows: a training batch's boolean column marking the rows the teachers
            did not train on; α learns only from those (None: from every row)
        z_as_served: h and z from the dropout-free pass
        zero_init_questions: every teacher starts answering as trained
        module_lr: the module's learning rate (None: the student's)
        distill_per_asked_row: a teacher's term is a mean over the rows it was asked
        pull_cap: distillation's gradient into z is capped at this many times the task's
            (None: uncapped)
        diagnostic_rows: validation rows the per-epoch diagnostics read (0: none)
    """

    # λ, weight of the distillation term in the student's loss. Chosen on validation MSE
    # (ML-100K, committee MLP-M + MLP-L, seed 0) from {0.3, 1, 3} extended to 10 at the
    # edge: val 0.8413, 0.8307, 0.8283, 0.8285 (docs/movielens.md); checked on CIFAR-10.
    lam: float = 3.0
    lam_warmup_epochs: int = 0  # λ grows over this many epochs (0: full from the start)
    distance: str = "normalized"  # D: "normalized" (per dimension, relative to z's size) | "sum"
    tau: float = 0.0  # importance gating threshold: teacher i runs on rows with α_i > τ
    warmup_epochs: int = 1  # epochs in which every teacher answers every row (α learns first)
    explore: float = 0.1  # fraction of gated-off rows asked anyway, so α can recover
    d1: int = 16  # teacher-embedding width
    d2: int = 64  # question hidden width
    hidden: int = 256  # width of the per-teacher question / answer MLPs
    distill_trains_answers: bool = True  # choice 1: the distillation term reaches the answers
    distill_trains_importance: bool = False  # choice 1: ... and α (collapses at large λ)
    answer_pull: float | None = None  # choice 1: the answers pulled at this weight, not at λ
    importance_target: str = "relative"  # choice 3: relative | expected | soft | binary | none
    # relative: × the running |gain|; expected: × the logits' spread; soft: task-loss units
    importance_temperature: float = 1.0
    # choice 3: α's targets only from rows the teachers never saw (a bool batch column)
    importance_rows: str | None = None
    z_as_served: bool = True  # choice 4: h and z from the dropout-free pass
    zero_init_questions: bool = True  # choice 5: every teacher starts answering as trained
    module_lr: float | None = None  # choice 6: the module's learning rate (None: the student's)
    distill_per_asked_row: bool = True  # choice 6: a teacher's term is a mean over asked rows
    # the gradient distillation sends into z, at most this many times the task's gradient
    # there on the same batch (None: uncapped, as the first two implementations)
    pull_cap: float | None = 0.3
    diagnostic_rows: int = 2048  # validation rows the per-epoch diagnostics read (0: none)

    def __post_init__(self):
        checks = [
            (0.0 <= self.tau <= 1.0, f"tau must be in [0, 1], got {self.tau}"),
            (0.0 <= self.explore <= 1.0, f"explore must be in [0, 1], got {self.explore}"),
            (self.importance_target in IMPORTANCE_TARGETS,
             f"importance_target must be one of {IMPORTANCE_TARGETS}, "
             f"got {self.importance_target!r}"),
            (self.distance in DISTANCES,
             f"distance must be one of {DISTANCES}, got {self.distance!r}"),
            (0 <= self.lam <= MAX_WEIGHT,
             f"lam must be in [0, {MAX_WEIGHT:g}], got {self.lam}"),
            (self.answer_pull is None or 0 <= self.answer_pull <= MAX_WEIGHT,
             f"answer_pull must be in [0, {MAX_WEIGHT:g}], got {self.answer_pull}"),
            (self.answer_pull is None or self.distill_trains_answers,
             "answer_pull decides how the answers are pulled; it has no meaning with "
             "distill_trains_answers off (the answers then get no pull at all)"),
            (self.pull_cap is None or (math.isfinite(self.pull_cap) and 0 < self.pull_cap <= 1e6),
             f"pull_cap must be a positive number up to 1e6 (or None), got {self.pull_cap}"),
            (self.importance_rows is None or bool(self.importance_rows.strip()),
             "importance_rows names a batch column; got an empty name"),
            (math.isfinite(self.importance_temperature) and self.importance_temperature > 0,
             f"importance_temperature must be positive, got {self.importance_temperature}"),
            (self.module_lr is None or 0 < self.module_lr <= MAX_LR,
             f"module_lr must be in (0, {MAX_LR:g}], got {self.module_lr}"),
            (min(self.d1, self.d2, self.hidden) >= 1,
             f"d1, d2 and hidden must be at least 1, got {self.d1}, {self.d2}, {self.hidden}"),
            (min(self.warmup_epochs, self.diagnostic_rows, self.lam_warmup_epochs) >= 0,
             "warmup_epochs, lam_warmup_epochs and diagnostic_rows must not be negative"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @classmethod
    def legacy(cls, **changes: Any) -> DiverseDistillConfig:
        """The first implementation's choices (its figures in docs/movielens.md and the
        first tables): answers and α detached, summed squared L2 at λ = 10, ``z`` from the
        training pass, random questions, the "soft" α target at T = 0.25 squared-error
        units, module lr 1e-3, the gated sum divided by the whole batch."""
        values = dict(lam=10.0, distance="sum", distill_trains_answers=False,
                      importance_target="soft", importance_temperature=0.25, z_as_served=False,
                      zero_init_questions=False, module_lr=1e-3, distill_per_asked_row=False,
                      pull_cap=None)
        return cls(**{**values, **changes})
