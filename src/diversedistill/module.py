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
                 hidden: int = 256):
        super().__init__()
        self.d1, self.d2 = d1, d2
        self.teacher_embeddings = nn.Parameter(torch.randn(len(question_widths), d1) / math.sqrt(d1))
        self.question_projection = nn.Linear(d, d1 * d2, bias=False)  # W_q
        self.importance_projection = nn.Linear(d, d1, bias=False)  # W_α
        self.question_mlps = nn.ModuleList(two_layer_mlp(d2, hidden, w) for w in question_widths)

    def forward(self, h: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """h [B, d] -> (questions: N tensors [B, dq_i], importance α [B, N])"""
        H = self.question_projection(h).view(h.shape[0], self.d1, self.d2)
        u = torch.einsum("nk,bkj->bnj", self.teacher_embeddings, H)  # [B, N, d2]
        questions = [mlp(u[:, i]) for i, mlp in enumerate(self.question_mlps)]
        alpha = torch.sigmoid(self.importance_projection(h) @ self.teacher_embeddings.T)  # [B, N]
        return questions, alpha


class AnswerAugmenter(nn.Module):
    """One MLP per teacher from its last hidden width to the student's: a_i = MLP^A_i(t_i)."""

    def __init__(self, answer_widths: Sequence[int], d_student: int, hidden: int = 256):
        super().__init__()
        self.answer_mlps = nn.ModuleList(two_layer_mlp(w, hidden, d_student) for w in answer_widths)

    def forward(self, i: int, t: torch.Tensor) -> torch.Tensor:
        return self.answer_mlps[i](t)


class DistillationModule(nn.Module):
    def __init__(self, d: int, d_student: int, question_widths: Sequence[int],
                 answer_widths: Sequence[int], d1: int = 16, d2: int = 64, hidden: int = 256):
        super().__init__()
        self.questions = QuestionAugmenter(d, question_widths, d1, d2, hidden)
        self.answers = AnswerAugmenter(answer_widths, d_student, hidden)
