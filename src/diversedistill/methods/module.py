"""The DiverseDistill distillation module: Question Augmenter and Answer Augmenter.

Everything here is thrown away after training; the served model is the plain student.
Shapes: ``h`` [B, d] (student question point), N teachers, ``q_i`` [B, dq_i] (teacher i's
injection width), ``t_i`` [b, dt_i] (its last hidden state), ``a_i`` [b, d'] (student's
last hidden width).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def two_layer_mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


class QuestionAugmenter(nn.Module):
    """Teacher Embedding Dot Product, then one MLP per teacher (METHOD.md)::

        H   = reshape(h W_q) ∈ R^{d1×d2}
        u_i = E_i H ∈ R^{d2}
        q_i = MLP^Q_i(u_i) ∈ R^{dq_i}
        α_i = sigmoid(E_i · (h W_α))
    """

    def __init__(self, d: int, question_widths: Sequence[int], d1: int = 16, d2: int = 64,
                 hidden: int = 256, zero_init: bool = False):
        super().__init__()
        self.d1, self.d2 = d1, d2
        self.teacher_embeddings = nn.Parameter(
            torch.randn(len(question_widths), d1) / math.sqrt(d1))
        self.question_projection = nn.Linear(d, d1 * d2, bias=False)  # W_q
        self.importance_projection = nn.Linear(d, d1, bias=False)  # W_α
        self.question_mlps = nn.ModuleList(two_layer_mlp(d2, hidden, w) for w in question_widths)
        if zero_init:
            # Every question starts at exactly 0: a teacher that adds its question to its
            # own state ("add" injection) then answers as trained until the module has
            # learned something worth asking. Zeroed after the random initialization, so
            # the random stream (and every other parameter) is the same either way.
            for mlp in self.question_mlps:
                last = list(mlp.children())[-1]  # the output layer of the question MLP
                assert isinstance(last, nn.Linear)
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)

    def forward(self, h: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """h [B, d] -> (questions: N tensors [B, dq_i], importance α [B, N])"""
        u, alpha = self.states_and_importance(h)
        return [self.ask(i, u[:, i]) for i in range(len(self.question_mlps))], alpha

    def states_and_importance(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h [B, d] -> (question hidden states u [B, N, d2], importance α [B, N])."""
        states, logits = self.states_and_logits(h)
        return states, torch.sigmoid(logits)

    def states_and_logits(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h [B, d] -> (question hidden states u [B, N, d2], importance logits [B, N]): the
        part every row needs. ``ask`` turns teacher i's states into its question, so a
        gated method pays for the question MLP on the asked rows only."""
        return self.question_states(h), self.importance_logits(h)

    def question_states(self, h: torch.Tensor) -> torch.Tensor:
        """u_i = E_i reshape(h W_q), for every teacher, as u = h M with M_i = Σ_k E_ik W_q[k].

        The same linear map contracted the other way round: folding E into W_q first costs
        d·d1·d2·N + B·d·N·d2 multiplications per step instead of B·d·d1·d2, and never
        materialises H [B, d1, d2]. At B = 512, d1 = 16 and two teachers that is about 8×
        fewer, and no transposed copies."""
        n = self.teacher_embeddings.shape[0]
        w = self.question_projection.weight.view(self.d1, self.d2, -1)  # [d1, d2, d]
        m = torch.einsum("nk,kjm->njm", self.teacher_embeddings, w).reshape(n * self.d2, -1)
        return F.linear(h, m).view(h.shape[0], n, self.d2)

    def importance(self, h: torch.Tensor) -> torch.Tensor:
        """α [B, N] = sigmoid(E_i · (h W_α))"""
        return torch.sigmoid(self.importance_logits(h))

    def importance_logits(self, h: torch.Tensor) -> torch.Tensor:
        """E_i · (h W_α) [B, N], α before the sigmoid."""
        logits: torch.Tensor = self.importance_projection(h) @ self.teacher_embeddings.T
        return logits

    def ask(self, i: int, u_i: torch.Tensor) -> torch.Tensor:
        """q_i = MLP^Q_i(u_i): teacher i's question from its states u_i [b, d2]."""
        question: torch.Tensor = self.question_mlps[i](u_i)
        return question


class AnswerAugmenter(nn.Module):
    """One MLP per teacher from its last hidden width to the student's: a_i = MLP^A_i(t_i)."""

    def __init__(self, answer_widths: Sequence[int], d_student: int, hidden: int = 256):
        super().__init__()
        self.answer_mlps = nn.ModuleList(two_layer_mlp(w, hidden, d_student) for w in answer_widths)

    def forward(self, i: int, t: torch.Tensor) -> torch.Tensor:
        answer: torch.Tensor = self.answer_mlps[i](t)
        return answer


class DistillationModule(nn.Module):
    z_mean_square: torch.Tensor  # buffers, registered in __init__
    gain_scale: torch.Tensor
    logit_spread: torch.Tensor
    def __init__(self, d: int, d_student: int, question_widths: Sequence[int],
                 answer_widths: Sequence[int], d1: int = 16, d2: int = 64, hidden: int = 256,
                 zero_init_questions: bool = False):
        super().__init__()
        self.questions = QuestionAugmenter(d, question_widths, d1, d2, hidden, zero_init_questions)
        # running estimates the method keeps (in checkpoints, so a resumed run continues
        # them): z's mean square per dimension, for the normalized distance, and the mean
        # |gain| of the importance target; 0 until the first training batch sets them
        self.register_buffer("z_mean_square", torch.zeros(()))
        self.register_buffer("gain_scale", torch.zeros(()))
        # the importance target "expected": the running spread of the importance logits
        # across samples, which α divides them by
        self.register_buffer("logit_spread", torch.zeros(()))
        self.answers = AnswerAugmenter(answer_widths, d_student, hidden)
