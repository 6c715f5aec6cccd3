"""Embedding-table + MLP recommenders (DLRM-style), in the paper's three sizes.

    batch ──► embed: one table per field, concatenated   [B, F·k]   ◄ question / injection point
          ──► trunk: pairwise dot products of the F field vectors, then the MLP   [B, hidden[-1]]
          ──► head: Linear(hidden[-1], 1)                 rating     ◄ z is the head's input

The module names ``embed``, ``trunk`` and ``head`` are what the hook adapters point at;
nothing in the distillation code knows this class.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from diversedistill.errors import ConfigError
from diversedistill_recipes.movielens.releases import Field


@dataclass
class RecommenderConfig:
    """Architecture of an MLP recommender."""

    hidden: list[int] = field(default_factory=lambda: [128, 64])  # MLP widths
    embedding_dim: int = 32  # width k of every field's embedding
    dropout: float = 0.2  # after every hidden layer
    embedding_dropout: float = 0.0  # on the concatenated embeddings (regularizes the tables)
    interactions: bool = True  # DLRM's pairwise dot products between field embeddings

    def __post_init__(self):
        if not self.hidden or any(int(w) <= 0 for w in self.hidden):
            raise ConfigError("hidden must be a non-empty list of positive widths, "
                              f"got {self.hidden}")
        if self.embedding_dim <= 0:
            raise ConfigError(f"embedding_dim must be positive, got {self.embedding_dim}")
        for name in ("dropout", "embedding_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")


# The paper's sizes. MLP-S is the student; MLP-M and MLP-L are the complementary teachers.
SIZES: dict[str, RecommenderConfig] = {
    "mlp-s": RecommenderConfig(hidden=[128, 64], embedding_dim=32),
    "mlp-m": RecommenderConfig(hidden=[512, 256], embedding_dim=64),
    "mlp-l": RecommenderConfig(hidden=[1024, 512], embedding_dim=64),
}


class FieldEmbeddings(nn.Module):
    """One embedding table per field; a multi-hot field (genres) is the mean of its codes."""

    def __init__(self, fields: list[Field], dim: int):
        super().__init__()
        self.fields = list(fields)
        self.tables = nn.ModuleDict()
        for f in self.fields:
            if f.multi_hot:
                self.tables[f.name] = nn.Linear(f.cardinality, dim, bias=False)
            else:
                self.tables[f.name] = nn.Embedding(f.cardinality, dim)
            nn.init.normal_(self.tables[f.name].weight, std=0.05)
        self.width = dim * len(self.fields)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """-> [B, F·dim]"""
        parts = []
        for f in self.fields:
            x = batch[f.name]
            if f.multi_hot:
                parts.append(self.tables[f.name](x) / x.sum(-1, keepdim=True).clamp_min(1.0))
            else:
                parts.append(self.tables[f.name](x))
        return torch.cat(parts, dim=-1)


class InteractionMLP(nn.Module):
    """[B, F·k] -> [B, hidden[-1]]: optional pairwise dot products, then ReLU MLP layers."""

    def __init__(self, n_fields: int, dim: int, cfg: RecommenderConfig):
        super().__init__()
        self.n_fields, self.dim, self.interactions = n_fields, dim, cfg.interactions
        self.input_dropout = nn.Dropout(cfg.embedding_dropout)
        rows, cols = torch.triu_indices(n_fields, n_fields, offset=1)
        self.register_buffer("pairs", torch.stack([rows, cols]), persistent=False)
        width = n_fields * dim + (rows.numel() if cfg.interactions else 0)
        layers: list[nn.Module] = []
        for w in cfg.hidden:
            layers += [nn.Linear(width, w), nn.ReLU(), nn.Dropout(cfg.dropout)]
            width = w
        self.mlp = nn.Sequential(*layers)
        self.width = width

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        x = self.input_dropout(flat)
        if self.interactions:
            v = x.view(x.shape[0], self.n_fields, self.dim)
            # all F x F dot products in one batched matmul, then the upper triangle: a
            # fraction of the cost of gathering the F(F-1)/2 pairs of vectors first
            dots = (v @ v.transpose(1, 2))[:, self.pairs[0], self.pairs[1]]
            x = torch.cat([x, dots], dim=-1)
        return self.mlp(x)


class MLPRecommender(nn.Module):
    """Predicts a rating from a batch dict; see the module docstring for the layout."""

    def __init__(self, fields: list[Field], cfg: RecommenderConfig, rating_mean: float = 3.5):
        super().__init__()
        self.fields, self.cfg = list(fields), cfg
        self.embed = FieldEmbeddings(self.fields, cfg.embedding_dim)
        self.trunk = InteractionMLP(len(self.fields), cfg.embedding_dim, cfg)
        self.head = nn.Linear(self.trunk.width, 1)
        nn.init.constant_(self.head.bias, rating_mean)  # start at the global mean rating

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """-> predicted ratings [B]"""
        return self.head(self.trunk(self.embed(batch))).squeeze(-1)

    def describe(self) -> dict:
        return {"fields": [asdict(f) for f in self.fields], "config": asdict(self.cfg)}

    @classmethod
    def from_description(cls, desc: dict) -> MLPRecommender:
        return cls([Field(**f) for f in desc["fields"]], RecommenderConfig(**desc["config"]))


def build_recommender(fields: list[Field], size: str | RecommenderConfig, rating_mean: float,
                      **overrides) -> MLPRecommender:
    if isinstance(size, str):
        if size not in SIZES:
            raise ConfigError(f"unknown recommender size {size!r}; choose one of {list(SIZES)}")
        base = asdict(SIZES[size])
    else:
        base = asdict(size)
    unknown = set(overrides) - set(base)
    if unknown:
        raise ConfigError(f"unknown recommender option(s) {sorted(unknown)}; known: {sorted(base)}")
    base.update({k: v for k, v in overrides.items() if v is not None})
    return MLPRecommender(fields, RecommenderConfig(**base), rating_mean)

