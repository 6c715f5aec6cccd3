"""A teacher whose own pass is computed once per training row and then read back.

A frozen teacher's own pass (``answer(None, context)``: no question) gives the same hidden
state and prediction for a row every time it is asked. LD, FD, SCKD, MT, AMTML, AutoSKD and
AEKD read only that pass, every step of every epoch, and a comparison runs them many times
over the same training rows with the same teachers. :class:`CachedOwnPass` computes it the
first time a row is seen and serves it from memory afterwards: across epochs, methods and
seeds, for as long as the wrapper lives.

Rows are identified by the batch's ``key_fields`` (default the MovieLens "user" and "item"
codes: a release holds one rating per pair, and every input of a recommender or of the
language-model teacher is a function of the pair). A question-asking pass
(``answer(question, context)``, DiverseDistill's) goes to the wrapped teacher unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from diversedistill.errors import ModelError
from diversedistill.interface import Answer, Batch, Teacher, take_rows


class _Context(Mapping):
    """{"keys": [B, k] row keys, "inner": the wrapped teacher's context}, the latter computed
    on first access: a fully cached own pass never needs it. A Mapping, so that
    :func:`~diversedistill.interface.take_rows` selects rows of both (it then computes it)."""

    def __init__(self, keys: torch.Tensor, compute):
        self._keys, self._compute, self._inner, self._ready = keys, compute, None, False

    def __getitem__(self, name: str) -> Any:
        if name == "keys":
            return self._keys
        if name == "inner":
            if not self._ready:
                self._inner, self._ready = self._compute(), True
            return self._inner
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(("keys", "inner"))

    def __len__(self) -> int:
        return 2


class _Rows:
    """Growing row storage: hidden [n, d_t] and prediction [n] or [n, C], by slot."""

    def __init__(self):
        self.hidden = self.prediction = None
        self.size = 0

    def add(self, hidden: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
        """Store b rows; return their slots [b]."""
        b = hidden.shape[0]
        if self.hidden is None:
            self.hidden = hidden.new_empty((max(b, 1024), *hidden.shape[1:]))
            self.prediction = prediction.new_empty((max(b, 1024), *prediction.shape[1:]))
        if self.size + b > self.hidden.shape[0]:  # double: amortized O(1) per row
            capacity = max(2 * self.hidden.shape[0], self.size + b)
            self.hidden = _grown(self.hidden, capacity)
            self.prediction = _grown(self.prediction, capacity)
        slots = torch.arange(self.size, self.size + b, device=hidden.device)
        self.hidden[slots] = hidden
        self.prediction[slots] = prediction
        self.size += b
        return slots


def _grown(tensor: torch.Tensor, capacity: int) -> torch.Tensor:
    out = tensor.new_empty((capacity, *tensor.shape[1:]))
    out[: tensor.shape[0]] = tensor
    return out


class CachedOwnPass(Teacher):
    """``inner`` with its own pass memoized per row (identified by ``key_fields``).

    Exact: a cached row holds what ``inner.answer(None, ·)`` returned for it, and only while
    every module of ``inner`` is in eval mode (frozen: no dropout) is anything stored or
    served. ``hits`` and ``misses`` count rows served from memory and rows computed.
    """

    def __init__(self, inner: Teacher, key_fields: Sequence[str] = ("user", "item")):
        self.inner, self.key_fields = inner, tuple(key_fields)
        self._slot: dict[tuple[int, ...], int] = {}
        self._rows = _Rows()
        self.hits = self.misses = 0

    # the interface, delegated ------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def question_width(self) -> int:
        return self.inner.question_width

    @property
    def answer_width(self) -> int:
        return self.inner.answer_width

    def modules(self):
        return self.inner.modules()

    def probe(self, batch: Batch) -> None:
        self.inner.probe(batch)

    def predict(self, batch: Batch) -> torch.Tensor:
        return self.inner.predict(batch)

    # the cache -----------------------------------------------------------------------------
    def context(self, batch: Batch) -> _Context:
        missing = [f for f in self.key_fields if f not in batch]
        if missing:
            raise ModelError(f"teacher {self.name!r}: its own-pass cache identifies rows by "
                             f"{list(self.key_fields)}, but the batch has no {missing[0]!r}")
        keys = torch.stack([batch[f].long() for f in self.key_fields], dim=1)  # [B, k]
        return _Context(keys, lambda: self.inner.context(batch))

    def answer(self, question: torch.Tensor | None, context: Mapping) -> Answer:
        if question is not None:  # a question changes the pass: never cached
            return self.inner.answer(question, context["inner"])
        if any(m.training for m in self.inner.modules()):  # dropout: not a fixed function
            return self.inner.answer(None, context["inner"])
        keys = [tuple(k) for k in context["keys"].tolist()]
        slots = torch.tensor([self._slot.get(k, -1) for k in keys], dtype=torch.long)
        miss = (slots < 0).nonzero(as_tuple=True)[0]
        if len(miss):
            fresh = self.inner.answer(None, take_rows(context["inner"], miss.to(
                context["keys"].device)))
            stored = self._rows.add(fresh.hidden.detach(), fresh.prediction.detach()).cpu()
            for row, slot in zip(miss.tolist(), stored.tolist()):
                self._slot[keys[row]] = slot
            slots[miss] = stored
        self.misses += len(miss)
        self.hits += len(keys) - len(miss)
        where = slots.to(self._rows.hidden.device)
        return Answer(self._rows.hidden[where], self._rows.prediction[where])

    @property
    def rows_stored(self) -> int:
        return len(self._slot)
