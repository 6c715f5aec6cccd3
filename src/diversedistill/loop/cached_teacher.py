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
    """Growing row storage of one or more tensors ([n, ...] each), by slot."""

    def __init__(self):
        self.columns: list[torch.Tensor] | None = None
        self.size = 0

    def add(self, *tensors: torch.Tensor) -> torch.Tensor:
        """Store b rows of each tensor; return their slots [b]."""
        b = tensors[0].shape[0]
        if self.columns is None:
            self.columns = [t.new_empty((max(b, 1024), *t.shape[1:])) for t in tensors]
        if self.size + b > self.columns[0].shape[0]:  # double: amortized O(1) per row
            capacity = max(2 * self.columns[0].shape[0], self.size + b)
            self.columns = [_grown(c, capacity) for c in self.columns]
        slots = torch.arange(self.size, self.size + b, device=tensors[0].device)
        for column, tensor in zip(self.columns, tensors):
            column[slots] = tensor
        self.size += b
        return slots


def _grown(tensor: torch.Tensor, capacity: int) -> torch.Tensor:
    out = tensor.new_empty((capacity, *tensor.shape[1:]))
    out[: tensor.shape[0]] = tensor
    return out


class _Memo:
    """Row keys -> slots of a :class:`_Rows`: what is stored, what is missing, counted."""

    def __init__(self):
        self.slot: dict[tuple[int, ...], int] = {}
        self.rows = _Rows()
        self.hits = self.misses = 0

    def lookup(self, keys: torch.Tensor
               ) -> tuple[list[tuple[int, ...]], torch.Tensor, torch.Tensor]:
        """(keys as tuples, slots [B] with -1 where missing, indices of the missing rows)."""
        tuples = [tuple(k) for k in keys.tolist()]
        slots = torch.tensor([self.slot.get(k, -1) for k in tuples], dtype=torch.long)
        miss = (slots < 0).nonzero(as_tuple=True)[0]
        self.misses += len(miss)
        self.hits += len(tuples) - len(miss)
        return tuples, slots, miss

    def store(self, tuples, slots: torch.Tensor, miss: torch.Tensor, *fresh: torch.Tensor) -> None:
        """Store the missing rows' ``fresh`` tensors and fill their ``slots`` in place."""
        stored = self.rows.add(*(t.detach() for t in fresh)).cpu()
        for row, slot in zip(miss.tolist(), stored.tolist()):
            self.slot[tuples[row]] = slot
        slots[miss] = stored


def _keys(teacher: Teacher, key_fields: tuple[str, ...], batch: Batch) -> torch.Tensor:
    missing = [f for f in key_fields if f not in batch]
    if missing:
        raise ModelError(f"teacher {teacher.name!r}: its cache identifies rows by "
                         f"{list(key_fields)}, but the batch has no {missing[0]!r}")
    return torch.stack([batch[f].long() for f in key_fields], dim=1)  # [B, k]


class _Memoized(Teacher):
    """A teacher wrapper that memoizes something per row (identified by ``key_fields``):
    the interface delegated to ``inner``, and the memo's counts. ``hits`` and ``misses``
    count rows served from memory and rows computed."""

    def __init__(self, inner: Teacher, key_fields: Sequence[str]):
        self.inner, self.key_fields = inner, tuple(key_fields)
        self._memo = _Memo()

    @property  # read-only: the wrapped teacher's own
    def name(self) -> str:  # type: ignore[override]
        return self.inner.name

    @property  # read-only: the wrapped teacher's own
    def question_width(self) -> int:  # type: ignore[override]
        return self.inner.question_width

    @property  # read-only: the wrapped teacher's own
    def answer_width(self) -> int:  # type: ignore[override]
        return self.inner.answer_width

    def modules(self):
        return self.inner.modules()

    def probe(self, batch: Batch) -> None:
        self.inner.probe(batch)

    @property
    def hits(self) -> int:
        return self._memo.hits

    @property
    def misses(self) -> int:
        return self._memo.misses

    @property
    def rows_stored(self) -> int:
        return len(self._memo.slot)


class CachedOwnPass(_Memoized):
    """``inner`` with its own pass memoized per row (identified by ``key_fields``).

    Exact: a cached row holds what ``inner.answer(None, ·)`` returned for it, and only while
    every module of ``inner`` is in eval mode (frozen: no dropout) is anything stored or
    served. ``hits`` and ``misses`` count rows served from memory and rows computed.
    """

    def __init__(self, inner: Teacher, key_fields: Sequence[str] = ("user", "item")):
        super().__init__(inner, key_fields)

    def predict(self, batch: Batch) -> torch.Tensor:
        return self.inner.predict(batch)

    # the cache -----------------------------------------------------------------------------
    def context(self, batch: Batch) -> _Context:
        keys = _keys(self, self.key_fields, batch)
        return _Context(keys, lambda: self.inner.context(batch))

    def answer(self, question: torch.Tensor | None, context: Mapping) -> Answer:
        if question is not None:  # a question changes the pass: never cached
            return self.inner.answer(question, context["inner"])
        if any(m.training for m in self.inner.modules()):  # dropout: not a fixed function
            return self.inner.answer(None, context["inner"])
        tuples, slots, miss = self._memo.lookup(context["keys"])
        if len(miss):
            fresh = self.inner.answer(None, take_rows(context["inner"], miss.to(
                context["keys"].device)))
            self._memo.store(tuples, slots, miss, fresh.hidden, fresh.prediction)
        hidden, prediction = self._memo.rows.columns
        where = slots.to(hidden.device)
        return Answer(hidden[where], prediction[where])


class CachedContext(_Memoized):
    """``inner`` with its context memoized per row (identified by ``key_fields``): the
    states below the question's injection point, which no question changes. DiverseDistill
    then pays, per asked row, only for the teacher above the injection point. For teachers
    whose context is one tensor [B, ...] (the vision towers); exact while ``inner`` is in
    eval mode, as :class:`CachedOwnPass`."""

    @property
    def injection(self) -> str:
        return self.inner.injection  # type: ignore[attr-defined]  # a tower has one

    @injection.setter
    def injection(self, mode: str) -> None:
        self.inner.injection = mode  # type: ignore[attr-defined]

    def predict(self, batch: Batch) -> torch.Tensor:
        return self.answer(None, self.context(batch)).prediction

    def context(self, batch: Batch) -> torch.Tensor:
        if any(m.training for m in self.inner.modules()):
            return self.inner.context(batch)
        tuples, slots, miss = self._memo.lookup(_keys(self, self.key_fields, batch))
        if len(miss):
            fresh = self.inner.context(take_rows(batch, miss))
            if not isinstance(fresh, torch.Tensor):
                raise ModelError(f"teacher {self.name!r}: its context is not one tensor; "
                                 "only tensor contexts can be cached")
            self._memo.store(tuples, slots, miss, fresh)
        (states,) = self._memo.rows.columns
        return states[slots.to(states.device)]

    def answer(self, question: torch.Tensor | None, context) -> Answer:
        return self.inner.answer(question, context)
