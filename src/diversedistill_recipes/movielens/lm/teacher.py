"""A fine-tuned language model as a committee teacher over MovieLens ratings.

The teacher reads each rating as text. Its question-independent work — tokens, the
frozen lower layers, and the context a question attends to — is done once and read from stores
(:mod:`diversedistill_recipes.movielens.lm.store`) by rating row; a distillation step then runs only
the question-dependent part. With ``contexts=None`` the same context is computed from the tokens at
every step instead (what caching saves is measured by ``diversedistill bench lm``).
"""

from __future__ import annotations

import numpy as np
import torch

from diversedistill.errors import ModelError
from diversedistill.interface import Answer, Batch, Teacher


class PairIndex:
    """(user code, item code) -> row of the release's rating table (one rating per pair)."""

    def __init__(self, user: np.ndarray, item: np.ndarray, n_items: int):
        self.n_items = n_items
        keys = user.astype(np.int64) * n_items + item.astype(np.int64)
        self.order = np.argsort(keys, kind="stable")
        self.sorted_keys = keys[self.order]

    def rows(self, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        keys = user.astype(np.int64) * self.n_items + item.astype(np.int64)
        at = np.clip(np.searchsorted(self.sorted_keys, keys), 0, len(self.sorted_keys) - 1)
        missing = self.sorted_keys[at] != keys
        if missing.any():
            k = int(np.flatnonzero(missing)[0])
            raise ModelError(f"the language-model teacher has no text for (user code {user[k]}, "
                             f"item code {item[k]}): it reads only rated pairs of its release")
        return self.order[at]


def gather(arrays: dict[str, np.ndarray], rows: np.ndarray, device, mask_key: str = "mask",
           dtype: torch.dtype | None = torch.float32) -> dict[str, torch.Tensor]:
    """Rows of token-aligned arrays as tensors, in ``rows`` order, trimmed to the longest
    sequence in the batch.

    Integer arrays (ids, mask) are [N, T]; float arrays are [N, ..., T, d] (token states,
    trimmed) or [N, d] (one vector per row, not trimmed). Float arrays become ``dtype``;
    ``dtype=None`` keeps the stored precision (the reader converts, see
    ``EncoderRater.answer``). Each array is copied once by the row read and at most once
    more by the conversion: on a warm page cache these copies, not the reads, are the cost.
    """
    mask = np.asarray(arrays[mask_key][rows])
    length = int(mask.sum(1).max()) if len(mask) else 0
    out = {}
    for name, array in arrays.items():
        tensor = torch.from_numpy(mask if name == mask_key else np.asarray(array[rows]))
        if not tensor.is_floating_point():
            out[name] = tensor[:, :length].to(device=device, dtype=torch.long)
            continue
        if tensor.ndim >= 3:
            tensor = tensor.narrow(tensor.ndim - 2, 0, length)
        out[name] = tensor.to(device=device, dtype=dtype or tensor.dtype)
    return out


class LanguageTeacher(Teacher):
    """``rater`` (an :class:`~diversedistill_recipes.movielens.lm.raters.EncoderRater` or
    ``T5Rater``), the pair index of its release, and its stores: ``tokens`` {"ids", "mask"} always;
    ``lower`` {"states", "mask"} (states at layer ``lower_at``) and ``contexts``
    (the rater's context) when cached."""

    def __init__(self, name: str, rater, index: PairIndex, tokens: dict, lower_at: int,
                 lower: dict | None = None, contexts: dict | None = None):
        self.name, self.rater, self.index = name, rater, index
        self.tokens, self.lower_at, self.lower, self.contexts = tokens, lower_at, lower, contexts
        self.question_width = self.answer_width = rater.width

    def modules(self):
        return [self.rater]

    def _rows(self, batch: Batch) -> np.ndarray:
        # batches carry codes shifted by one (code 0 = unknown), see batches.py
        return self.index.rows(batch["user"].cpu().numpy() - 1, batch["item"].cpu().numpy() - 1)

    def _device(self):
        return next(self.rater.parameters()).device

    @torch.no_grad()
    def lower_states(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """States at layer ``lower_at`` for rating rows: from the store, or computed."""
        if self.lower is not None:
            return gather(self.lower, rows, self._device())
        tokens = gather(self.tokens, rows, self._device())
        return {"states": self.rater.lower(tokens["ids"], tokens["mask"], self.lower_at),
                "mask": tokens["mask"]}

    def context(self, batch: Batch) -> dict[str, torch.Tensor]:
        rows = self._rows(batch)
        if self.contexts is not None:
            # kept in the stored precision: the rater converts while splitting heads
            return gather(self.contexts, rows, self._device(), dtype=None)
        low = self.lower_states(rows)
        return self.rater.context(low["states"], low["mask"], self.lower_at)

    def answer(self, question: torch.Tensor | None, context: dict) -> Answer:
        hidden = self.rater.answer(question, context)
        return Answer(hidden, self.rater.read(hidden))

    def predict(self, batch: Batch) -> torch.Tensor:
        with torch.no_grad():
            return self.answer(None, self.context(batch)).prediction
