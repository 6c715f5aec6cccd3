"""Ratings rendered as text for language-model teachers (after Kang et al. 2023).

Each rating row becomes one sentence built from a template over the fields a release has::

    user u-138, a 45-year-old male doctor. Movie m-357: One Flew Over the Cuckoo's Nest (1975), Drama.

Fields: ``user_id``, ``age``, ``gender``, ``occupation`` (users; absent from releases
without demographics), ``item_id``, ``title``, ``year``, ``genres`` (items). The template
is a ``str.format`` string; a template naming a field the release lacks is refused with the
field's name, instead of rendering "None" into every text.

Texts are tokenized once per (model, template, data) and cached on disk by
:mod:`diversedistill.lm.store`; nothing here runs per training step.
"""

from __future__ import annotations

import string

import numpy as np

from diversedistill.data.movielens import MovieLens
from diversedistill.errors import ConfigError

USER_FIELDS = ("user_id", "age", "gender", "occupation")
ITEM_FIELDS = ("item_id", "title", "year", "genres")
DEMOGRAPHICS = ("age", "gender", "occupation")

TEMPLATE_WITH_DEMOGRAPHICS = (
    "user u-{user_id}, a {age}-year-old {gender} {occupation}. Movie m-{item_id}: {title}, {genres}.")
TEMPLATE_WITHOUT_DEMOGRAPHICS = "user u-{user_id}. Movie m-{item_id}: {title}, {genres}."
_GENDER = {"M": "male", "F": "female"}


def default_template(ml: MovieLens) -> str:
    return TEMPLATE_WITH_DEMOGRAPHICS if ml.user_info is not None else TEMPLATE_WITHOUT_DEMOGRAPHICS


def template_fields(template: str) -> list[str]:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as err:
        raise ConfigError(f"text template {template!r} is not a valid format string: {err}") from None
    if not names:
        raise ConfigError(f"text template {template!r} names no field; available: "
                          f"{', '.join(USER_FIELDS + ITEM_FIELDS)}")
    return names


def check_template(template: str, ml: MovieLens) -> None:
    available = set(USER_FIELDS + ITEM_FIELDS)
    if ml.user_info is None:
        available -= set(DEMOGRAPHICS)
    for name in template_fields(template):
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
                 template: str | None = None) -> list[str]:
    """One text per (user code, item code) pair: [n] strings."""
    template = template or default_template(ml)
    check_template(template, ml)
    users, items = _user_parts(ml), _item_parts(ml)
    return [template.format(**users[u], **items[i]) for u, i in zip(user.tolist(), item.tolist())]
