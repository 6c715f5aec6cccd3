"""The suite's models: what a user with a table would bring. Plain ``nn.Module`` classes
with keyword arguments, so that the YAML names them by ``class_path`` and every export
rebuilds them by factory.

- :class:`TableMLP`: an MLP over the feature columns (the wide teacher, and the student);
- :class:`FeatureTokenTransformer`: a small transformer over the features as tokens (each
  column's value scales a learned embedding of that column, a [CLS] token in front), a
  teacher of another architecture than the student.
"""

from __future__ import annotations

import torch
from torch import nn


def _out(logits: torch.Tensor, outputs: int) -> torch.Tensor:
    return logits.squeeze(-1) if outputs == 1 else logits


class TableMLP(nn.Module):
    """``body`` (``depth`` Linear + ReLU layers of ``width``), then ``head`` (Linear to
    ``outputs``: 1 for regression, the class count for classification)."""

    def __init__(self, features: int, outputs: int = 1, width: int = 32, depth: int = 2):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(features if i == 0 else width, width), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, outputs)
        self.outputs = outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _out(self.head(self.body(x)), self.outputs)


class FeatureTokenTransformer(nn.Module):
    """Column ``j`` of a row becomes the token ``x_j · w_j + b_j``; a [CLS] token goes in
    front; ``layers`` encoder layers; the head reads the [CLS] state. Ask it at
    ``encoder.layers.N`` with ``token: 0``; its head is ``head``."""

    def __init__(self, features: int, outputs: int = 1, dim: int = 32, layers: int = 2,
                 heads: int = 4):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(features, dim) * 0.1)
        self.bias = nn.Parameter(torch.zeros(features, dim))
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, outputs)
        self.outputs = outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.unsqueeze(-1) * self.weight + self.bias  # [B, features, dim]
        states = self.encoder(torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1))
        return _out(self.head(self.norm(states[:, 0])), self.outputs)
