"""A trained MovieLens recommender served from raw ids: ``predict(user_id, movie_id)``.

The recommender reads codes (user, item and every side feature of the release), built by
the data pipeline from the release's tables. :class:`RatingServer` carries those tables
with the model, as buffers of its own safetensors file: the raw user and movie ids of the
release and each user's and movie's side-feature codes. It maps raw ids to the model's
inputs as :class:`~diversedistill_recipes.movielens.batches.RatingBatches` does, and clamps the
prediction to the release's rating scale, as evaluation does. An id the release does not
hold gets code 0 ("unknown") for itself and its features, as the model was trained to
accept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from diversedistill_recipes.movielens.recommender import MLPRecommender


class RatingServer(nn.Module):
    def __init__(self, recommender: MLPRecommender, user_ids: torch.Tensor,
                 item_ids: torch.Tensor, user_tables: dict[str, torch.Tensor],
                 item_tables: dict[str, torch.Tensor], genres: torch.Tensor | None,
                 scale: Sequence[float]):
        super().__init__()
        self.recommender = recommender
        self.scale = (float(scale[0]), float(scale[1]))
        self.user_table_names, self.item_table_names = list(user_tables), list(item_tables)
        for owner, ids in (("user", user_ids), ("item", item_ids)):
            order = torch.argsort(ids)  # sorted raw ids, and the code of each
            self.register_buffer(f"{owner}_ids_sorted", ids[order].long().contiguous())
            self.register_buffer(f"{owner}_codes_sorted", order.long().contiguous())
        for name, table in user_tables.items():
            self.register_buffer(f"user_{name}", table.long().contiguous())
        for name, table in item_tables.items():
            self.register_buffer(f"item_{name}", table.long().contiguous())
        self.has_genres = genres is not None
        if genres is not None:
            self.register_buffer("genres", genres.float().contiguous())

    @classmethod
    def from_release(cls, recommender: MLPRecommender, ml) -> RatingServer:
        """The recommender with the encoders of the release ``ml`` it was trained on."""
        tensor = lambda a: torch.tensor(np.asarray(a, dtype=np.int64))  # noqa: E731  (a copy)
        return cls(recommender, tensor(ml.user_ids), tensor(ml.item_ids),
                   {k: tensor(v) for k, v in ml.user_features.items()},
                   {k: tensor(v) for k, v in ml.item_features.items()},
                   None if ml.genres is None else torch.as_tensor(ml.genres),
                   ml.rating_scale)

    def _codes(self, owner: str, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """0-based codes of raw ids, and whether each id is known."""
        ids, codes = getattr(self, f"{owner}_ids_sorted"), getattr(self, f"{owner}_codes_sorted")
        at = torch.searchsorted(ids, raw).clamp(max=len(ids) - 1)
        known = ids[at] == raw
        return torch.where(known, codes[at], torch.zeros_like(at)), known

    def batch(self, user_id, movie_id) -> dict[str, torch.Tensor]:
        """The model's input batch for raw ids (ints, lists, arrays or tensors)."""
        users = torch.as_tensor(user_id, dtype=torch.long).reshape(-1)
        items = torch.as_tensor(movie_id, dtype=torch.long).reshape(-1)
        user, user_known = self._codes("user", users.to(self.user_ids_sorted.device))
        item, item_known = self._codes("item", items.to(self.item_ids_sorted.device))
        zero = torch.zeros_like
        batch = {"user": torch.where(user_known, user + 1, zero(user)),
                 "item": torch.where(item_known, item + 1, zero(item))}
        for name in self.user_table_names:
            batch[name] = torch.where(user_known, getattr(self, f"user_{name}")[user], zero(user))
        for name in self.item_table_names:
            batch[name] = torch.where(item_known, getattr(self, f"item_{name}")[item], zero(item))
        if self.has_genres:
            batch["genres"] = self.genres[item] * item_known.unsqueeze(-1)
        return batch

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Ratings [B] for a batch of model inputs, within the rating scale."""
        return self.recommender(batch).clamp(*self.scale)

    @torch.no_grad()
    def predict(self, user_id, movie_id) -> torch.Tensor:
        """Ratings [B] for raw MovieLens user and movie ids."""
        return self(self.batch(user_id, movie_id))

    def describe(self) -> dict:
        return {"recommender": self.recommender.describe(), "scale": list(self.scale),
                "users": len(self.user_ids_sorted), "items": len(self.item_ids_sorted),
                "user_tables": self.user_table_names, "item_tables": self.item_table_names,
                "genres": int(self.genres.shape[1]) if self.has_genres else None}

    @classmethod
    def from_description(cls, desc: dict) -> RatingServer:
        """Its structure, with empty tables: the weights file fills them."""
        users, items = int(desc["users"]), int(desc["items"])
        genres = desc.get("genres")
        return cls(MLPRecommender.from_description(desc["recommender"]),
                   torch.arange(users), torch.arange(items),
                   {k: torch.zeros(users, dtype=torch.long) for k in desc["user_tables"]},
                   {k: torch.zeros(items, dtype=torch.long) for k in desc["item_tables"]},
                   None if genres is None else torch.zeros(items, int(genres)), desc["scale"])
