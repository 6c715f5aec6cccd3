"""Ratings rendered as text for language-model teachers (after Kang et al. 2023).

Each rating row becomes one sentence built from a template over the fields a release has::

    user u-138, a 45-year-old male doctor.
    Movie m-357: One Flew Over the Cuckoo's Nest (1975), Drama.

Fields: ``user_id``, ``age``, ``gender``, ``occupation`` (users; absent from releases
without demographics), ``item_id``, ``title``, ``year``, ``genres`` (items), and, when a
training split is given, the user's history from it: ``user_count``, ``user_mean`` and
``item_count``, ``item_mean`` and ``history``, the most similar titles the user rated
with their stars (history.py; never the row's own rating)::

    user: 49 male writer, mean 3.5 of 31. movie: Kolya (1996), Comedy, mean 4.0 of 91.
    rated: 5 English Patient, 3 Boogie Nights, 4 Waiting for Guffman.

The template is a ``str.format`` string; a template naming a field the release (or the
call) lacks is refused with the field's name, instead of rendering "None" into every text.

Texts are tokenized once per (model, template, data) and cached on disk by
:mod:`diversedistill_recipes.movielens.lm.store`; nothing here runs per training step.
"""

from __future__ import annotations

import string

import numpy as np

from diversedistill.errors import ConfigError
from diversedistill_recipes.movielens.history import (
    HISTORY_FIELDS,
    HistoryConfig,
    build_histories,
    history_parts,
)
from diversedistill_recipes.movielens.releases import MovieLens, Ratings

USER_FIELDS = ("user_id", "age", "gender", "occupation")
ITEM_FIELDS = ("item_id", "title", "year", "genres")
DEMOGRAPHICS = ("age", "gender", "occupation")

TEMPLATE_WITH_DEMOGRAPHICS = (
    "user u-{user_id}, a {age}-year-old {gender} {occupation}. "
    "Movie m-{item_id}: {title}, {genres}.")
TEMPLATE_WITHOUT_DEMOGRAPHICS = "user u-{user_id}. Movie m-{item_id}: {title}, {genres}."
# With the training history: no ids (ids are several word pieces each and the means carry
# what the model learnt from them) and shorter wording, since every token is paid for on
# each of the release's ratings at every fine-tuning step. Ids remain template fields.
HISTORY_WITH_DEMOGRAPHICS = (
    "user: {age} {gender} {occupation}, mean {user_mean} of {user_count}. "
    "movie: {title}, {genres}, mean {item_mean} of {item_count}. rated: {history}.")
HISTORY_WITHOUT_DEMOGRAPHICS = (
    "user: mean {user_mean} of {user_count}. movie: {title}, {genres}, "
    "mean {item_mean} of {item_count}. rated: {history}.")
_GENDER = {"M": "male", "F": "female"}


def default_template(ml: MovieLens, with_history: bool = False) -> str:
    if with_history:
        return (HISTORY_WITH_DEMOGRAPHICS if ml.user_info is not None
                else HISTORY_WITHOUT_DEMOGRAPHICS)
    return TEMPLATE_WITH_DEMOGRAPHICS if ml.user_info is not None else TEMPLATE_WITHOUT_DEMOGRAPHICS


def template_fields(template: str) -> list[str]:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as err:
        raise ConfigError(
            f"text template {template!r} is not a valid format string: {err}") from None
    if not names:
        raise ConfigError(f"text template {template!r} names no field; available: "
                          f"{', '.join(USER_FIELDS + ITEM_FIELDS)}")
    return names


def check_template(template: str, ml: MovieLens, with_history: bool = False) -> None:
    available = set(USER_FIELDS + ITEM_FIELDS + HISTORY_FIELDS)
    if ml.user_info is None:
        available -= set(DEMOGRAPHICS)
    if not with_history:
        available -= set(HISTORY_FIELDS)
    for name in template_fields(template):
        if name in HISTORY_FIELDS and not with_history:
            raise ConfigError(f"text template field {{{name}}} needs the user's history, which "
                              f"is built from a training split: set history: true in the LM "
                              f"configuration (or leave the field out)")
        if name in DEMOGRAPHICS and ml.user_info is None:
            raise ConfigError(f"text template field {{{name}}}: the {ml.name} release has no "
                              f"demographics; available fields: {', '.join(sorted(available))}")
        if name not in available:
            raise ConfigError(f"text template names an unknown field {{{name}}}; available "
                              f"fields: {', '.join(sorted(available))}")


def _user_parts(ml: MovieLens) -> list[dict[str, str]]:
    parts = [{"user_id": str(u)} for u in ml.user_ids]
    if ml.user_info is not None:
        for part, (_, row) in zip(parts, ml.user_info.iterrows()):
            part["age"] = str(row["age"])
            part["gender"] = _GENDER.get(str(row["gender"]), str(row["gender"]))
            part["occupation"] = str(row["occupation"])
    return parts


def _item_parts(ml: MovieLens) -> list[dict[str, str]]:
    parts = []
    for k, item_id in enumerate(ml.item_ids):
        title = ml.titles[k] if k < len(ml.titles) else ""
        year = title.rstrip()[-5:-1] if title.rstrip().endswith(")") else ""
        genres = "unknown"
        if ml.genres is not None:
            names = [g for g, flag in zip(ml.genre_names, ml.genres[k]) if flag]
            genres = ", ".join(n for n in names if n != "unknown") or "unknown"
        parts.append({"item_id": str(item_id), "title": title, "year": year, "genres": genres})
    return parts


def render_texts(ml: MovieLens, user: np.ndarray, item: np.ndarray,
                 template: str | None = None, train: Ratings | None = None,
                 history: HistoryConfig | None = None) -> list[str]:
    """One text per (user code, item code) pair: [n] strings.

    With ``train`` (the training split) the history fields are available, built from it
    alone and never holding the row's own rating (history.py); ``history`` shapes
    them (default :class:`HistoryConfig`)."""
    with_history = train is not None
    template = template or default_template(ml, with_history)
    check_template(template, ml, with_history)
    users, items = _user_parts(ml), _item_parts(ml)
    if not with_history:
        return [template.format(**users[u], **items[i])
                for u, i in zip(user.tolist(), item.tolist())]
    history = history or HistoryConfig()
    titles = [items[i]["title"] for i in range(ml.n_items)]
    rows = history_parts(build_histories(train, user, item, ml.n_items, history.k), titles,
                         history)
    return [template.format(**users[u], **items[i], **row)
            for u, i, row in zip(user.tolist(), item.tolist(), rows)]
