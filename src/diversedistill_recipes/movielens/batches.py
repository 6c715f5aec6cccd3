"""Rating batches as dicts of tensors, gathered a whole batch at a time.

A batch holds the rating and, for every field of the release, the codes of that row:
``{"user": [B], "item": [B], "age": [B], ..., "genres": [B, G], "rating": [B]}``.
Side features stay in their small per-user / per-item tables and are gathered per batch,
so memory grows with the number of users and items, not with the number of ratings.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from diversedistill.runs.batch_order import EpochBatches, ResumableLoader
from diversedistill_recipes.movielens.releases import MovieLens, Ratings


class RatingBatches(Dataset):
    """Indexed by a list of row numbers (one call per batch, not per sample). ``columns``
    are further per-row arrays, gathered into the batch under their names (e.g. which
    rows the teachers never trained on)."""

    def __init__(self, ratings: Ratings, ml: MovieLens,
                 columns: dict[str, np.ndarray] | None = None):
        self.user = torch.from_numpy(ratings.user)
        self.item = torch.from_numpy(ratings.item)
        self.rating = torch.from_numpy(ratings.rating)
        self.user_tables = {k: torch.tensor(np.asarray(v)) for k, v in ml.user_features.items()}
        self.item_tables = {k: torch.tensor(np.asarray(v)) for k, v in ml.item_features.items()}
        self.genres = None if ml.genres is None else torch.tensor(ml.genres)
        self.columns = {k: torch.from_numpy(np.asarray(v)) for k, v in (columns or {}).items()}
        for name, column in self.columns.items():
            if len(column) != len(self.rating):
                raise ValueError(f"column {name!r} has {len(column)} rows for "
                                 f"{len(self.rating)} ratings")

    def __len__(self) -> int:
        return len(self.rating)

    def __getitem__(self, rows) -> dict[str, torch.Tensor]:
        rows = torch.as_tensor(rows, dtype=torch.long)
        user, item = self.user[rows], self.item[rows]
        # code 0 is "unknown" for every field, so user and item codes are shifted by one
        batch = {"user": user + 1, "item": item + 1, "target": self.rating[rows]}
        for name, table in self.user_tables.items():
            batch[name] = table[user]
        for name, table in self.item_tables.items():
            batch[name] = table[item]
        if self.genres is not None:
            batch["genres"] = self.genres[item]
        for name, column in self.columns.items():
            batch[name] = column[rows]
        return batch


def rating_loader(
    ratings: Ratings, ml: MovieLens, batch_size: int, shuffle: bool, seed: int = 0,
    columns: dict[str, np.ndarray] | None = None,
) -> ResumableLoader:
    """A training loader (``shuffle=True``: seeded order, sharded across DDP processes,
    resumable mid-epoch) or an evaluation loader (file order, whole set in every process)."""
    data = RatingBatches(ratings, ml, columns)
    batches = EpochBatches(len(data), batch_size, shuffle=shuffle, seed=seed, shard=shuffle)
    # batch_size=None: the sampler yields whole batches of rows, gathered in one call
    return ResumableLoader(data, sampler=batches, batch_size=None, num_workers=0)


def global_mean(ratings: Ratings) -> float:
    return float(np.mean(ratings.rating))
