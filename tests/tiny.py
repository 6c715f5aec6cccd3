"""Tiny in-process models and batches for the unit tests."""

from __future__ import annotations

import torch

from diversedistill_recipes.movielens.recommender import RecommenderConfig, build_recommender
from diversedistill_recipes.movielens.releases import Field

FIELDS = [Field("user", "user", 11), Field("item", "item", 13), Field("genres", "item", 4, True)]


def tiny_batch(n: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "user": torch.randint(1, 11, (n,), generator=g),
        "item": torch.randint(1, 13, (n,), generator=g),
        "genres": (torch.rand(n, 4, generator=g) > 0.5).float(),
        "target": torch.randint(1, 6, (n,), generator=g).float(),
    }


def tiny_recommender(hidden=(8, 4), dim=4, seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return build_recommender(FIELDS, RecommenderConfig(hidden=list(hidden), embedding_dim=dim,
                                                       dropout=dropout), 3.0)
